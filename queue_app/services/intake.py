"""Email intake: every message that reaches us ends as a new item, a follow-up, a counted
duplicate or a quarantined message with its reason. Nothing is dropped, nothing crashes.

Invariants:
- `receive` stores the raw bytes as an InboundEmail row (status `received`) before
  anything else; the SMTP server commits it before answering 250, the IMAP poller before
  marking the message seen. Processing can then happen now, in a job, or in the sweep.
- `process` is idempotent: an InboundEmail that is no longer `received` is left alone.
- The same Message-ID twice is a duplicate: counted, linked to the first, its raw bytes
  not kept twice. Without a Message-ID, the SHA-256 of the raw bytes plays that part.
- Threading: In-Reply-To/References against every Message-ID seen or sent, else a
  `[BO-000123]` tag in the subject, else a new item. A reply to a resolved item reopens
  it; a closed item is not reopened (a new item refers to it). A sender who is neither
  the requester nor a participant is flagged for review. No email changes assignment,
  approval or any other status by itself.
- Acknowledgements go to new items' requesters only when the mail is not automatic,
  bulk, a bounce, from a mailer-daemon/postmaster or ourselves, and under the per-sender
  hourly cap.
"""
import hashlib
from dataclasses import dataclass
from datetime import timedelta
from email.utils import parseaddr
from typing import Optional

import sqlalchemy as sa
from flask import current_app, has_app_context, render_template
from sqlalchemy.orm import defer

from queue_app.models import Attachment, InboundEmail, Message, WorkItem
from queue_app.models.base import utcnow
from queue_app.services import mailboxes, work_items
from queue_app.services.audit import record_event
from queue_app.services.blobs import store_blob
from queue_app.services.dispatch import enqueue_after_commit
from queue_app.services.errors import DomainError
from queue_app.services.mail_parsing import MailParseError, extract_ref_tag, normalise_message_id, parse_email

QUARANTINE_REASONS = {
    "unparseable": "The message could not be parsed",
    "no_sender": "The message has no sender",
    "invalid_sender": "The sender address is not valid",
    "too_deep": "MIME parts are nested too deeply",
    "too_many_parts": "The message has too many MIME parts",
    "blocked_attachment": "An attachment has a blocked type",
    "oversize": "The message is larger than the limit",
    "mail_loop": "The message is our own outgoing mail",
    "unmatched_bounce": "A bounce for a message we did not send",
    "no_mailbox": "The message is not addressed to any of our mailboxes",
    "rejected": "The message could not be filed",
}
NOISY_SENDERS = ("mailer-daemon@", "postmaster@")


@dataclass
class Outcome:
    status: str  # created | followup | duplicate | quarantined | discarded
    inbound: InboundEmail
    item: Optional[WorkItem] = None
    reason: Optional[str] = None


def _setting(key, default):
    return current_app.config.get(key, default) if has_app_context() else default


def _peek_message_id(raw):
    """The Message-ID header, read cheaply without parsing the whole message."""
    head = raw[:65536].split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    lines = head.replace(b"\r\n", b"\n").split(b"\n")
    for index, line in enumerate(lines):
        if line[:11].lower() == b"message-id:":
            value = line[11:]
            for cont in lines[index + 1:]:
                if cont[:1] in (b" ", b"\t"):
                    value += cont
                else:
                    break
            return normalise_message_id(value.decode("ascii", "replace"))
    return None


def find_known(session, message_id, digest):
    """The first stored email with this Message-ID (or, without one, these exact bytes)."""
    if message_id:
        condition = InboundEmail.message_id == message_id
    else:
        condition = sa.and_(InboundEmail.message_id.is_(None), InboundEmail.sha256 == digest)
    # The raw bytes are not needed to know the message, so not read (they are loaded if asked for).
    return session.scalar(sa.select(InboundEmail).where(condition, InboundEmail.duplicate_of_id.is_(None))
                          .options(defer(InboundEmail.raw)).order_by(InboundEmail.id).limit(1))


def receive(session, raw, *, source, envelope_from=None, envelope_to=(), mailbox=None, imap_uid=None, now=None):
    """Store the raw message (the caller commits before acknowledging it). Returns the InboundEmail."""
    now = now or utcnow()
    inbound = InboundEmail(
        source=source, mailbox_id=mailbox.id if mailbox else None, envelope_from=envelope_from,
        envelope_to=[a.lower() for a in envelope_to], message_id=_peek_message_id(raw),
        sha256=hashlib.sha256(raw).hexdigest(), size=len(raw), raw=raw, imap_uid=imap_uid, received_at=now,
    )
    session.add(inbound)
    session.flush()
    return inbound


def _finish(inbound, status, now, item=None, reason=None, detail=None):
    inbound.status = status
    inbound.reason = reason
    inbound.detail = detail
    inbound.processed_at = now
    if item is not None:
        inbound.work_item_id = item.id
    return Outcome(status, inbound, item, reason)


def quarantine(inbound, reason, now, detail=None):
    return _finish(inbound, "quarantined", now, reason=reason, detail=detail or QUARANTINE_REASONS.get(reason))


def process(session, inbound, *, fallback_mailbox=None, now=None):
    """Turn a stored email into an item, a follow-up, a duplicate or a quarantined message."""
    now = now or utcnow()
    if inbound.status != "received":
        return Outcome(inbound.status, inbound, inbound.work_item, inbound.reason)
    inbound.attempts += 1
    first = find_known(session, inbound.message_id, inbound.sha256)
    if first is not None and first.id != inbound.id:
        inbound.duplicate_of_id = first.id
        inbound.raw = None  # the bytes are kept once, on the first copy
        return _finish(inbound, "duplicate", now, item=first.work_item)
    if inbound.size > _setting("INTAKE_MAX_MESSAGE_BYTES", 25 * 1024 * 1024):
        return quarantine(inbound, "oversize", now, f"{inbound.size} bytes is over the limit")
    try:
        parsed = parse_email(inbound.raw)
    except MailParseError as exc:
        return quarantine(inbound, exc.reason, now, exc.detail or None)
    if parsed.message_id and session.scalar(sa.select(Message.id).where(Message.message_id == parsed.message_id)):
        # A Message-ID we sent ourselves (or stored from another source): nothing new.
        sent = session.scalar(sa.select(Message).where(Message.message_id == parsed.message_id))
        if sent.kind == "outbound":
            return quarantine(inbound, "mail_loop", now)
        inbound.raw = None
        return _finish(inbound, "duplicate", now, item=sent.work_item)
    if _is_our_own(parsed):
        return quarantine(inbound, "mail_loop", now)
    if parsed.is_bounce:
        return _file_bounce(session, inbound, parsed, now)

    recipients = list(inbound.envelope_to or []) + parsed.to + parsed.cc
    mailbox = inbound.mailbox or mailboxes.mailbox_for(session, recipients) or fallback_mailbox
    if mailbox is not None and inbound.mailbox_id is None:
        inbound.mailbox_id = mailbox.id
    item = _thread(session, parsed)
    try:
        if item is not None and item.status != "closed":
            return _add_follow_up(session, inbound, parsed, item, now)
        if mailbox is None:
            return quarantine(inbound, "no_mailbox", now,
                              "Addressed to " + (", ".join(dict.fromkeys(recipients)) or "nobody")
                              + "; none is one of our mailboxes")
        return _create_item(session, inbound, parsed, mailbox, now, closed=item)
    except DomainError as exc:
        return quarantine(inbound, "rejected", now, exc.message)


def _is_our_own(parsed):
    domain = _setting("MAIL_DOMAIN", "backdesk.example.com").lower()
    ours = parseaddr(_setting("MAIL_FROM", "") or "")[1].lower()  # MAIL_FROM may carry a display name
    return bool((ours and parsed.from_address == ours)
                or (parsed.message_id and parsed.message_id.lower().endswith(f"@{domain}>")))


def _thread(session, parsed):
    keys = [k for k in parsed.in_reply_to + parsed.references if k]
    if keys:
        message = session.scalar(sa.select(Message).where(Message.message_id.in_(keys))
                                 .order_by(Message.id.desc()).limit(1))
        if message is not None:
            return message.work_item
    ref = extract_ref_tag(parsed.subject)
    if ref:
        return session.scalar(sa.select(WorkItem).where(WorkItem.ref == ref))
    return None


def participants(session, item):
    people = {(item.requester_email or "").lower()}
    rows = session.execute(sa.select(Message.from_address, Message.to_addresses, Message.cc_addresses)
                           .where(Message.work_item_id == item.id, Message.flagged_for_review.is_(False)))
    for from_address, to_addresses, cc_addresses in rows:
        for value in (from_address, to_addresses, cc_addresses):
            people.update(a.strip().lower() for a in (value or "").split(",") if a.strip())
    people.discard("")
    return people


def _store_message(session, inbound, parsed, item, now, flagged=False):
    message = Message(
        work_item_id=item.id, kind="inbound", message_id=parsed.message_id,
        in_reply_to=parsed.in_reply_to[-1] if parsed.in_reply_to else None,
        references=" ".join(parsed.references) or None, from_address=parsed.from_address,
        to_addresses=", ".join(parsed.to), cc_addresses=", ".join(parsed.cc), subject=parsed.subject,
        body_text=parsed.body_text, body_html=parsed.body_html, inbound_email_id=inbound.id,
        flagged_for_review=flagged, created_at=now,
    )
    session.add(message)
    session.flush()
    for part in parsed.attachments:
        digest = store_blob(session, part.data)
        session.add(Attachment(message_id=message.id, filename=part.filename, content_type=part.content_type,
                               declared_content_type=part.declared_content_type, size=len(part.data), sha256=digest,
                               content_id=part.content_id[:255] if part.content_id else None,
                               is_inline=part.is_inline, created_at=now))
    if parsed.attachments:
        session.flush()
        if any(a.is_inline for a in parsed.attachments):
            message.body_html = _link_inline_images(message, item)
    return message


def _link_inline_images(message, item):
    """Point `cid:` images at our own attachment URLs (the parser left them as cid: for us)."""
    html = message.body_html or ""
    for attachment in message.attachments:
        if attachment.content_id:
            html = html.replace(f'src="cid:{attachment.content_id}"',
                                f'src="/items/{item.ref}/attachments/{attachment.id}/inline"')
    return html


def _add_follow_up(session, inbound, parsed, item, now):
    flagged = parsed.from_address not in participants(session, item)
    message = _store_message(session, inbound, parsed, item, now, flagged=flagged)
    item.last_activity_at = now
    record_event(session, item, "email_received", parsed.from_address,
                 {"message_id": message.id, "flagged_for_review": flagged, "inbound_email_id": inbound.id}, now=now)
    if flagged:
        record_event(session, item, "flagged_for_review", "intake",
                     {"message_id": message.id, "reason": f"{parsed.from_address} is not a participant"}, now=now)
    if item.status == "resolved" and not flagged:  # a stranger's mail changes no status
        work_items._apply_status(session, item, "open", actor="intake", now=now,
                                 comment=f"reopened by an email from {parsed.from_address}")
    if parsed.attachments:
        work_items.enqueue_checks(session, item)
    session.flush()
    return _finish(inbound, "followup", now, item=item)


def _create_item(session, inbound, parsed, mailbox, now, closed=None):
    description = parsed.body_text
    if closed is not None:
        description = f"Follow-up to {closed.ref}, which is closed.\n\n{description}"
    # Cut to the item's limits: a long subject or body is no reason to quarantine (the Message keeps all).
    item = work_items.create_item(
        session, actor=None, source="email", subject=(parsed.subject or "(no subject)")[:work_items.MAX_SUBJECT],
        description=description[:work_items.MAX_BODY],
        requester_email=parsed.from_address, requester_name=parsed.from_name or None, recipient=mailbox.address,
        sender=parsed.from_address, require_fields=False, route_defaults=mailbox, now=now,
    )
    _store_message(session, inbound, parsed, item, now)
    record_event(session, item, "email_received", parsed.from_address,
                 {"inbound_email_id": inbound.id, "mailbox": mailbox.address}, now=now)
    if closed is not None:
        record_event(session, item, "related", "intake", {"closed_item": closed.ref}, now=now)
    reason = _no_ack_reason(session, parsed, now)
    if reason is None:
        _acknowledge(session, item, parsed, now)
    else:
        record_event(session, item, "ack_suppressed", "intake", {"reason": reason}, now=now)
    session.flush()
    return _finish(inbound, "created", now, item=item)


def _no_ack_reason(session, parsed, now):
    if parsed.auto_submitted:
        return "auto-submitted"
    if parsed.bulk:
        return "bulk or list mail"
    if parsed.from_address.startswith(NOISY_SENDERS):
        return "mailer-daemon or postmaster"
    cap = _setting("INTAKE_ACKS_PER_SENDER_HOUR", 5)
    sent = session.scalar(sa.select(sa.func.count()).select_from(Message).where(
        Message.is_automatic.is_(True), Message.to_addresses == parsed.from_address,
        Message.created_at > now - timedelta(hours=1)))
    if sent >= cap:
        return f"more than {cap} acknowledgements to this sender in an hour"
    return None


def _acknowledge(session, item, parsed, now):
    body = render_template("email/acknowledgement.txt", item=item, parsed=parsed)
    message = Message(
        work_item_id=item.id, kind="outbound", message_id=work_items.new_message_id(),
        in_reply_to=parsed.message_id, references=" ".join((parsed.references + [parsed.message_id])[-20:])
        if parsed.message_id else None, to_addresses=parsed.from_address,
        subject=f"[{item.ref}] {parsed.subject or 'Your request'}"[:998], body_text=body, is_automatic=True,
        send_status="queued", created_at=now,
    )
    session.add(message)
    session.flush()
    record_event(session, item, "acknowledged", "intake", {"message_id": message.id, "to": parsed.from_address},
                 now=now)
    enqueue_after_commit(session, "workers.mail_out.send_message", message.id)


def _file_bounce(session, inbound, parsed, now):
    keys = [k for k in parsed.bounced_message_ids + parsed.in_reply_to + parsed.references if k]
    original = None
    if keys:
        original = session.scalar(sa.select(Message).where(Message.message_id.in_(keys), Message.kind == "outbound")
                                  .order_by(Message.id.desc()).limit(1))
    if original is None:
        return quarantine(inbound, "unmatched_bounce", now)
    item = original.work_item
    original.send_status = "bounced"
    record_event(session, item, "bounce", parsed.from_address,
                 {"message_id": original.id, "to": original.to_addresses, "inbound_email_id": inbound.id,
                  "summary": parsed.body_text[:500]}, now=now)
    session.flush()
    return _finish(inbound, "followup", now, item=item)


def pending_ids(session, older_than, limit=200):
    """Stored emails still waiting to be processed (for the intake sweep)."""
    return session.scalars(sa.select(InboundEmail.id).where(InboundEmail.status == "received",
                                                            InboundEmail.received_at <= older_than)
                           .order_by(InboundEmail.id).limit(limit)).all()


# --- quarantine actions ----------------------------------------------------------------

def retry(session, inbound, *, actor, now=None):
    """Process a quarantined message again (after a fix, a new mailbox or a new rule)."""
    now = now or utcnow()
    if inbound.status != "quarantined":
        raise DomainError("only quarantined messages can be retried")
    previous = inbound.reason
    inbound.status = "received"
    outcome = process(session, inbound, now=now)
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
        body = inbound.raw.decode("utf-8", "replace").replace("\x00", "")[:work_items.MAX_BODY]
    item = work_items.create_item(
        session, actor=actor, source="email", subject=(subject or "(no subject)")[:work_items.MAX_SUBJECT],
        description=(body or "")[:work_items.MAX_BODY], requester_email=sender, recipient=mailbox.address,
        require_fields=False, route_defaults=mailbox, now=now,
    )
    if parsed is not None and not (parsed.message_id and session.scalar(
            sa.select(Message.id).where(Message.message_id == parsed.message_id))):
        _store_message(session, inbound, parsed, item, now)
    record_event(session, item, "released_from_quarantine", actor,
                 {"inbound_email_id": inbound.id, "was": previous, "how": "release"}, now=now)
    session.flush()
    return _finish(inbound, "created", now, item=item)


def discard(session, inbound, *, actor, now=None):
    """Give up on a quarantined message; the row and its raw bytes stay, with who discarded it."""
    now = now or utcnow()
    if inbound.status != "quarantined":
        raise DomainError("only quarantined messages can be discarded")
    inbound.detail = f"{inbound.detail or ''} (discarded by {getattr(actor, 'email', actor)} at {now:%Y-%m-%d %H:%M} UTC)"
    inbound.status = "discarded"
    inbound.processed_at = now
    return Outcome("discarded", inbound, None, inbound.reason)

