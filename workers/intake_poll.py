"""IMAP intake: fetch the unseen mail of each IMAP mailbox in chunks, store and mark each chunk,
then file what was stored.

Invariants:
- UIDs only (UID SEARCH / FETCH / STORE / MOVE), never sequence numbers, which shift when
  another client expunges.
- BODY.PEEK[] fetches without setting \\Seen; a message is marked (\\Seen, or moved to
  imap_processed_folder) only after the transaction storing its InboundEmail row is committed.
  A crash in between leaves it unseen; the next poll finds it stored (Message-ID, else SHA-256
  of the bytes), counts a duplicate and marks it. So polling is idempotent across restarts, and
  a changed UIDVALIDITY needs nothing more than remembering the new value.
- Storing comes before filing: each chunk of messages (at most CHUNK, and about CHUNK_BYTES of
  mail) is stored in one transaction, committed and marked; only once the mailbox's messages are
  stored does the filer (services.intake.filer) file them. A message whose filing crashes is
  still stored (status `received`, filed later by the filer or the intake sweep) and marked, so
  one poison message cannot block the mailbox.
- If a chunk's transaction fails, its messages are stored again one per transaction: a message
  that cannot be stored stays unseen and is tried next poll, and holds back no other.
- One mailbox failing (connection, login, folder) is logged and never stops the others.
- IMAPClient speaks the protocol: it encodes folder names (modified UTF-7) and parses FETCH.
"""
import hashlib
import logging
import signal
import ssl
import threading
import time
from collections import Counter

import sqlalchemy as sa
from flask import current_app
from imapclient import SEEN, IMAPClient
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError, LoginError

from queue_app.extensions import db
from queue_app.models import Mailbox
from queue_app.services.intake import filer, filing
from workers.context import job_context

log = logging.getLogger(__name__)

MAX_PER_POLL = 1000  # the rest waits for the next poll, so one poll never holds a connection for hours
CHUNK = 100  # messages per UID FETCH and per storing transaction
CHUNK_BYTES = 50 * 1024 * 1024  # and not much more mail than this in memory at once
TIMEOUT = 60  # seconds, per socket operation
DEFAULT_PORTS = {"ssl": 993, "starttls": 143, "none": 143}


class PollError(Exception):
    """A mailbox could not be polled at all (connection, TLS, login, folder)."""


def _describe(mailbox):
    return f"{mailbox.address} ({mailbox.imap_user}@{mailbox.imap_host}:{mailbox.imap_port or ''}/{mailbox.imap_folder})"


def connect(mailbox):
    """A logged-in client with the mailbox's folder selected, its capabilities and the folder's UIDVALIDITY."""
    tls = mailbox.imap_tls or "ssl"
    port = mailbox.imap_port or DEFAULT_PORTS.get(tls, 993)
    try:
        client = IMAPClient(mailbox.imap_host, port, ssl=tls == "ssl", ssl_context=ssl.create_default_context(),
                            timeout=TIMEOUT)
    except (OSError, IMAPClientError) as exc:
        raise PollError(f"cannot connect to {mailbox.imap_host}:{port} ({tls}): {exc}") from exc
    try:
        if tls == "starttls":
            try:
                client.starttls(ssl.create_default_context())
            except (OSError, IMAPClientError) as exc:
                raise PollError(f"cannot connect to {mailbox.imap_host}:{port} ({tls}): {exc}") from exc
        try:
            # Without a stored password the environment's IMAP_PASSWORD is used (the secret stays out of the DB).
            password = mailbox.imap_password or current_app.config.get("IMAP_PASSWORD") or ""
            client.login(mailbox.imap_user or "", password)
        except LoginError as exc:
            # IMAPClient raises this from imaplib's error, which carries the server's words as bytes.
            raise PollError(f"login as {mailbox.imap_user!r} failed: {_text(exc.__context__ or exc)}") from exc
        capabilities = {c.decode("ascii", "replace").upper() for c in client.capabilities()}
        try:
            selected = client.select_folder(mailbox.imap_folder or "INBOX")
        except IMAPClientError as exc:
            raise PollError(f"cannot open folder {mailbox.imap_folder!r}: {exc}") from exc
        return client, capabilities, selected.get(b"UIDVALIDITY")
    except BaseException:
        _logout(client)
        raise


def _text(exc):
    value = exc.args[0] if exc.args else exc
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _logout(client):
    try:
        client.logout()
    except (OSError, IMAPClientError) as exc:  # the connection is broken or gone: just close the socket
        log.debug("IMAP logout failed: %s", exc)
        try:
            client.shutdown()
        except OSError:
            pass


def ensure_folder(client, folder):
    if not client.folder_exists(folder):
        client.create_folder(folder)
        log.info("IMAP intake: created folder %r", folder)


def chunks(client, uids):
    """The UIDs in FETCH-sized lists: at most CHUNK messages, and no more than CHUNK_BYTES beyond the first."""
    sizes = client.fetch(uids, ["RFC822.SIZE"])
    chunk, total = [], 0
    for uid in uids:
        if uid not in sizes:
            continue  # expunged by someone else since the search
        size = sizes[uid].get(b"RFC822.SIZE") or 0
        if chunk and (len(chunk) >= CHUNK or total + size > CHUNK_BYTES):
            yield chunk
            chunk, total = [], 0
        chunk.append(uid)
        total += size
    if chunk:
        yield chunk


def mark_done(client, uids, folder, capabilities):
    """\\Seen, and then moved to `folder` if there is one (MOVE, else COPY + \\Deleted + expunge)."""
    client.add_flags(uids, [SEEN], silent=True)
    if not folder:
        return
    if "MOVE" in capabilities:
        client.move(uids, folder)
        return
    client.copy(uids, folder)
    client.delete_messages(uids, silent=True)
    if "UIDPLUS" in capabilities:
        client.uid_expunge(uids)
    else:
        client.expunge()  # without UIDPLUS this expunges every \Deleted message here


def _store_one(session, mailbox, uid, raw):
    """Store one message unless it is stored already; True when it was (a duplicate)."""
    message_id, digest = filing.peek_message_id(raw), hashlib.sha256(raw).hexdigest()
    if filing.find_known(session, message_id, digest) is not None:
        return True
    filing.receive(session, raw, source="imap", imap_uid=uid, mailbox=mailbox, message_id=message_id, sha256=digest)
    return False


def store(session, mailbox, messages, counts):
    """Store a chunk's new messages ({uid: raw}) in one transaction; returns the UIDs that may be marked.

    If that transaction fails, each message is stored in a transaction of its own, so one that
    cannot be stored stays unseen alone.
    """
    address = mailbox.address
    try:
        duplicates = sum(_store_one(session, mailbox, uid, raw) for uid, raw in messages.items())
        session.commit()  # stored: from here on the chunk may be marked
    except Exception:
        session.rollback()
        log.warning("IMAP intake: storing UIDs %s of %s together failed; storing them one at a time",
                    _span(messages), address, exc_info=True)
    else:
        counts["duplicate"] += duplicates
        return list(messages)
    stored = []
    for uid, raw in messages.items():
        try:
            duplicate = _store_one(session, mailbox, uid, raw)
            session.commit()
        except Exception:
            session.rollback()
            counts["error"] += 1
            log.exception("IMAP intake: could not store UID %s of %s; it stays unseen and is tried next poll",
                          uid, address)
            continue
        counts["duplicate"] += duplicate
        stored.append(uid)
    return stored


def _span(uids):
    uids = list(uids)
    return f"{uids[0]}-{uids[-1]}" if len(uids) > 1 else str(uids[0])


def take(client, capabilities, session, mailbox, uids, counts):
    """Fetch one chunk, store it, and mark what was stored."""
    address = mailbox.address
    try:
        fetched = client.fetch(uids, ["BODY.PEEK[]"])
    except IMAPClientAbortError:
        raise
    except IMAPClientError as exc:  # the server refused this FETCH
        counts["error"] += len(uids)
        log.error("IMAP intake: fetching UIDs %s of %s failed: %s; tried again next poll", _span(uids), address, exc)
        return
    messages = {uid: fetched[uid][b"BODY[]"] for uid in uids if b"BODY[]" in fetched.get(uid, {})}
    if not messages:
        return  # expunged by someone else since the search
    stored = store(session, mailbox, messages, counts)
    if not stored:
        return
    try:
        mark_done(client, stored, mailbox.imap_processed_folder, capabilities)
    except IMAPClientAbortError:
        raise
    except IMAPClientError as exc:  # stored but not marked: the next poll counts them as duplicates
        counts["error"] += len(stored)
        log.error("IMAP intake: marking UIDs %s of %s failed: %s; they are stored and marked next poll",
                  _span(stored), address, exc)


def file_stored(session):
    """File what the poll stored (and any other stored mail still waiting); a Counter of outcomes."""
    try:
        return filer.drain(session)
    except Exception:
        session.rollback()
        log.exception("IMAP intake: filing stored mail failed; it stays stored and is filed later")
        return Counter()


def max_per_poll():
    return int(current_app.config.get("INTAKE_IMAP_MAX_PER_POLL") or MAX_PER_POLL)


def poll(session, mailbox):
    """Poll one mailbox; returns a Counter of outcomes. Raises PollError if it cannot be polled."""
    counts = Counter()
    address = mailbox.address
    client, capabilities, uidvalidity = connect(mailbox)
    try:
        if uidvalidity is not None and uidvalidity != mailbox.imap_uidvalidity:
            if mailbox.imap_uidvalidity is not None:
                log.warning("IMAP intake: UIDVALIDITY of %s changed from %s to %s; stored messages are recognised "
                            "by Message-ID", address, mailbox.imap_uidvalidity, uidvalidity)
            mailbox.imap_uidvalidity = uidvalidity
            session.commit()
        if mailbox.imap_processed_folder:
            try:
                ensure_folder(client, mailbox.imap_processed_folder)
            except IMAPClientAbortError:
                raise
            except IMAPClientError as exc:
                raise PollError(f"cannot create folder {mailbox.imap_processed_folder!r}: {exc}") from exc
        uids = sorted(client.search(["UNSEEN"]))
        limit = max_per_poll()
        if len(uids) > limit:
            log.info("IMAP intake: %s has %d unseen messages; taking %d now", address, len(uids), limit)
            uids = uids[:limit]
        if uids:
            for chunk in chunks(client, uids):
                take(client, capabilities, session, mailbox, chunk, counts)
    except (OSError, IMAPClientAbortError) as exc:
        raise PollError(f"connection lost: {exc}") from exc
    finally:
        _logout(client)
    counts.update(file_stored(session))
    return +counts


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
