"""Outbound mail: send one stored Message, Notification or password link (AccountLink), at most once.

Mail is the one job whose effect leaves the database, so it cannot be committed together with
the record that it happened. The choice is at-most-once: a message is never sent twice, and in
the one window where we cannot know (the process dies, or the connection breaks, after the
server may have taken the message and before `sent` is committed) it is marked `unconfirmed`
with an event for a person to look at, instead of being sent again.

- Before sending, the job claims the row: `queued`/`failed` -> `sending` (with `sent_at` = the
  claim's time) in a commit of its own. Only the attempt whose UPDATE changed the row sends.
- `sending` found by another attempt: if the claim is younger than SENDING_LIMIT (longer than a
  mail job may run: RQ stops it at its timeout), the other attempt may still be sending, so this
  one raises SendInProgress and RQ retries it later; if older, the claimer died mid-send: the
  row becomes `unconfirmed`, nothing is sent.
- The server refused the message, or it never got that far (connection, TLS, login, MAIL, RCPT):
  `failed`, and RQ retries (a later attempt claims `failed` again). The connection breaking
  while the server answers DATA: `unconfirmed`, not retried.
- `sent`, `bounced` (it was sent) and `unconfirmed`: skipped. A re-run sends nothing.
"""
import logging
import re
import smtplib
import ssl
from datetime import timedelta
from email.message import EmailMessage
from email.utils import formataddr, formatdate
from pathlib import Path

import sqlalchemy as sa
from flask import current_app

from queue_app.extensions import db
from queue_app.models import AccountLink, Message, Notification
from queue_app.models.base import utcnow
from queue_app.services.items.events import record_event
from queue_app.services.people import account_links
from workers.context import job_context
from workers.queues import JOB_TIMEOUTS

log = logging.getLogger(__name__)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
CLAIMABLE = ("queued", "failed")
SENDING_LIMIT = timedelta(seconds=JOB_TIMEOUTS["mail_out"] + 30)


class SendInProgress(Exception):
    """Another attempt claimed this mail moments ago and may be sending it: try again later."""


class DeliveryFailed(Exception):
    """The server did not take the message (refused it, or was never reached): safe to try again."""


class DeliveryUnknown(Exception):
    """The connection broke while the server was taking the message: it may have been accepted."""


def header_value(value):
    """Strip CR, LF and other control characters so no value can inject a header."""
    return _CONTROL.sub(" ", value or "").strip()


def sender_of(message, default):
    """The team's mailbox the message was written from, with the team's name; else MAIL_FROM."""
    if not message.from_address:
        return default
    return formataddr((message.work_item.team.name, message.from_address))


def build_email(message, from_address):
    email = EmailMessage()
    email["From"] = header_value(from_address)
    email["To"] = header_value(message.to_addresses)
    email["Subject"] = header_value(message.subject)
    email["Message-ID"] = header_value(message.message_id)
    email["Date"] = formatdate(localtime=False)
    email["Auto-Submitted"] = "auto-replied" if message.author_id is None else "no"
    if message.in_reply_to:
        email["In-Reply-To"] = header_value(message.in_reply_to)
    if message.references:
        email["References"] = header_value(message.references)
    email.set_content(message.body_text or "")
    return email


def _staff_email(cfg, to_address, subject, body):
    """Mail to a member of staff, from MAIL_FROM: a notification, a digest, an account link."""
    email = EmailMessage()
    email["From"] = header_value(cfg["MAIL_FROM"])
    email["To"] = header_value(to_address)
    email["Subject"] = header_value(subject)
    email["Date"] = formatdate(localtime=False)
    email["Auto-Submitted"] = "auto-generated"
    email.set_content(body)
    return email


def _deliver(email, cfg, file_name):
    """By SMTP when SMTP_HOST is set, else as `file_name` in the outbox folder; "smtp" or the file's path."""
    if cfg.get("SMTP_HOST"):
        _deliver_smtp(email, cfg)
        return "smtp"
    return str(_write_outbox_file(email, file_name, cfg))


class _DataGuard:
    """Tells a broken connection during DATA (the server may have the message) from every earlier failure."""

    def data(self, msg):
        try:
            return super().data(msg)
        except smtplib.SMTPResponseException:
            raise  # the server answered, and said no: it did not take the message
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryUnknown(f"connection lost during DATA: {exc.__class__.__name__}: {exc}") from exc


class _SMTP(_DataGuard, smtplib.SMTP):
    pass


class _SMTPSSL(_DataGuard, smtplib.SMTP_SSL):
    pass


def _deliver_smtp(email, cfg):
    host, port = cfg["SMTP_HOST"], cfg["SMTP_PORT"]
    try:
        if cfg["SMTP_TLS"] == "ssl":
            client = _SMTPSSL(host, port, timeout=30, context=ssl.create_default_context())
        else:
            client = _SMTP(host, port, timeout=30)
    except (OSError, smtplib.SMTPException) as exc:
        raise DeliveryFailed(f"{exc.__class__.__name__}: {exc}") from exc
    try:
        if cfg["SMTP_TLS"] == "starttls":
            client.starttls(context=ssl.create_default_context())
        if cfg.get("SMTP_USER"):
            client.login(cfg["SMTP_USER"], cfg["SMTP_PASSWORD"] or "")
        client.send_message(email)
    except (OSError, smtplib.SMTPException) as exc:
        raise DeliveryFailed(f"{exc.__class__.__name__}: {exc}") from exc
    finally:
        # Once the message is taken, a failing QUIT must not make it look unsent (and be sent again).
        try:
            client.quit()
        except (OSError, smtplib.SMTPException):
            client.close()


def _write_outbox_file(email, name, cfg):
    """Development: no SMTP server configured, so write the message where a person can read it."""
    outbox = Path(cfg.get("INSTANCE_DIR") or current_app.instance_path) / "outbox"
    try:
        outbox.mkdir(parents=True, exist_ok=True)
        path = outbox / name
        path.write_bytes(bytes(email))
    except OSError as exc:
        raise DeliveryFailed(f"{exc.__class__.__name__}: {exc}") from exc
    return path


def _claim(model, row_id, *conditions):
    """`queued`/`failed` -> `sending` in a commit of its own; True if this attempt may send the mail."""
    status = model.send_status.in_(CLAIMABLE)
    if model is Message:
        status = sa.or_(status, model.send_status.is_(None))  # outbound rows from before send_status
    claimed = db.session.execute(sa.update(model).where(model.id == row_id, status, *conditions)
                                 .values(send_status="sending", sent_at=utcnow())).rowcount
    db.session.commit()
    return claimed == 1


def _not_claimed(row, describe):
    """Someone else has this mail: it was sent, is being sent, or died sending it."""
    db.session.refresh(row)
    if row.send_status != "sending":
        return "skipped"  # sent, bounced or unconfirmed: never sent again
    if row.sent_at is not None and utcnow() - row.sent_at < SENDING_LIMIT:
        raise SendInProgress(f"{describe} is being sent by another attempt (since {row.sent_at.isoformat()})")
    model = type(row)
    marked = db.session.execute(sa.update(model).where(model.id == row.id, model.send_status == "sending",
                                                       model.sent_at == row.sent_at)
                                .values(send_status="unconfirmed")).rowcount
    if not marked:
        return "skipped"  # another re-run got here first (or the claimer finished after all)
    log.error("%s was claimed at %s by an attempt that never finished; it may or may not have gone out, "
              "so it is marked unconfirmed and not sent again", describe, row.sent_at)
    return "unconfirmed"


@job_context
def send_notification(notification_id):
    """An internal notification to a member of staff; sent at most once."""
    note = db.session.get(Notification, notification_id)
    if note is None:
        return "skipped"
    if not _claim(Notification, notification_id):
        return _not_claimed(note, f"notification {notification_id}")
    cfg = current_app.config
    email = _staff_email(cfg, note.to_address, note.subject,
                         f"{note.body}\n\n{cfg['BASE_URL'].rstrip('/')}/items/{note.work_item.ref}\n")
    try:
        _deliver(email, cfg, f"notification-{note.id}.eml")
    except DeliveryUnknown as exc:
        log.error("notification %s: %s; marked unconfirmed, not sent again", note.id, exc)
        note.send_status = "unconfirmed"
        return "unconfirmed"
    except DeliveryFailed:
        note.send_status = "failed"
        db.session.commit()
        raise  # RQ retries with backoff
    note.send_status = "sent"
    note.sent_at = utcnow()
    return "sent"


@job_context
def send_digest(user_id):
    """One email listing a person's notifications that waited for their daily digest; each row once."""
    from queue_app.services.people import notifications

    notes = notifications.claim_digest(db.session, user_id)
    db.session.commit()  # claimed in a commit of its own: another run finds nothing to send
    if not notes:
        return "skipped"
    cfg = current_app.config
    base = cfg["BASE_URL"].rstrip("/")
    lines = [f"- {note.subject}\n  {base}/items/{note.work_item.ref}" for note in notes]
    email = _staff_email(cfg, notes[0].to_address,
                         f"Your Backdesk digest: {len(notes)} notification{'s' if len(notes) != 1 else ''}",
                         "Since your last digest:\n\n" + "\n".join(lines) + f"\n\nAll of them: {base}/notifications\n")
    try:
        _deliver(email, cfg, f"digest-{user_id}-{notes[0].id}.eml")
        status = "sent"
    except DeliveryUnknown as exc:
        log.error("digest for user %s: %s; marked unconfirmed, not sent again", user_id, exc)
        status = "unconfirmed"
    except DeliveryFailed:
        status = "digest"  # back in the queue for the next digest
    db.session.execute(sa.update(Notification).where(Notification.id.in_([n.id for n in notes]))
                       .values(send_status=status, sent_at=utcnow() if status == "sent" else None))
    return status


@job_context
def send_account_link(link_id):
    """A password reset or invitation link; sent at most once, and not at all once the link is dead."""
    link = db.session.get(AccountLink, link_id)
    if link is None or not link.is_usable(utcnow()):
        return "skipped"  # replaced by a newer link, used or expired before it went out
    if not _claim(AccountLink, link_id):
        return _not_claimed(link, f"{link.purpose} link {link_id}")
    cfg = current_app.config
    email = _staff_email(cfg, *account_links.mail_for(link))
    try:
        _deliver(email, cfg, f"account-link-{link.id}.eml")
    except DeliveryUnknown as exc:
        log.error("%s link %s: %s; marked unconfirmed, not sent again", link.purpose, link.id, exc)
        link.send_status = "unconfirmed"
        return "unconfirmed"
    except DeliveryFailed:
        link.send_status = "failed"
        db.session.commit()
        raise  # RQ retries with backoff
    link.send_status = "sent"
    link.sent_at = utcnow()
    return "sent"


@job_context
def send_message(message_id):
    """An outbound Message (a reply, an acknowledgement); sent at most once."""
    message = db.session.get(Message, message_id)
    if message is None or message.kind != "outbound":
        return "skipped"
    if not _claim(Message, message_id, Message.kind == "outbound"):
        outcome = _not_claimed(message, f"message {message_id}")
        if outcome == "unconfirmed":
            record_event(db.session, message.work_item, "mail_unconfirmed", "worker",
                         {"message_id": message.id, "error": "the sending attempt never finished"})
        return outcome
    cfg = current_app.config
    email = build_email(message, sender_of(message, cfg["MAIL_FROM"]))
    try:
        where = _deliver(email, cfg, f"message-{message.id}.eml")
    except DeliveryUnknown as exc:
        message.send_status = "unconfirmed"
        record_event(db.session, message.work_item, "mail_unconfirmed", "worker",
                     {"message_id": message.id, "error": str(exc)})
        return "unconfirmed"
    except DeliveryFailed as exc:
        message.send_status = "failed"
        record_event(db.session, message.work_item, "mail_failed", "worker",
                     {"message_id": message.id, "error": str(exc)})
        db.session.commit()
        raise  # RQ retries with backoff; the retry claims `failed` again
    message.send_status = "sent"
    message.sent_at = utcnow()
    # Who it went to; never where the file landed on the server (the history is shown to people).
    record_event(db.session, message.work_item, "mail_sent", "worker",
                 {"message_id": message.id, "sent_to": message.to_addresses,
                  "via": "smtp" if where == "smtp" else "file"})
    return where
