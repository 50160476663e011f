"""Outbound mail: send one stored Message. Idempotent: a message already sent is not sent again."""
import logging
import re
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path

from flask import current_app

from queue_app.extensions import db
from queue_app.models import Message, Notification
from queue_app.models.base import utcnow
from queue_app.services.items.events import record_event
from workers.context import job_context

log = logging.getLogger(__name__)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def header_value(value):
    """Strip CR, LF and other control characters so no value can inject a header."""
    return _CONTROL.sub(" ", value or "").strip()


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


def _deliver_smtp(email, cfg):
    host, port = cfg["SMTP_HOST"], cfg["SMTP_PORT"]
    if cfg["SMTP_TLS"] == "ssl":
        client = smtplib.SMTP_SSL(host, port, timeout=30, context=ssl.create_default_context())
    else:
        client = smtplib.SMTP(host, port, timeout=30)
    with client:
        if cfg["SMTP_TLS"] == "starttls":
            client.starttls(context=ssl.create_default_context())
        if cfg.get("SMTP_USER"):
            client.login(cfg["SMTP_USER"], cfg["SMTP_PASSWORD"] or "")
        client.send_message(email)


def _write_outbox_file(email, name, cfg):
    """Development: no SMTP server configured, so write the message where a person can read it."""
    outbox = Path(cfg.get("INSTANCE_DIR") or current_app.instance_path) / "outbox"
    outbox.mkdir(parents=True, exist_ok=True)
    path = outbox / name
    path.write_bytes(bytes(email))
    return path


@job_context
def send_notification(notification_id):
    """An internal notification to a member of staff; sent once."""
    note = db.session.get(Notification, notification_id)
    if note is None or note.send_status == "sent":
        return "skipped"
    cfg = current_app.config
    email = EmailMessage()
    email["From"] = header_value(cfg["MAIL_FROM"])
    email["To"] = header_value(note.to_address)
    email["Subject"] = header_value(note.subject)
    email["Date"] = formatdate(localtime=False)
    email["Auto-Submitted"] = "auto-generated"
    email.set_content(f"{note.body}\n\n{cfg['BASE_URL'].rstrip('/')}/items/{note.work_item.ref}\n")
    if cfg.get("SMTP_HOST"):
        _deliver_smtp(email, cfg)
    else:
        _write_outbox_file(email, f"notification-{note.id}.eml", cfg)
    note.send_status = "sent"
    note.sent_at = utcnow()
    return "sent"


@job_context
def send_message(message_id):
    message = db.session.get(Message, message_id)
    if message is None or message.kind != "outbound" or message.send_status == "sent":
        return "skipped"
    cfg = current_app.config
    email = build_email(message, cfg["MAIL_FROM"])
    try:
        if cfg.get("SMTP_HOST"):
            _deliver_smtp(email, cfg)
            where = "smtp"
        else:
            where = str(_write_outbox_file(email, f"message-{message.id}.eml", cfg))
    except (OSError, smtplib.SMTPException) as exc:
        message.send_status = "failed"
        record_event(db.session, message.work_item, "mail_failed", "worker",
                     {"message_id": message.id, "error": f"{exc.__class__.__name__}: {exc}"})
        db.session.commit()
        raise  # RQ retries with backoff
    message.send_status = "sent"
    message.sent_at = utcnow()
    record_event(db.session, message.work_item, "mail_sent", "worker", {"message_id": message.id, "via": where})
    return where
