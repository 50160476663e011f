"""The filing lock: one transaction at a time files stored emails, so mail is filed in arrival order.

A reply is threaded by what is already filed, so a reply filed while its parent is being filed
in another transaction, not yet committed, would start an item of its own. Every transaction that
files (the single filer's batches, a retried quarantined email, the bulk import) takes this lock
before it reads what to file, and holds it until it commits or rolls back:

- PostgreSQL: a transaction-level advisory lock (`pg_advisory_xact_lock`): it waits for the
  holder, and is released when the holder's transaction ends, or its connection dies.
- SQLite: the database's write lock (`BEGIN IMMEDIATE`), which SQLite gives one connection at a
  time anyway; taking it first means the reads that follow see every committed email. A
  transaction that has already written holds it.

Storing mail (SMTP, IMAP) does not take it: a store is one short INSERT, never held up by a batch
on PostgreSQL, and on SQLite only for as long as the batch holds the write lock.
"""
import sqlalchemy as sa
from sqlalchemy.orm import Session

LOCK_KEY = 0x62646669  # "bdfi"
_HELD = "backdesk_filing_lock"


def hold(session):
    """Take the filing lock for this transaction (waits for the holder; cheap once held)."""
    if session.info.get(_HELD):
        return
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({LOCK_KEY})")
    elif connection.dialect.name == "sqlite":
        dbapi = connection.connection.dbapi_connection
        if not dbapi.in_transaction:  # in a transaction, pysqlite has written: the write lock is held
            connection.exec_driver_sql("BEGIN IMMEDIATE")
    session.info[_HELD] = True


@sa.event.listens_for(Session, "after_commit")
def _after_commit(session):
    if not session.in_nested_transaction():
        session.info.pop(_HELD, None)


@sa.event.listens_for(Session, "after_soft_rollback")
def _after_rollback(session, previous_transaction):
    if previous_transaction.parent is None:
        session.info.pop(_HELD, None)
