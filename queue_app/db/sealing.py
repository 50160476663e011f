"""The plumbing of the audit chain's sealer (services.audit.chain): who may seal when, and
sealing after each commit that wrote entries.

Entries (item events, configuration changes) are written without a hash, as fast as before;
the sealer later links committed entries into the chain in id order. That order is only
safe if no transaction still in flight holds an entry with a lower id than one already
sealed, so:

- SQLite: a writing transaction holds the database's write lock until it ends, and the
  sealer's transaction writes first, so it starts only when no writer is in flight.
- PostgreSQL: each transaction that writes entries first takes a shared advisory lock
  (`writing`, once per transaction; shared locks do not wait for each other), and the sealer
  only seals while it holds the same lock exclusively (`try_exclusive`, which never waits:
  when a writer is in flight it gives up and a later run seals). Ids are taken after the
  shared lock, so while the sealer holds the exclusive one every entry is committed or gone.

After a commit of a session that wrote entries, the sealer plugged in by `seal_with` (create_app
plugs in services.audit.chain.seal) runs in a transaction of its own on a new session; a
failure there is logged and leaves the entries for the next run (the scheduler's periodic
seal, `flask audit seal`): the commit itself has succeeded.
"""
import logging

import sqlalchemy as sa
from flask import current_app, has_app_context
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

_WROTE = "backdesk_chain_wrote"  # this transaction wrote entries: seal after its commit
_SHARED = "backdesk_chain_shared"  # PostgreSQL: this transaction holds the writers' shared lock
_SEALER = "backdesk.audit_sealer"
LOCK_KEY = 0x62646175  # the advisory lock of the chain ("bdau")


def writing(session):
    """Called by each writer of chain entries before it adds one (cheap after the first call)."""
    info = session.info
    if _SHARED in info:
        return
    info[_SHARED] = info[_WROTE] = True
    if session.get_bind().dialect.name == "postgresql":
        session.connection().exec_driver_sql(f"SELECT pg_advisory_xact_lock_shared({LOCK_KEY})")


def try_exclusive(session):
    """Take the sealer's lock for this transaction if no writer is in flight; False if one is.

    On SQLite the caller's first write takes the database's write lock, which waits for writers."""
    if session.get_bind().dialect.name != "postgresql":
        return True
    return bool(session.execute(sa.text(f"SELECT pg_try_advisory_xact_lock({LOCK_KEY})")).scalar())


def seal_with(app, sealer):
    """`sealer(session)` seals pending entries (flushing, not committing) after each commit that wrote some."""
    app.extensions[_SEALER] = sealer


def seal_now(bind):
    """Run the plugged-in sealer in a transaction of its own; False when there is none or it failed."""
    sealer = current_app.extensions.get(_SEALER) if has_app_context() else None
    if sealer is None:
        return False
    with Session(bind=bind) as session:
        try:
            sealer(session)
            session.commit()
        except Exception as exc:  # the entries are committed; a later seal links them
            session.rollback()
            log.warning("audit chain: could not seal after commit (%s); the next seal will", exc)
            return False
    return True


@sa.event.listens_for(Session, "after_commit")
def _after_commit(session):
    session.info.pop(_SHARED, None)
    if session.info.pop(_WROTE, None):
        seal_now(session.get_bind())


@sa.event.listens_for(Session, "after_soft_rollback")
def _after_rollback(session, previous_transaction):
    # Also a rolled-back savepoint: PostgreSQL released a lock taken inside it.
    session.info.pop(_SHARED, None)
    if previous_transaction.parent is None:
        session.info.pop(_WROTE, None)
