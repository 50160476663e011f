"""The SMTP intake server (`flask intake smtp`): mail for our mailboxes becomes InboundEmail rows.

Invariants:
- RCPT is refused (550) for any address that is not an active Mailbox or our own MAIL_FROM
  (customers reply to it), so a relay never hands us mail we would have to bounce later; a
  malformed address gets 553.
- SIZE is advertised from INTAKE_MAX_MESSAGE_BYTES and larger DATA is refused with 552.
- "250 Message accepted as <id>" is sent only after the raw bytes and the processing job
  (outbox row) are committed in one transaction. If that commit fails the answer is 451,
  so the sending relay keeps the message and retries: nothing is acknowledged and lost.
- Database work runs in a thread pool (loop.run_in_executor), never on the event loop,
  each call in its own app context and therefore its own session.
- Redis is not needed to accept mail: the job is handed to RQ after the commit if Redis
  answers, otherwise the outbox relay does it later, and the intake sweep processes any
  stored message nobody processed.
- INTAKE_PROCESS_INLINE (off by default) also processes the message in the same thread right
  after the commit, before the 250. It suits tests and single-process setups; production
  leaves it off so a slow or failing parse never holds up an SMTP session. Processing is
  idempotent, so the job that still runs afterwards does nothing.
"""
import asyncio
import logging
import re
import signal
import threading
from concurrent.futures import ThreadPoolExecutor

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

log = logging.getLogger(__name__)

PROCESS_JOB = "workers.intake_jobs.process_inbound"
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
        self.intake_handler.executor.shutdown(wait=True)


class IntakeHandler:
    """aiosmtpd handler: RCPT checks the mailbox, DATA stores the message and its job."""

    def __init__(self, app, max_workers=4):
        self.app = app
        self.executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="smtp-intake")

    async def _in_thread(self, func, *args):
        return await asyncio.get_running_loop().run_in_executor(self.executor, func, *args)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if not _ADDRESS.match(address or ""):
            return f"553 5.1.3 <{address}>: malformed address"
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return "452 4.5.3 Too many recipients"
        try:
            known = await self._in_thread(self._is_mailbox, address)
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
            inbound_id = await self._in_thread(self._store, raw, envelope.mail_from, list(envelope.rcpt_tos))
        except Exception:
            log.exception("SMTP intake: could not store a message from %s to %s; answered 451",
                          envelope.mail_from, envelope.rcpt_tos)
            return "451 4.3.0 Temporary failure storing the message, try again later"
        return f"250 Message accepted as {inbound_id}"

    def _is_mailbox(self, address):
        """An active mailbox, or MAIL_FROM: customers answer our mail, and it comes from there
        (processing files such a reply on its item, or quarantines it if it answers nothing)."""
        from queue_app.extensions import db
        from queue_app.services.intake import mailboxes as intake_mailboxes
        from queue_app.settings import MailSettings

        with self.app.app_context():
            ours = MailSettings.current().sender_address.strip()
            if ours and address.strip().lower() == ours:
                return True
            return intake_mailboxes.mailbox_for(db.session, [address]) is not None

    def _store(self, raw, mail_from, rcpt_tos):
        """Store the raw message and its processing job in one transaction; returns the row id."""
        from queue_app.db.outbox import enqueue_after_commit
        from queue_app.extensions import db
        from queue_app.services.intake import filing as intake_filing
        from queue_app.services.intake import mailboxes as intake_mailboxes

        with self.app.app_context():
            session = db.session
            try:
                mailbox = intake_mailboxes.mailbox_for(session, rcpt_tos)
                inbound = intake_filing.receive(session, raw, source="smtp", envelope_from=mail_from or None,
                                         envelope_to=rcpt_tos, mailbox=mailbox)
                enqueue_after_commit(session, PROCESS_JOB, inbound.id)
                session.commit()  # delivers the job to RQ if Redis answers; logs and carries on if not
            except Exception:
                session.rollback()
                raise
            inbound_id = inbound.id
            log.info("SMTP intake: stored message %s (%d bytes) from %s to %s", inbound_id, len(raw),
                     mail_from, ", ".join(rcpt_tos))
            if self.app.config.get("INTAKE_PROCESS_INLINE"):
                self._process(session, inbound_id)
            return inbound_id

    @staticmethod
    def _process(session, inbound_id):
        """Process now; a failure leaves the row `received` for the job or the sweep."""
        from queue_app.services.intake import filing as intake_filing

        try:
            outcome = intake_filing.process_stored(session, inbound_id)  # once, though its job may run now too
            session.commit()
            log.info("SMTP intake: message %s %s", inbound_id, outcome.status)
        except Exception:
            session.rollback()
            log.exception("SMTP intake: processing message %s failed; the job or the sweep retries it", inbound_id)


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
