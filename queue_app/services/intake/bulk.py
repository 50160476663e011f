"""The bulk import (`flask intake file`): many stored emails filed in batches, by the same
filing rules as one email, through the batched writer (services.intake.writers.Batched).

Each batch is one transaction: its InboundEmail rows are inserted first (the raw bytes are
stored before anything else, as always), the batch's lookups are read up front, the filing
rules run message by message, and the queued rows and outcomes are written before the commit.
A batch that fails is rolled back and filed again one message per transaction; a message that
still fails is kept, raw bytes and all, quarantined as `rejected` with the error.
"""
import hashlib
import logging
import queue as queue_module
from collections import Counter
from itertools import islice

import sqlalchemy as sa

from queue_app.db import batched_rows, config_cache, filing_lock
from queue_app.models import InboundEmail
from queue_app.models.base import utcnow
from queue_app.services.intake.filing import (
    copy_key,
    find_known,
    first_copies,
    peek_message_id,
    process,
    quarantine,
    receive,
    receive_many,
    received_row,
)
from queue_app.services.intake.lookups import BatchLookups, DatabaseLookups, chunks
from queue_app.services.intake.mail.parser import MailParseError, parse_email
from queue_app.services.intake.writers import Batched, Row
from queue_app.services.sla import policies as sla_policies

log = logging.getLogger(__name__)


def import_raw_messages(session, raws, *, fallback_mailbox=None, source="file", batch=200, read_ahead=False):
    """Store and process many raw emails (a file import); returns a Counter of outcomes.

    A copy of an email already stored (same Message-ID, or same bytes without one) is
    counted as a duplicate and not stored again, so importing the same files twice creates
    nothing. Each batch of `batch` messages is one transaction. If anything in a batch fails,
    the batch is rolled back and done again one message per transaction; a message that
    still fails is kept, raw bytes and all, quarantined as `rejected` with the error.

    `read_ahead`: read and parse the next batches in a second process while this one writes
    (`raws` is then iterated there: reading and parsing are about half the work and need no
    database).
    """
    if isinstance(session, sa.orm.scoped_session):
        session = session()  # the session itself: the many calls below skip the proxy's lookup
    counts = Counter()
    # Rules, policies and mailboxes are read once per batch; events and jobs are written per batch.
    with config_cache.config_cache(session), batched_rows.batched_rows(session), Batched(session) as writer, \
            _ReadAhead(raws, batch, writer.intake.max_message_bytes, enabled=read_ahead) as batches:
        for chunk, parsed in batches:
            with sla_policies.memoised_due_times():
                counts.update(_import_batch(session, writer, chunk, fallback_mailbox, source, parsed))
            config_cache.reset(session)
    return counts


def parse_many(raws, limit):
    """parse_email of each message: a ParsedEmail, the MailParseError to quarantine it with, or
    None (over the size limit, or the parser itself failed: `process` handles those)."""
    out = []
    for raw in raws:
        if len(raw) > limit:
            out.append(None)
            continue
        try:
            out.append(parse_email(raw))
        except MailParseError as exc:
            out.append(exc)
        except Exception:  # noqa: BLE001 - process() parses it again and deals with it
            out.append(None)
    return out


def _read_and_parse(raws, size, limit, queue):
    """The read-ahead process: each batch's raw bytes and parse results, in order, then "done"."""
    try:
        for chunk in chunks(raws, size):
            queue.put(("batch", chunk, parse_many(chunk, limit)))
        queue.put(("done", None, None))
    except BaseException as exc:  # noqa: BLE001 - told to the importing process, which carries on
        queue.put(("failed", f"{type(exc).__name__}: {exc}", None))
    queue.close()
    queue.join_thread()  # everything handed over before the process exits


class _ReadAhead:
    """Batches of (raw bytes, parse results or None) to write, in order.

    Enabled, a forked process reads `raws` (its own copy of the iterator, not yet started)
    and parses each batch, up to AHEAD batches ahead of the writer. If that process fails or
    dies, this one carries on from the first message it has not received, reading the rest
    itself (and `process` parses them). Disabled, batches are read here, unparsed.
    """

    AHEAD = 2

    def __init__(self, raws, size, limit, enabled):
        self.raws, self.size, self.limit = raws, size, limit
        self.process = self.queue = None
        if enabled:
            import multiprocessing

            try:
                context = multiprocessing.get_context("fork")
                self.queue = context.Queue(self.AHEAD)
                self.process = context.Process(target=_read_and_parse, args=(raws, size, limit, self.queue),
                                               name="backdesk-intake-read-ahead", daemon=True)
                self.process.start()
            except (OSError, ValueError):
                log.warning("intake: cannot start the read-ahead process; reading in this one", exc_info=True)
                self.process = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.process is not None:
            if self.process.is_alive():
                self.process.terminate()
            self.process.join()
            self.queue.close()
            self.queue.cancel_join_thread()

    def __iter__(self):
        received = 0
        while self.process is not None:
            try:
                kind, chunk, parsed = self.queue.get(timeout=1)
            except queue_module.Empty:
                if self.process.is_alive():
                    continue
                kind, chunk = "failed", f"it exited with code {self.process.exitcode}"
            except Exception as exc:  # noqa: BLE001 - a message cut short by a dying process
                kind, chunk = "failed", f"{type(exc).__name__}: {exc}"
            if kind == "batch":
                received += len(chunk)
                yield chunk, parsed
            elif kind == "done":
                return
            else:
                log.warning("intake: the read-ahead process failed (%s); reading from message %d in this one",
                            chunk, received + 1)
                break
        for chunk in chunks(islice(self.raws, received, None), self.size):
            yield chunk, None


def _receive_rows(session, raws, *, source, keys, now):
    """`receive` for the bulk import: a batch's rows are INSERTed at once, before anything else
    (the raw bytes are stored first, as always). What is returned holds each row's values as
    attributes, as an InboundEmail would (not an ORM object: the session does not track them);
    `write_outcomes` writes what processing decided, for the whole batch."""
    rows = [received_row(raw, source=source, message_id=message_id, sha256=digest, now=now)
            for raw, (message_id, digest) in zip(raws, keys)]
    ids = receive_many(session, rows)
    return [Row(id=row_id, mailbox=None, work_item=None, reason=None, detail=None, processed_at=None,
                 work_item_id=None, duplicate_of_id=None, **row) for row_id, row in zip(ids, rows)]


_OUTCOME_COLUMNS = ("status", "reason", "detail", "processed_at", "work_item_id", "mailbox_id", "attempts",
                    "duplicate_of_id")


def write_outcomes(session, inbounds):
    """One executemany UPDATE for the outcomes of a batch's InboundEmail rows (see _receive_rows)."""
    if not inbounds:
        return
    table = InboundEmail.__table__
    params = [{"row_id": i.id, **{f"new_{c}": getattr(i, c) for c in _OUTCOME_COLUMNS}} for i in inbounds]
    session.execute(table.update().where(table.c.id == sa.bindparam("row_id"))
                    .values({c: sa.bindparam(f"new_{c}") for c in _OUTCOME_COLUMNS}), params)
    dropped = [{"row_id": i.id} for i in inbounds if i.raw is None]  # duplicates keep no bytes of their own
    if dropped:
        session.execute(table.update().where(table.c.id == sa.bindparam("row_id")).values(raw=None), dropped)


def _import_batch(session, writer, raws, fallback_mailbox, source, parsed):
    # One instant for the whole batch, as its rows become visible together: the transaction's time.
    now = utcnow()
    keys = [(peek_message_id(raw), hashlib.sha256(raw).hexdigest()) for raw in raws]
    position = writer.mark()
    counts = Counter()
    try:
        filing_lock.hold(session)  # files in turn with the live filer (services.intake.filer)
        known = set(first_copies(session, [copy_key(*key) for key in keys]))
        new = []  # (index in the batch, raw, key) of each message not stored before
        for index, (raw, (message_id, digest)) in enumerate(zip(raws, keys)):
            key = copy_key(message_id, digest)
            if key in known:
                counts["duplicate"] += 1
                continue
            known.add(key)
            new.append((index, raw, (message_id, digest)))
        stored = _receive_rows(session, [raw for _, raw, _ in new], source=source, keys=[k for _, _, k in new],
                               now=now)
        if parsed is None:
            parsed_new = parse_many([raw for _, raw, _ in new], writer.intake.max_message_bytes)
        else:
            parsed_new = [parsed[index] for index, _, _ in new]
        writer.start_batch(BatchLookups(session, parsed_new, writer.attach))
        for inbound, parsed_one in zip(stored, parsed_new):
            outcome = process(session, inbound, fallback_mailbox=fallback_mailbox, now=now, known_new=True,
                              parsed=parsed_one, writer=writer)
            counts[outcome.status] += 1
        batched_rows.write_pending(session)  # the outcomes refer to the batch's new items
        write_outcomes(session, stored)
        session.commit()
        return counts
    except Exception:
        writer.roll_back(position)
        log.warning("intake: a batch of %d messages failed; filing them one at a time", len(raws), exc_info=True)
    finally:
        writer.end_batch()
    counts = Counter()
    writer.start_batch(DatabaseLookups(session))  # one message per transaction: the database answers
    try:
        for raw in raws:
            counts[_import_one(session, writer, raw, fallback_mailbox, source)] += 1
    finally:
        writer.end_batch()
    return counts


def _import_one(session, writer, raw, fallback_mailbox, source):
    position = writer.mark()
    try:
        if find_known(session, peek_message_id(raw), hashlib.sha256(raw).hexdigest()) is not None:
            return "duplicate"
        inbound = receive(session, raw, source=source)
        status = process(session, inbound, fallback_mailbox=fallback_mailbox, writer=writer).status
        session.commit()
        return status
    except Exception as exc:
        writer.roll_back(position)
        log.exception("intake: a message could not be filed; it is kept and quarantined")
        now = utcnow()
        inbound = receive(session, raw, source=source, now=now)
        inbound.attempts = 1
        quarantine(inbound, "rejected", now, f"Filing failed: {type(exc).__name__}: {exc}"[:2000])
        session.commit()
        return "quarantined"
