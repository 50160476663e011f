"""The single filer: stored emails (SMTP, IMAP) are filed in arrival order, in batches.

Mail is stored first (the SMTP server answers 250, the IMAP poller marks the message, only
after the raw bytes are committed) and filed afterwards by `drain`, which the intake job and the
intake sweep run. Invariants:
- Arrival order: each batch is the oldest emails still `received`, by id (the order they were
  stored in), read under the filing lock (db.filing_lock) and filed in that order in one
  transaction. So a reply is never filed before an earlier email it answers: that one was
  filed by an earlier batch (committed), or earlier in this one (the batch's lookups know it).
  Any number of filer jobs may run; the lock makes their batches take turns.
- The batch is written like a bulk import's (services.intake.writers.Batched): the same filing
  rules, rows queued and written before the commit, outcomes in one UPDATE.
- Nothing lost, nothing doubled: a batch commits its items, messages, outcomes and outbox jobs
  (acknowledgements among them) together, or none of them. A filer killed halfway leaves its
  batch `received` for the next one. A batch that fails is filed again one email per
  transaction; an email that still fails is quarantined as `rejected` with the error.
- The lock is held only for filing: the next batch is read and parsed before it is taken (an
  email filed meanwhile by someone else is simply skipped), so SMTP stores wait as little as
  possible on SQLite, where the lock is the database's write lock: while mail arrives, batches
  are sized to hold it about INTAKE_FILER_HOLD_SECONDS; a backlog nobody adds to (an IMAP poll,
  mail stored while Redis was down) is filed in batches of INTAKE_FILER_BATCH.
- A change to routing rules, SLA policies or mailboxes reaches a running filer within
  CONFIG_SECONDS.
"""
import logging
import time
from collections import Counter

import sqlalchemy as sa
from flask import current_app

from queue_app.db import batched_rows, config_cache, filing_lock
from queue_app.models import InboundEmail, Mailbox
from queue_app.models.base import utcnow
from queue_app.services.intake import filing
from queue_app.services.intake.bulk import parse_many, write_outcomes
from queue_app.services.intake.lookups import BatchLookups, DatabaseLookups
from queue_app.services.intake.writers import Batched, Row
from queue_app.services.sla import policies as sla_policies

log = logging.getLogger(__name__)

_COLUMNS = [c for c in InboundEmail.__table__.columns.keys() if c != "raw"]
BATCH_BYTES = 64 * 1024 * 1024
MIN_BATCH = 10
FIRST_SQLITE_BATCH = 25
# Configuration (routing rules, SLA policies, mailboxes) is read again this often, not per batch:
# with small batches, reading it would cost more than the filing.
CONFIG_SECONDS = 5


def drain(session, *, batch_size=None, max_seconds=None):
    """File every stored email still `received`, oldest first; returns the outcome counts.

    Stops when none is left, or after `max_seconds` (the caller runs it again: a job is never
    held longer than its timeout).

    The session does not expire what it loaded at each commit meanwhile: the configuration
    cached (rules, policies, mailboxes, their teams and calendars) stays loaded and is read again
    every CONFIG_SECONDS; the items a batch reads are loaded afresh by its lookups
    (`populate_existing`), so no batch files against an old copy.
    """
    if isinstance(session, sa.orm.scoped_session):
        session = session()
    most = size = batch_size or current_app.config.get("INTAKE_FILER_BATCH", 100)
    # On SQLite the lock is the write lock, which SMTP stores wait for: batches are sized to hold
    # it about INTAKE_FILER_HOLD_SECONDS. PostgreSQL stores never wait for it.
    hold_for = current_app.config.get("INTAKE_FILER_HOLD_SECONDS", 0.05) \
        if session.get_bind().dialect.name == "sqlite" else None
    if hold_for:
        size = min(most, FIRST_SQLITE_BATCH)
    started = config_read = time.monotonic()
    counts = Counter()
    expire_on_commit, session.expire_on_commit = session.expire_on_commit, False
    try:
        with config_cache.config_cache(session), batched_rows.batched_rows(session), Batched(session) as writer:
            while max_seconds is None or time.monotonic() - started < max_seconds:
                ahead = _read_ahead(session, size, writer.intake.max_message_bytes)
                if not ahead:
                    break
                newest = _newest_id(session) if hold_for else None
                with sla_policies.memoised_due_times():
                    done, held = _file_batch(session, writer, size, ahead)
                if time.monotonic() - config_read >= CONFIG_SECONDS:
                    session.expire_all()  # routing rules, policies and mailboxes as they are now
                    config_cache.reset(session)
                    config_read = time.monotonic()
                if not done:
                    break
                counts.update(done)
                if hold_for and held > 0 and _newest_id(session) != newest:
                    # Mail arrived while the batch held the lock: keep the wait of its SMTP sessions short.
                    size = max(MIN_BATCH, min(most, int(sum(done.values()) * hold_for / held)))
                elif hold_for:
                    size = min(most, size * 2)  # a backlog and nobody waiting: fewer, larger batches
    finally:
        session.expire_on_commit = expire_on_commit
    return counts


def pending_count(session, older_than=None):
    """How many stored emails wait to be filed (those received before `older_than`, if given)."""
    query = sa.select(sa.func.count()).select_from(InboundEmail).where(InboundEmail.status == "received")
    if older_than is not None:
        query = query.where(InboundEmail.received_at <= older_than)
    return session.scalar(query)


def _newest_id(session):
    return session.scalar(sa.select(sa.func.max(InboundEmail.id)))


def _read_ahead(session, size, limit):
    """The raw bytes and parse results of the next emails to file, read without the lock (the
    batch is read again under it: SQLite reads outside a write, and PostgreSQL's read committed
    statements, each see what is committed when they run)."""
    ids = _within_bytes(session.execute(_oldest_received([InboundEmail.id, InboundEmail.size], size)).all())
    if not ids:
        return {}
    rows = session.execute(sa.select(InboundEmail.id, InboundEmail.raw).where(InboundEmail.id.in_(ids))
                           .order_by(InboundEmail.id)).all()
    parsed = parse_many([raw or b"" for _, raw in rows], limit)
    return {row_id: (raw, result) for (row_id, raw), result in zip(rows, parsed)}


def _oldest_received(columns, size):
    return sa.select(*columns).where(InboundEmail.status == "received").order_by(InboundEmail.id).limit(size)


def _within_bytes(rows):
    """The ids of the first rows (id, size, ...) up to BATCH_BYTES of mail, at least one: a batch of
    large emails is held in memory whole."""
    ids, total = [], 0
    for row in rows:
        total += row.size
        if ids and total > BATCH_BYTES:
            break
        ids.append(row.id)
    return ids


def _file_batch(session, writer, size, ahead):
    """File the oldest emails still `received` in one transaction: (outcome counts, seconds the
    lock was held)."""
    now = utcnow()  # one instant for the batch, as its rows become visible together
    position = writer.mark()
    ids = []
    try:
        filing_lock.hold(session)
        locked = time.monotonic()
        inbounds = _pending_rows(session, size, ahead)
        ids = [inbound.id for inbound in inbounds]
        if not inbounds:
            session.rollback()
            return Counter(), 0.0
        parsed = [ahead[i.id][1] if i.id in ahead else None for i in inbounds]
        writer.start_batch(BatchLookups(session, parsed, writer.attach))
        counts = Counter()
        for inbound, outcome in zip(inbounds, _file_each(session, writer, inbounds, parsed, now)):
            counts[outcome.status] += 1
            _log_outcome(inbound, outcome)
        batched_rows.write_pending(session)  # the outcomes refer to the batch's new items
        write_outcomes(session, inbounds)
        session.commit()
        return counts, time.monotonic() - locked
    except Exception:
        writer.roll_back(position)
        log.warning("intake: a batch of %d stored emails failed; filing them one at a time", len(ids), exc_info=True)
    finally:
        writer.end_batch()
    session.expire_all()  # one email at a time reads through the ORM: nothing kept from before
    writer.start_batch(DatabaseLookups(session))
    try:
        return Counter(_file_one(session, writer, inbound_id) for inbound_id in ids), 0.0
    finally:
        writer.end_batch()


def _pending_rows(session, size, ahead):
    """The batch under the lock: the oldest `received` emails, as plain rows with their raw bytes."""
    rows = session.execute(_oldest_received([InboundEmail.__table__.c[c] for c in _COLUMNS], size)).all()
    keep = set(_within_bytes(rows))
    rows = [row for row in rows if row.id in keep]
    missing = [row.id for row in rows if row.id not in ahead]
    raws = dict(session.execute(sa.select(InboundEmail.id, InboundEmail.raw).where(InboundEmail.id.in_(missing)))
                .all()) if missing else {}
    inbounds = []
    for row in rows:
        values = row._asdict()
        raw = ahead[row.id][0] if row.id in ahead else raws.get(row.id)
        mailbox = session.get(Mailbox, values["mailbox_id"]) if values["mailbox_id"] else None
        inbounds.append(Row(raw=raw, mailbox=mailbox, work_item=None, **values))
    return inbounds


def _file_each(session, writer, inbounds, parsed, now):
    """The filing rules for each email of the batch, in order; a copy of an earlier email (same
    Message-ID, or the same bytes without one) is a duplicate of the first."""
    first = filing.first_copies(session, [_key(inbound) for inbound in inbounds])
    batch = {inbound.id: inbound for inbound in inbounds}
    for inbound, parsed_one in zip(inbounds, parsed):
        original = first.get(_key(inbound))
        if original is not None and original[0] != inbound.id:
            inbound.attempts += 1
            inbound.duplicate_of_id = original[0]
            inbound.raw = None  # the bytes are kept once, on the first copy
            earlier = batch.get(original[0])
            inbound.work_item_id = earlier.work_item_id if earlier is not None else original[1]
            yield filing.finish(inbound, "duplicate", now)
            continue
        yield filing.process(session, inbound, now=now, known_new=True, parsed=parsed_one, writer=writer)


def _key(inbound):
    return filing.copy_key(inbound.message_id, inbound.sha256)


def _file_one(session, writer, inbound_id):
    """One email in its own transaction (after its batch failed); quarantined if it fails again."""
    position = writer.mark()
    try:
        filing_lock.hold(session)
        outcome = filing.process_stored(session, inbound_id, writer=writer)
        session.commit()
        if outcome is None:
            return "gone"
        _log_outcome(outcome.inbound, outcome)
        return outcome.status
    except Exception as exc:
        writer.roll_back(position)
        log.exception("intake: stored email %s could not be filed; it is quarantined", inbound_id)
        inbound = session.get(InboundEmail, inbound_id)
        if inbound is None or inbound.status != "received":
            return "gone" if inbound is None else inbound.status
        inbound.attempts += 1
        filing.quarantine(inbound, "rejected", utcnow(), f"Filing failed: {type(exc).__name__}: {exc}"[:2000])
        session.commit()
        return "quarantined"


def _log_outcome(inbound, outcome):
    """One line per filed email: the log a person reads."""
    item = outcome.item
    ref = getattr(item, "ref", None) if item is not None else None
    log.info("intake: email %s (%s) %s%s%s", inbound.id, inbound.source, outcome.status,
             f" {ref}" if ref else "", f" ({outcome.reason})" if outcome.reason else "")
