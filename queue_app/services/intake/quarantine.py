"""What a person does with a quarantined email: retry it (after a fix, a new mailbox or rule),
release it into a mailbox as a new item whatever was wrong with it, or discard it. The row and
its raw bytes are always kept, and each action is recorded.
"""
import sqlalchemy as sa

from queue_app.models import Message
from queue_app.models.base import utcnow
from queue_app.services.errors import DomainError
from queue_app.services.intake import filing
from queue_app.services.intake.mail.parser import MailParseError, parse_email
from queue_app.services.intake.writers import OneAtATime
from queue_app.services.items import lifecycle
from queue_app.services.items.events import record_event


def retry(session, inbound, *, actor, now=None):
    """Process a quarantined message again (after a fix, a new mailbox or a new rule)."""
    now = now or utcnow()
    if inbound.status != "quarantined":
        raise DomainError("only quarantined messages can be retried")
    previous = inbound.reason
    inbound.status = "received"
    outcome = filing.process(session, inbound, now=now)
    if outcome.item is not None:
        record_event(session, outcome.item, "released_from_quarantine", actor,
                     {"inbound_email_id": inbound.id, "was": previous, "how": "retry"}, now=now)
    return outcome


def release(session, inbound, *, actor, mailbox, now=None):
    """File a quarantined message as a new item in `mailbox` whatever was wrong with it."""
    now = now or utcnow()
    if inbound.status != "quarantined":
        raise DomainError("only quarantined messages can be released")
    previous = inbound.reason
    try:
        parsed = parse_email(inbound.raw)
        subject, sender, body = parsed.subject, parsed.from_address, parsed.body_text
    except MailParseError:
        parsed = None
        subject, sender = "(unreadable email released from quarantine)", None
        # NUL bytes removed: PostgreSQL text cannot hold them, and garbage mail often has some.
        body = inbound.raw.decode("utf-8", "replace").replace("\x00", "")[:lifecycle.MAX_BODY]
    item = lifecycle.create_item(
        session, actor=actor, source="email", subject=(subject or "(no subject)")[:lifecycle.MAX_SUBJECT],
        description=(body or "")[:lifecycle.MAX_BODY], requester_email=sender, recipient=mailbox.address,
        require_fields=False, route_defaults=mailbox, now=now,
    )
    if parsed is not None and not (parsed.message_id and session.scalar(
            sa.select(Message.id).where(Message.message_id == parsed.message_id))):
        filing.store_message(session, OneAtATime(session), inbound, parsed, item, now)
    record_event(session, item, "released_from_quarantine", actor,
                 {"inbound_email_id": inbound.id, "was": previous, "how": "release"}, now=now)
    session.flush()
    return filing.finish(inbound, "created", now, item=item)


def discard(session, inbound, *, actor, now=None):
    """Give up on a quarantined message; the row and its raw bytes stay, with who discarded it."""
    now = now or utcnow()
    if inbound.status != "quarantined":
        raise DomainError("only quarantined messages can be discarded")
    inbound.detail = f"{inbound.detail or ''} (discarded by {getattr(actor, 'email', actor)} at {now:%Y-%m-%d %H:%M} UTC)"
    inbound.status = "discarded"
    inbound.processed_at = now
    return filing.Outcome("discarded", inbound, None, inbound.reason)
