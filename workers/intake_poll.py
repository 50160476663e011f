"""IMAP intake: fetch unseen mail of each IMAP mailbox, store and process it, then mark it.

Invariants:
- UIDs only (UID SEARCH / FETCH / STORE / MOVE), never sequence numbers, which shift when
  another client expunges.
- BODY.PEEK[] fetches without setting \\Seen; the message is marked (\\Seen, or moved to
  imap_processed_folder) only after its InboundEmail row is committed. A crash in between
  leaves it unseen; the next poll finds it stored (Message-ID, else SHA-256 of the bytes),
  counts a duplicate and marks it. So polling is idempotent across restarts, and a changed
  UIDVALIDITY needs nothing more than remembering the new value.
- The raw bytes are committed before processing, in their own transaction: a message whose
  processing crashes is still stored (status `received`, picked up by the intake sweep) and
  marked, so one poison message cannot block the mailbox. A message we could not store
  stays unseen and is tried again next poll.
- One mailbox failing (connection, login, folder) is logged and never stops the others.
"""
import base64
import hashlib
import imaplib
import logging
import re
import signal
import ssl
import threading
import time
from collections import Counter

import sqlalchemy as sa
from flask import current_app

from queue_app.extensions import db
from queue_app.models import Mailbox
from queue_app.services.intake import filing
from workers.context import job_context

log = logging.getLogger(__name__)

MAX_PER_POLL = 500  # the rest waits for the next poll, so one poll never holds a connection for hours
TIMEOUT = 60  # seconds, per socket operation
DEFAULT_PORTS = {"ssl": 993, "starttls": 143, "none": 143}


class PollError(Exception):
    """A mailbox could not be polled at all (connection, TLS, login, folder)."""


def imap_utf7(name):
    """A folder name in IMAP's modified UTF-7 (RFC 3501 5.1.3)."""
    out, pending = [], []

    def flush():
        if pending:
            encoded = base64.b64encode("".join(pending).encode("utf-16-be")).decode("ascii").rstrip("=")
            out.append("&" + encoded.replace("/", ",") + "-")
            pending.clear()

    for char in name:
        if 0x20 <= ord(char) <= 0x7E:
            flush()
            out.append("&-" if char == "&" else char)
        else:
            pending.append(char)
    flush()
    return "".join(out)


def quote_folder(name):
    encoded = imap_utf7(name)
    return '"' + encoded.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _check(result, what):
    typ, data = result
    if typ != "OK":
        detail = b" ".join(d for d in data if isinstance(d, bytes)).decode("utf-8", "replace")
        raise imaplib.IMAP4.error(f"{what}: {typ} {detail}".strip())
    return data


def _describe(mailbox):
    return f"{mailbox.address} ({mailbox.imap_user}@{mailbox.imap_host}:{mailbox.imap_port or ''}/{mailbox.imap_folder})"


def connect(mailbox):
    """A logged-in IMAP connection with the mailbox's folder selected, and its capabilities."""
    tls = mailbox.imap_tls or "ssl"
    port = mailbox.imap_port or DEFAULT_PORTS.get(tls, 993)
    try:
        if tls == "ssl":
            conn = imaplib.IMAP4_SSL(mailbox.imap_host, port, ssl_context=ssl.create_default_context(),
                                     timeout=TIMEOUT)
        else:
            conn = imaplib.IMAP4(mailbox.imap_host, port, timeout=TIMEOUT)
            if tls == "starttls":
                try:
                    conn.starttls(ssl_context=ssl.create_default_context())
                except BaseException:
                    conn.shutdown()
                    raise
    except (OSError, imaplib.IMAP4.error) as exc:
        raise PollError(f"cannot connect to {mailbox.imap_host}:{port} ({tls}): {exc}") from exc
    try:
        try:
            # Without a stored password the environment's IMAP_PASSWORD is used (the secret stays out of the DB).
            password = mailbox.imap_password or current_app.config.get("IMAP_PASSWORD") or ""
            conn.login(mailbox.imap_user or "", password)
        except imaplib.IMAP4.error as exc:
            raise PollError(f"login as {mailbox.imap_user!r} failed: {_text(exc)}") from exc
        capabilities = set(b" ".join(_check(conn.capability(), "CAPABILITY")).decode().upper().split())
        try:
            _check(conn.select(quote_folder(mailbox.imap_folder or "INBOX")), "SELECT")
        except imaplib.IMAP4.error as exc:
            raise PollError(f"cannot open folder {mailbox.imap_folder!r}: {_text(exc)}") from exc
        return conn, capabilities
    except BaseException:
        _logout(conn)
        raise


def _text(exc):
    value = exc.args[0] if exc.args else exc
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _logout(conn):
    try:
        conn.logout()
    except (OSError, imaplib.IMAP4.error) as exc:  # the connection is gone already: nothing to close
        log.debug("IMAP logout failed: %s", exc)


def _uidvalidity(conn):
    _, data = conn.response("UIDVALIDITY")
    try:
        return int(data[0])
    except (TypeError, ValueError, IndexError):
        return None


def unseen_uids(conn):
    data = _check(conn.uid("SEARCH", "UNSEEN"), "UID SEARCH")
    return sorted(int(uid) for uid in b" ".join(d for d in data if d).split())


def fetch(conn, uid):
    """The raw bytes of one message, without marking it seen; None when it is gone."""
    data = _check(conn.uid("FETCH", str(uid), "(BODY.PEEK[])"), "UID FETCH")
    for part in data:
        if isinstance(part, tuple) and b"BODY[]" in part[0].upper():
            found = re.search(rb"UID (\d+)", part[0])
            if found is None or int(found.group(1)) == uid:
                return part[1]
    return None


def ensure_folder(conn, folder):
    quoted = quote_folder(folder)
    listed = _check(conn.list('""', quoted), "LIST")
    if not any(listed):
        _check(conn.create(quoted), f"CREATE {folder}")
        log.info("IMAP intake: created folder %r", folder)


def mark_done(conn, uid, folder, capabilities):
    """\\Seen, and then moved to `folder` if there is one (MOVE, else COPY + \\Deleted + expunge)."""
    _check(conn.uid("STORE", str(uid), "+FLAGS.SILENT", r"(\Seen)"), "UID STORE")
    if not folder:
        return
    target = quote_folder(folder)
    if "MOVE" in capabilities:
        _check(conn.uid("MOVE", str(uid), target), "UID MOVE")
        return
    _check(conn.uid("COPY", str(uid), target), "UID COPY")
    _check(conn.uid("STORE", str(uid), "+FLAGS.SILENT", r"(\Deleted)"), "UID STORE")
    if "UIDPLUS" in capabilities:
        _check(conn.uid("EXPUNGE", str(uid)), "UID EXPUNGE")
    else:
        _check(conn.expunge(), "EXPUNGE")  # without UIDPLUS this expunges every \Deleted message here


def _process(session, inbound_id):
    """Process a committed message; a crash leaves it `received` for the intake sweep."""
    try:
        outcome = filing.process_stored(session, inbound_id)  # once, though the intake sweep may have it too
        session.commit()
        return outcome.status
    except Exception:
        session.rollback()
        log.exception("IMAP intake: processing stored email %s failed; the intake sweep retries it", inbound_id)
        return "stored"


def _take(conn, capabilities, session, mailbox, address, uid, counts):
    """Store and process one message, then mark it. Returns False when the message stays unseen."""
    raw = fetch(conn, uid)
    if raw is None:
        return False  # expunged by someone else since the search
    try:
        known = filing.find_known(session, filing.peek_message_id(raw), hashlib.sha256(raw).hexdigest())
        if known is not None:
            counts["duplicate"] += 1
        else:
            inbound = filing.receive(session, raw, source="imap", imap_uid=uid, mailbox=mailbox)
            session.commit()  # stored: from here on the message may be marked
            counts[_process(session, inbound.id)] += 1
    except Exception:
        session.rollback()
        counts["error"] += 1
        log.exception("IMAP intake: could not store UID %s of %s; it stays unseen and is tried next poll",
                      uid, address)
        return False
    mark_done(conn, uid, mailbox.imap_processed_folder, capabilities)
    return True


def poll(session, mailbox):
    """Poll one mailbox; returns a Counter of outcomes. Raises PollError if it cannot be polled."""
    counts = Counter()
    address = mailbox.address
    conn, capabilities = connect(mailbox)
    try:
        uidvalidity = _uidvalidity(conn)
        if uidvalidity is not None and uidvalidity != mailbox.imap_uidvalidity:
            if mailbox.imap_uidvalidity is not None:
                log.warning("IMAP intake: UIDVALIDITY of %s changed from %s to %s; stored messages are recognised "
                            "by Message-ID", address, mailbox.imap_uidvalidity, uidvalidity)
            mailbox.imap_uidvalidity = uidvalidity
            session.commit()
        if mailbox.imap_processed_folder:
            try:
                ensure_folder(conn, mailbox.imap_processed_folder)
            except imaplib.IMAP4.error as exc:
                raise PollError(f"cannot create folder {mailbox.imap_processed_folder!r}: {_text(exc)}") from exc
        uids = unseen_uids(conn)
        if len(uids) > MAX_PER_POLL:
            log.info("IMAP intake: %s has %d unseen messages; taking %d now", address, len(uids), MAX_PER_POLL)
        for uid in uids[:MAX_PER_POLL]:
            try:
                _take(conn, capabilities, session, mailbox, address, uid, counts)
            except imaplib.IMAP4.abort:
                raise
            except imaplib.IMAP4.error as exc:  # the server refused FETCH/STORE/MOVE for this one message
                counts["error"] += 1
                log.error("IMAP intake: UID %s of %s: %s; tried again next poll", uid, address, _text(exc))
    except (OSError, imaplib.IMAP4.abort) as exc:
        raise PollError(f"connection lost: {exc}") from exc
    finally:
        _logout(conn)
    return counts


@job_context
def poll_mailbox(mailbox_id):
    """Poll one mailbox (also an RQ job); never raises, so one bad account only logs."""
    mailbox = db.session.get(Mailbox, mailbox_id)
    if mailbox is None or not mailbox.active or not mailbox.imap_host:
        return {}
    description = _describe(mailbox)
    try:
        counts = poll(db.session, mailbox)
    except PollError as exc:
        db.session.rollback()
        log.error("IMAP intake: polling %s failed: %s", description, exc)
        return {"error": 1}
    except Exception:
        db.session.rollback()
        log.exception("IMAP intake: polling %s failed", description)
        return {"error": 1}
    if counts:
        log.info("IMAP intake: %s: %s", mailbox.address, ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    return dict(counts)


def imap_mailboxes(session):
    return session.execute(sa.select(Mailbox.id, Mailbox.address)
                           .where(Mailbox.active.is_(True), Mailbox.imap_host.is_not(None), Mailbox.imap_host != "")
                           .order_by(Mailbox.id)).all()


def poll_all():
    """Poll every active IMAP mailbox once (in an app context); returns {address: Counter}."""
    results = {}
    for mailbox_id, address in imap_mailboxes(db.session):
        results[address] = Counter(poll_mailbox(mailbox_id))
    return results


def enqueue_polls():
    """Queue a poll_mailbox job per active IMAP mailbox (for the scheduler); returns how many.

    The job id `imap-poll-<mailbox id>` is unique while the job waits or runs, so a slow
    account never has two polls at once; finished polls keep no result, so the next one
    can be queued. Without IMAP mailboxes nothing is queued and Redis is not touched.
    """
    mailboxes = imap_mailboxes(db.session)
    if not mailboxes:
        return 0
    from flask import current_app
    from rq.exceptions import DuplicateJobError

    from workers.queues import get_queue

    queue = get_queue("intake")
    every = max(1, int(current_app.config.get("INTAKE_POLL_SECONDS") or 60))
    queued = 0
    for mailbox_id, _ in mailboxes:
        try:
            queue.enqueue("workers.intake_poll.poll_mailbox", mailbox_id, job_id=f"imap-poll-{mailbox_id}",
                          unique=True, result_ttl=0, failure_ttl=every, ttl=10 * every)
            queued += 1
        except DuplicateJobError:
            pass  # the previous poll of this mailbox is still waiting or running
    return queued


def poll_forever(app, stop=None):
    """Poll every INTAKE_POLL_SECONDS until SIGINT/SIGTERM (or until `stop()` returns true)."""
    stopping = threading.Event()
    previous = {}
    if stop is None:
        previous = {sig: signal.signal(sig, lambda *_: stopping.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    done = (lambda: stopping.is_set() or bool(stop and stop()))
    every = max(1, int(app.config.get("INTAKE_POLL_SECONDS") or 60))
    log.info("IMAP intake: polling every %ss", every)
    try:
        with app.app_context():
            while not done():
                started = time.monotonic()
                try:
                    poll_all()
                except Exception:
                    db.session.rollback()
                    log.exception("IMAP intake: poll failed; trying again in %ss", every)
                finally:
                    db.session.remove()
                while not done() and time.monotonic() - started < every:
                    stopping.wait(0.2)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
