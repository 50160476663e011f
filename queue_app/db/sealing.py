"""The plumbing of the audit chain's sealer (services.audit.chain): who may seal when, and
sealing the entries of each commit that wrote some.

Entries (item events, configuration changes) are written without a hash, as fast as before;
the sealer links committed entries into the chain in id order. That order is only safe if no
transaction still in flight holds an entry with a lower id than one already sealed, so the
sealer only runs while no other writer is in flight:

- SQLite lets one writer in at a time: a transaction that wrote entries holds the database's
  write lock until it ends. So it seals just before its commit, inside its own transaction (in
  a savepoint, so a failed seal undoes only itself) and on its own connection, where what it
  just wrote is still in the cache: its own entries and any an earlier seal left. A sealer in
  a transaction of its own writes first, which waits for the writer in flight.
- PostgreSQL: each transaction that writes entries first takes a shared advisory lock
  (`writing`, once per transaction; shared locks do not wait for each other), and the sealer
  only seals while it holds the same lock exclusively (`try_exclusive`, which never waits: when
  a writer is in flight it gives up and a later seal does the work). Ids are taken after the
  shared lock, so while the sealer holds the exclusive one every entry is committed or gone.
  The seal runs after the commit, in a transaction of its own on a new session.

The sealer is plugged in by `seal_with` (create_app plugs in services.audit.chain.seal). A
failure while sealing is logged and leaves the entries for the next seal (after the next
commit, the scheduler's periodic one, `flask audit seal`): the writer's commit goes on.
"""
import logging

import sqlalchemy as sa
from flask import current_app, has_app_context
from sqlalchemy.orm import Session

from queue_app.db import batched_rows

log = logging.getLogger(__name__)

_WROTE = "backdesk_chain_wrote"  # this transaction wrote entries: seal them at (or after) its commit
_SHARED = "backdesk_chain_shared"  # PostgreSQL: this transaction holds the writers' shared lock
_SEALING = "backdesk_chain_sealing"  # the before-commit seal is running
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
    """Take the sealer's lock for this transaction if no other writer is in flight; False if one is.

    On SQLite the caller's first write takes the database's write lock, which waits for writers."""
    if session.get_bind().dialect.name != "postgresql":
        return True
    return bool(session.execute(sa.text(f"SELECT pg_try_advisory_xact_lock({LOCK_KEY})")).scalar())


def seal_with(app, sealer):
    """`sealer(session)` seals pending entries (flushing, not committing) at each commit that wrote some."""
    app.extensions[_SEALER] = sealer


def _sealer():
    return current_app.extensions.get(_SEALER) if has_app_context() else None


def seal_now(bind):
    """Run the plugged-in sealer in a transaction of its own; False when there is none or it failed."""
    sealer = _sealer()
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


@sa.event.listens_for(Session, "before_commit")
def _before_commit(session):
    info = session.info
    if not info.get(_WROTE) or info.get(_SEALING) or session.get_bind().dialect.name != "sqlite":
        return
    sealer = _sealer()
    if sealer is None:
        return
    info[_SEALING] = True
    try:
        session.flush()  # the commit would flush after this hook: the entries must be written first
        batched_rows.write_pending(session)  # and a bulk import's queued ones
        # A savepoint of the connection's (not the session's, whose commit would run the session's
        # after-commit hooks, the outbox's among them, before the real commit).
        savepoint = session.connection().begin_nested()
        try:
            sealer(session)
        except Exception:
            savepoint.rollback()
            raise
        savepoint.commit()
    except Exception as exc:  # sealed after the commit instead, or by the next seal
        log.warning("audit chain: could not seal before commit (%s); trying after it", exc)
    else:
        info.pop(_WROTE, None)
    finally:
        info.pop(_SEALING, None)


@sa.event.listens_for(Session, "after_commit")
def _after_commit(session):
    if session.in_nested_transaction():  # a savepoint released: the transaction goes on
        return
    session.info.pop(_SHARED, None)
    if session.info.pop(_WROTE, None):
        seal_now(session.get_bind())


@sa.event.listens_for(Session, "after_soft_rollback")
def _after_rollback(session, previous_transaction):
    # Also a rolled-back savepoint: PostgreSQL released a lock taken inside it.
    session.info.pop(_SHARED, None)
    if previous_transaction.parent is None:
        session.info.pop(_WROTE, None)
