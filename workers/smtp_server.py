"""The SMTP intake server (`flask intake smtp`): mail for our mailboxes becomes InboundEmail rows.

Invariants:
- RCPT is refused (550) for any address that is not an active Mailbox or our own MAIL_FROM
  (customers reply to it), so a relay never hands us mail we would have to bounce later; a
  malformed address gets 553.
- SIZE is advertised from INTAKE_MAX_MESSAGE_BYTES and larger DATA is refused with 552.
- "250 Message accepted as <id>" is sent only after the raw bytes are committed (`Storer`:
  one thread stores for every session, the messages waiting committed together). If that
  commit fails the answer is 451, so the sending relay keeps the message and retries:
  nothing is acknowledged and lost.
- Database work runs off the event loop (the storer thread, a thread pool for RCPT lookups),
  each in its own app context and therefore its own session.
- Filing is the single filer's (services.intake.filer), in arrival order, on a worker: after
  each commit the filer job is kicked (workers.intake_jobs.kick). Redis is not needed to accept
  mail: if the kick fails, the scheduler's intake sweep starts the filer later.
- INTAKE_PROCESS_INLINE (off by default) also files the stored mail in the storer thread right
  after the commit, before the 250. It suits tests and single-process setups; production
  leaves it off so a slow or failing parse never holds up an SMTP session.
"""
import asyncio
import logging
import queue
import re
import signal
import threading
import time
from concurrent.futures import Future, InvalidStateError, ThreadPoolExecutor

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

log = logging.getLogger(__name__)

MAX_RECIPIENTS = 100
# A plain addr-spec: local@domain, no spaces, no brackets, one @ (quoted local parts are not mailboxes of ours).
_ADDRESS = re.compile(r"^[^@\s<>()\[\]\\,;:\"]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$")


class IntakeSMTP(SMTP):
    """aiosmtpd's SMTP with a longer line limit: RFC 5321 says 998, but real mail (HTML
    without line breaks) sometimes has longer lines, and refusing it would bounce a customer."""

    line_length_limit = 64 * 1024


class IntakeController(Controller):
    def __init__(self, handler, **kwargs):
        super().__init__(handler, **kwargs)
        self.intake_handler = handler

    def factory(self):
        return IntakeSMTP(self.handler, **self.SMTP_kwargs)

    def stop(self, no_assert=False):
        """Stop listening, then let messages being committed finish (their senders get no 250
        and will retry; duplicate detection keeps the retry from filing them twice)."""
        super().stop(no_assert=no_assert)
        self.intake_handler.close()


class IntakeHandler:
    """aiosmtpd handler: RCPT checks the mailbox, DATA stores the message (in `Storer`)."""

    def __init__(self, app, max_workers=4):
        self.app = app
        self.executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="smtp-intake")
        self.directory = MailboxDirectory(app)
        self.storer = Storer(app, self.directory)

    def close(self):
        self.storer.close()
        self.executor.shutdown(wait=True)

    async def _in_thread(self, func, *args):
        return await asyncio.get_running_loop().run_in_executor(self.executor, func, *args)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if not _ADDRESS.match(address or ""):
            return f"553 5.1.3 <{address}>: malformed address"
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return "452 4.5.3 Too many recipients"
        try:
            known = self.directory.takes(address) if self.directory.fresh() else \
                await self._in_thread(self.directory.takes, address)
        except Exception:
            log.exception("SMTP intake: could not look up mailbox %s", address)
            return "451 4.3.0 Temporary failure, try again later"
        if not known:
            log.info("SMTP intake: refused RCPT %s (no such mailbox) from %s", address, session.peer)
            return f"550 5.1.1 <{address}>: no such mailbox here"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or b""
        try:
            inbound_id = await asyncio.wrap_future(self.storer.submit(raw, envelope.mail_from,
                                                                      list(envelope.rcpt_tos)))
        except Exception:
            log.exception("SMTP intake: could not store a message from %s to %s; answered 451",
                          envelope.mail_from, envelope.rcpt_tos)
            return "451 4.3.0 Temporary failure storing the message, try again later"
        return f"250 Message accepted as {inbound_id}"



class MailboxDirectory:
    """The addresses we take mail for: the active mailboxes, and MAIL_FROM (customers answer our
    mail, and it comes from there; filing puts such a reply on its item, or quarantines it if it
    answers nothing). Read again every SECONDS, so a new or deactivated mailbox counts within
    that, and RCPT and storing need no query per message."""

    SECONDS = 5

    def __init__(self, app):
        self.app = app
        self.read_at = None
        self.mailbox_ids, self.ours = {}, ""
        self.lock = threading.Lock()

    def fresh(self):
        return self.read_at is not None and time.monotonic() - self.read_at < self.SECONDS

    def _current(self):
        if not self.fresh():
            with self.lock:
                if not self.fresh():
                    self._read()
        return self.mailbox_ids, self.ours

    def _read(self):
        import sqlalchemy as sa

        from queue_app.extensions import db
        from queue_app.models import Mailbox
        from queue_app.settings import MailSettings

        with self.app.app_context():
            self.ours = MailSettings.current().sender_address.strip().lower()
            self.mailbox_ids = dict(db.session.execute(sa.select(Mailbox.address, Mailbox.id)
                                                       .where(Mailbox.active.is_(True))).all())
            db.session.remove()
        self.read_at = time.monotonic()

    def takes(self, address):
        mailbox_ids, ours = self._current()
        address = address.strip().lower()
        return address in mailbox_ids or bool(ours and address == ours)

    def mailbox_id(self, addresses):
        """The first active mailbox among the envelope recipients, as filing.mailbox_for finds it."""
        mailbox_ids, _ = self._current()
        for address in addresses:
            found = mailbox_ids.get(address.strip().lower())
            if found is not None:
                return found
        return None


class Storer:
    """One thread stores what every SMTP session received: the messages waiting when it gets to
    them are committed together (group commit), then each session gets its 250. Fewer commits
    mean fewer waits for SQLite's write lock, which the filer holds while it files a batch.

    A group that fails to commit is stored again one message per transaction, so one bad message
    gets its 451 alone. After each commit the filer is kicked from a thread of its own, so a slow
    or unreachable Redis never holds up storing.
    """

    MAX_GROUP = 64

    def __init__(self, app, directory):
        self.app = app
        self.directory = directory
        self.waiting = queue.Queue()
        self.kicks = threading.Event()
        self.closing = False
        self.thread = threading.Thread(target=self._run, name="smtp-intake-store", daemon=True)
        self.kicker = threading.Thread(target=self._kick_loop, name="smtp-intake-kick", daemon=True)
        self.thread.start()
        self.kicker.start()

    def submit(self, raw, mail_from, rcpt_tos):
        """A Future of the stored row's id."""
        future = Future()
        self.waiting.put((future, raw, mail_from, rcpt_tos))
        return future

    def close(self):
        """Store what was submitted, then stop."""
        self.waiting.put(None)
        self.thread.join()
        self.closing = True
        self.kicks.set()
        self.kicker.join(timeout=5)

    def _run(self):
        while True:
            first = self.waiting.get()
            if first is None:
                return
            group = [first]
            while len(group) < self.MAX_GROUP:
                try:
                    more = self.waiting.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self.waiting.put(None)  # stop after this group
                    break
                group.append(more)
            self._store_group(group)

    def _store_group(self, group):
        """Commit the group's messages together (one INSERT), then answer each session."""
        from queue_app.extensions import db
        from queue_app.models.base import utcnow
        from queue_app.services.intake import filing

        now = utcnow()
        with self.app.app_context():
            session = db.session
            try:
                rows = [filing.received_row(raw, source="smtp", envelope_from=mail_from or None, envelope_to=rcpt_tos,
                                            mailbox_id=self.directory.mailbox_id(rcpt_tos), now=now)
                        for _, raw, mail_from, rcpt_tos in group]
                ids = filing.receive_many(session, rows)
                session.commit()
            except Exception as exc:
                session.rollback()
                ids, error = None, exc
            else:
                if self.app.config.get("INTAKE_PROCESS_INLINE"):
                    _file_now(session)
            finally:
                db.session.remove()
        if ids is None:
            if len(group) == 1:
                _answer(group[0][0], error=error)
                return
            log.warning("SMTP intake: storing %d messages together failed (%s); storing them one by one",
                        len(group), error)
            for one in group:
                self._store_group([one])
            return
        for (future, _, mail_from, rcpt_tos), row, inbound_id in zip(group, rows, ids):
            log.debug("SMTP intake: stored message %s (%d bytes) from %s to %s", inbound_id, row["size"], mail_from,
                      ", ".join(rcpt_tos))
            _answer(future, inbound_id)
        if self.app.config.get("OUTBOX_DELIVER_ON_COMMIT", True):  # off: nothing goes to RQ at commit time
            self.kicks.set()

    def _kick_loop(self):
        from workers.intake_jobs import kick

        while not self.closing:
            self.kicks.wait()
            self.kicks.clear()
            if self.closing:
                return
            with self.app.app_context():
                kick()


def _answer(future, inbound_id=None, error=None):
    """Tell the SMTP session; one cut off meanwhile (server stopping, client gone) gets no answer
    and its relay sends again (the copy is filed as a duplicate)."""
    if future.cancelled():
        return
    try:
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(inbound_id)
    except InvalidStateError:
        pass


def _file_now(session):
    """INTAKE_PROCESS_INLINE: file what was stored before answering; a failure leaves the mail
    `received` for the filer job or the sweep."""
    from queue_app.services.intake import filer

    try:
        filer.drain(session)
    except Exception:
        session.rollback()
        log.exception("SMTP intake: filing stored mail failed; the filer job or the sweep retries it")


def make_controller(app, host, port):
    """An (unstarted) aiosmtpd controller serving intake for `app`; .start() / .stop() it."""
    from queue_app.settings import IntakeSettings, MailSettings

    with app.app_context():
        limit, domain = IntakeSettings.current().max_message_bytes, MailSettings.current().domain
    return IntakeController(IntakeHandler(app), hostname=host, port=port, data_size_limit=limit,
                            server_hostname=domain or "localhost",  # no slow getfqdn()
                            ident="Backdesk intake", decode_data=False, enable_SMTPUTF8=True, timeout=300)


def serve(app, host, port):
    """Run the SMTP intake server until SIGINT or SIGTERM."""
    stopping = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stopping.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    controller = make_controller(app, host, port)
    try:
        controller.start()
    except OSError as exc:  # typically the port is taken: say so instead of a traceback
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        raise SystemExit(f"SMTP intake: cannot listen on {host}:{port}: {exc.strerror or exc} "
                         "(set SMTP_INTAKE_HOST / SMTP_INTAKE_PORT)") from None
    log.info("SMTP intake listening on %s:%s (max %s bytes per message)", host, port,
             controller.SMTP_kwargs["data_size_limit"])
    print(f"SMTP intake listening on {host}:{port}", flush=True)
    try:
        while not stopping.wait(1):
            pass
    finally:
        log.info("SMTP intake stopping")
        controller.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
