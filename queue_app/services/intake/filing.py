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
  `[BO-000123]` tag in the subject, else an email already filed that answers this one (its
  reply arrived first), else a new item. Stored mail is filed in arrival order
  (services.intake.filer), so a reply finds an earlier parent. A reply to a resolved item reopens
  it; a closed item is not reopened (a new item refers to it). An automatic reply (out of
  office, autoresponder) is filed on its thread, closed or not, and changes nothing there.
  A sender who is neither the requester nor a participant is flagged for review. No email
  changes assignment, approval or any other status by itself, except a document that answers
  a request for a new one (services.items.verification): that item is back in the queue.
- Mail to MAIL_FROM (our outgoing mail's sender, which customers answer) with no mailbox
  among its recipients is filed by threading alone: on its item, or for a closed item as a
  new item in that item's team; if it answers nothing it is quarantined (`no_mailbox`).
- Acknowledgements go to new items' requesters only when the mail is not automatic (nor
  an automatic reply), bulk, a bounce, from a mailer-daemon/postmaster or ourselves, and
  under the per-sender hourly cap. The same rule and email acknowledge a request filed through
  the front-office form (`acknowledge_request`, for services.intake.front_office).

The rules are written once; how their results are written (one message at a time, or a bulk
import's batch) is the writer's business (services.intake.writers), and so are the reads of
what we already have (services.intake.lookups).
"""
import hashlib
import logging
from dataclasses import dataclass, field
from typing import Optional

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import defer

from queue_app.db import batched_rows, filing_lock
from queue_app.db.blobs import store_blob
from queue_app.db.outbox import enqueue_after_commit
from queue_app.models import InboundEmail, Message, WorkItem
from queue_app.models.base import utcnow
from queue_app.services.errors import DomainError
from queue_app.services.intake import mail_fields, mailboxes
from queue_app.services.intake.mail.headers import (
    MAX_HEADER_LINE,
    extract_ref_tag,
    normalise_message_id,
)
from queue_app.services.intake.mail.parser import MailParseError, parse_email
from queue_app.services.intake.writers import OneAtATime
from queue_app.services.items import lifecycle, state, verification, watchers
from queue_app.services.items.events import record_event
from queue_app.services.people import notifications

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
log = logging.getLogger(__name__)


@dataclass
class Outcome:
    status: str  # created | followup | duplicate | quarantined | discarded
    inbound: InboundEmail
    item: Optional[WorkItem] = None
    reason: Optional[str] = None


def peek_message_id(raw):
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


def copy_key(message_id, digest):
    """What makes two copies the same email (see find_known): the Message-ID, else the bytes."""
    return ("id", message_id) if message_id else ("sha256", digest)


def first_copies(session, keys):
    """(id, work item id) of the first stored copy of each of these emails (`copy_key`s) we have."""
    ids = sorted({value for kind, value in keys if kind == "id"})
    digests = sorted({value for kind, value in keys if kind == "sha256"})
    conditions = []
    if ids:
        conditions.append(InboundEmail.message_id.in_(ids))
    if digests:
        conditions.append(sa.and_(InboundEmail.message_id.is_(None), InboundEmail.sha256.in_(digests)))
    if not conditions:
        return {}
    first = {}
    for row_id, message_id, digest, item_id in session.execute(
            sa.select(InboundEmail.id, InboundEmail.message_id, InboundEmail.sha256, InboundEmail.work_item_id)
            .where(sa.or_(*conditions), InboundEmail.duplicate_of_id.is_(None)).order_by(InboundEmail.id)):
        first.setdefault(copy_key(message_id, digest), (row_id, item_id))
    return first


def received_row(raw, *, source, envelope_from=None, envelope_to=(), mailbox_id=None, imap_uid=None, now=None,
                 message_id=None, sha256=None):
    """The column values of a stored, not yet filed email (an InboundEmail in status `received`)."""
    return dict(source=source, mailbox_id=mailbox_id, envelope_from=envelope_from,
                envelope_to=[a.lower() for a in envelope_to], message_id=message_id or peek_message_id(raw),
                sha256=sha256 or hashlib.sha256(raw).hexdigest(), size=len(raw), raw=raw, imap_uid=imap_uid,
                status="received", attempts=0, received_at=now or utcnow())


def receive(session, raw, *, source, envelope_from=None, envelope_to=(), mailbox=None, imap_uid=None, now=None,
            message_id=None, sha256=None):
    """Store the raw message (the caller commits before acknowledging it). Returns the InboundEmail.

    `message_id` and `sha256` may be passed when the caller has already read them from `raw`.
    """
    inbound = InboundEmail(**received_row(raw, source=source, envelope_from=envelope_from, envelope_to=envelope_to,
                                          mailbox_id=mailbox.id if mailbox else None, imap_uid=imap_uid, now=now,
                                          message_id=message_id, sha256=sha256))
    session.add(inbound)
    session.flush()
    return inbound


def receive_many(session, rows):
    """Store several emails at once (`received_row` values), in one INSERT; their ids, in order."""
    return batched_rows.insert_returning_ids(session, InboundEmail.__table__, rows) if rows else []


def finish(inbound, status, now, item=None, reason=None, detail=None):
    inbound.status = status
    inbound.reason = reason
    inbound.detail = detail
    inbound.processed_at = now
    if item is not None:
        inbound.work_item_id = item.id
    return Outcome(status, inbound, item, reason)


def quarantine(inbound, reason, now, detail=None):
    return finish(inbound, "quarantined", now, reason=reason, detail=detail or QUARANTINE_REASONS.get(reason))


def process_stored(session, inbound_id, **options):
    """Process a stored email by id, once even when two processes try it at the same time (the job
    and the sweep, inline SMTP processing and its job, a job handed over again). Returns the Outcome,
    or None if the row is gone.

    The first write is a conditional UPDATE of the row while it is still `received`: it holds the
    row (PostgreSQL) or the database (SQLite) until the caller's commit, and a second process's
    UPDATE, once it gets through, finds the email processed and changes nothing.
    """
    filing_lock.hold(session)
    taken = session.execute(sa.update(InboundEmail)
                            .where(InboundEmail.id == inbound_id, InboundEmail.status == "received")
                            .values(attempts=InboundEmail.attempts)
                            .execution_options(synchronize_session=False)).rowcount == 1
    inbound = session.get(InboundEmail, inbound_id, populate_existing=True)
    if inbound is None:
        return None
    if not taken:
        return Outcome(inbound.status, inbound, inbound.work_item, inbound.reason)
    return process(session, inbound, **options)


def process(session, inbound, *, fallback_mailbox=None, now=None, known_new=False, parsed=None, writer=None):
    """Turn a stored email into an item, a follow-up, a duplicate or a quarantined message.

    `writer`: how the results are written (services.intake.writers); one message at a time by default.

    `known_new`: the caller has just checked that no earlier copy of this email is stored
    (the bulk import checks a whole batch in one query), so the check is not made again.
    `parsed`: what parse_email returned (or the MailParseError it raised) for `inbound.raw`,
    when the caller has parsed it already (the bulk import parses in another process).
    """
    now = now or utcnow()
    writer = writer or OneAtATime(session)
    filing_lock.hold(session)  # every path that files takes it (db.filing_lock): arrival order
    if inbound.status != "received":
        return Outcome(inbound.status, inbound, inbound.work_item, inbound.reason)
    inbound.attempts += 1
    if not known_new:
        first = find_known(session, inbound.message_id, inbound.sha256)
        if first is not None and first.id != inbound.id:
            inbound.duplicate_of_id = first.id
            inbound.raw = None  # the bytes are kept once, on the first copy
            return finish(inbound, "duplicate", now, item=first.work_item)
    if inbound.size > writer.intake.max_message_bytes:
        return quarantine(inbound, "oversize", now, f"{inbound.size} bytes is over the limit")
    try:
        if isinstance(parsed, MailParseError):
            raise parsed
        if parsed is None:
            parsed = parse_email(inbound.raw)
    except MailParseError as exc:
        return quarantine(inbound, exc.reason, now, exc.detail or None)
    lookups = writer.lookups
    seen = lookups.seen(parsed.message_id) if parsed.message_id else None
    if seen is not None:
        # A Message-ID we sent ourselves (or stored from another source): nothing new.
        kind, item = seen
        if kind == "outbound":
            return quarantine(inbound, "mail_loop", now)
        inbound.raw = None
        return finish(inbound, "duplicate", now, item=item)
    if _is_our_own(parsed, writer.mail):
        return quarantine(inbound, "mail_loop", now)
    if parsed.is_bounce:
        return _file_bounce(session, inbound, parsed, now)

    recipients = list(inbound.envelope_to or []) + parsed.to + parsed.cc
    mailbox = inbound.mailbox or mailboxes.mailbox_for(session, recipients) or fallback_mailbox
    if mailbox is not None and inbound.mailbox_id is None:
        inbound.mailbox_id = mailbox.id
    item = _thread(parsed, lookups)
    try:
        if item is not None and (item.status != "closed" or _is_automatic(parsed)):
            # An automatic reply (out of office) to a closed item is filed there: it is no new work.
            return _add_follow_up(session, writer, inbound, parsed, item, now)
        ours = writer.mail.sender_address
        if mailbox is None and item is not None and _to_our_sender(recipients, ours):
            # A reply to our own mail (its From is MAIL_FROM, no mailbox) about a closed item:
            # a new item that refers to it, in the closed item's team, as a mailbox would file it.
            return _create_item(session, writer, inbound, parsed, _ReplyRoute(item, ours), now, closed=item)
        if mailbox is None:
            if _to_our_sender(recipients, ours):
                return quarantine(inbound, "no_mailbox", now,
                                  f"Addressed to {ours}, the sender of our outgoing mail, but it answers "
                                  "none of our messages (no known In-Reply-To, References or [BO-…] tag)")
            return quarantine(inbound, "no_mailbox", now,
                              "Addressed to " + (", ".join(dict.fromkeys(recipients)) or "nobody")
                              + "; none is one of our mailboxes")
        return _create_item(session, writer, inbound, parsed, mailbox, now, closed=item)
    except DomainError as exc:
        return quarantine(inbound, "rejected", now, exc.message)


def _to_our_sender(recipients, ours):
    """Is MAIL_FROM's address (`ours`) among the recipients?"""
    return bool(ours) and any((a or "").strip().lower() == ours for a in recipients)


@dataclass
class _ReplyRoute:
    """Routing defaults for a reply sent to MAIL_FROM (no mailbox): those of the item it answers."""

    item: WorkItem
    address: str  # MAIL_FROM's address

    @property
    def type(self):
        return self.item.type

    @property
    def team(self):
        return self.item.team

    @property
    def priority(self):
        return None


def _is_our_own(parsed, mail):
    domain = mail.domain.lower()
    ours = mail.sender_address
    return bool((ours and parsed.from_address == ours)
                or (parsed.message_id and parsed.message_id.lower().endswith(f"@{domain}>")))


def _thread(parsed, lookups):
    keys = [k for k in parsed.in_reply_to + parsed.references if k]
    item = lookups.latest_item(keys) if keys else None
    if item is not None:
        return item
    ref = extract_ref_tag(parsed.subject)
    item = lookups.item_by_ref(ref) if ref else None
    if item is None and parsed.message_id:
        # A parent that arrived after its reply: the thread is the reply's item.
        item = lookups.answered_by(parsed.message_id)
    return item


def store_message(session, writer, inbound, parsed, item, now, flagged=False):
    values = dict(
        work_item_id=item.id, kind="inbound", message_id=parsed.message_id,
        in_reply_to=parsed.in_reply_to[-1] if parsed.in_reply_to else None,
        references=" ".join(parsed.references) or None, from_address=parsed.from_address,
        to_addresses=", ".join(parsed.to), cc_addresses=", ".join(parsed.cc), subject=parsed.subject,
        body_text=parsed.body_text, body_html=parsed.body_html, inbound_email_id=inbound.id,
        flagged_for_review=flagged, created_at=now,
    )
    attachments = [dict(filename=part.filename, content_type=part.content_type,
                        declared_content_type=part.declared_content_type, size=len(part.data),
                        sha256=store_blob(session, part.data),
                        content_id=part.content_id[:255] if part.content_id else None,
                        is_inline=part.is_inline, created_at=now) for part in parsed.attachments]
    return writer.add_message(values, attachments, item)


def _add_follow_up(session, writer, inbound, parsed, item, now):
    flagged = parsed.from_address not in writer.lookups.participants(item)
    message = store_message(session, writer, inbound, parsed, item, now, flagged=flagged)
    item.last_activity_at = now
    record_event(session, item, "email_received", parsed.from_address,
                 {"message_id": message.id, "flagged_for_review": flagged, "inbound_email_id": inbound.id}, now=now)
    if flagged:
        record_event(session, item, "flagged_for_review", "intake",
                     {"message_id": message.id, "reason": f"{parsed.from_address} is not a participant"}, now=now)
    if item.assignee_id is not None and not flagged and not _is_automatic(parsed):
        notifications.notify(session, item, [item.assignee], f"[{item.ref}] {parsed.from_address} replied",
                             (parsed.body_text or "")[:500], now, kind="reply")
    # A stranger's mail changes no status, nor does an automatic one (an out-of-office reply).
    if item.status == "resolved" and not flagged and not _is_automatic(parsed):
        state.change_status(session, item, "open", actor="intake", now=now, check_access=False,
                            comment=f"reopened by an email from {parsed.from_address}")
    if not flagged and not _is_automatic(parsed):
        watchers.notify_watchers(session, item, "reply", parsed.from_address, now)
    if parsed.attachments:
        lifecycle.enqueue_checks(session, item)
        documents = [part.filename for part in parsed.attachments if not part.is_inline]
        if documents and not flagged and not _is_automatic(parsed):
            verification.on_new_documents(session, item, documents, actor=parsed.from_address, now=now)
    writer.flush()
    return finish(inbound, "followup", now, item=item)


def _is_automatic(parsed):
    return parsed.auto_reply or parsed.auto_submitted


def _create_item(session, writer, inbound, parsed, mailbox, now, closed=None):
    description = parsed.body_text
    if closed is not None:
        description = f"Follow-up to {closed.ref}, which is closed.\n\n{description}"
    # Cut to the item's limits: a long subject or body is no reason to quarantine (the Message keeps all).
    item = writer.add_item(lifecycle.prepare_item(
        session, actor=None, source="email", subject=(parsed.subject or "(no subject)")[:lifecycle.MAX_SUBJECT],
        description=description[:lifecycle.MAX_BODY],
        requester_email=parsed.from_address, requester_name=parsed.from_name or None, recipient=mailbox.address,
        sender=parsed.from_address, require_fields=False, route_defaults=mailbox, now=now,
        email_fields=lambda work_type, team: mail_fields.fields_from_mail(
            session, work_type, team.id, parsed.subject, parsed.body_text),
    ))
    store_message(session, writer, inbound, parsed, item, now)
    record_event(session, item, "email_received", parsed.from_address,
                 {"inbound_email_id": inbound.id, "mailbox": mailbox.address}, now=now)
    if closed is not None:
        record_event(session, item, "related", "intake", {"closed_item": closed.ref}, now=now)
    # From the mailbox written to, if the item stayed in its team (a reply to MAIL_FROM has no mailbox).
    from_mailbox = getattr(mailbox, "team_id", None) == item.team_id
    acknowledge(session, writer, item, parsed, now, sender=mailbox.address if from_mailbox else None)
    writer.flush()
    return finish(inbound, "created", now, item=item)


def acknowledge(session, writer, item, parsed, now, sender=None):
    """Send the new item's requester the acknowledgement (from `sender`, the mailbox written to), or
    record why not (`_no_ack_reason`)."""
    reason = _no_ack_reason(writer, parsed, now)
    if reason is None:
        _acknowledge(session, writer, item, parsed, now, sender)
    else:
        record_event(session, item, "ack_suppressed", "intake", {"reason": reason}, now=now)


@dataclass(frozen=True)
class FiledRequest:
    """What the acknowledgement reads of an email, for a request that came another way (the
    front-office form): the requester, the subject, and no message to answer or to call automatic."""

    from_address: str
    from_name: Optional[str]
    subject: str
    message_id: Optional[str] = None
    references: list = field(default_factory=list)
    auto_submitted: bool = False
    auto_reply: bool = False
    bulk: bool = False


def acknowledge_request(session, item, *, now=None, writer=None):
    """The acknowledgement email intake sends, for a new item filed another way (the front-office
    form): same rules (noise, per-sender cap), same template; nothing without a requester address."""
    if not item.requester_email:
        return
    now = now or utcnow()
    request = FiledRequest(from_address=item.requester_email.strip().lower(), from_name=item.requester_name,
                           subject=item.subject)
    acknowledge(session, writer or OneAtATime(session), item, request, now,
                sender=mailboxes.sender_for(session, item))


def _no_ack_reason(writer, parsed, now):
    if parsed.auto_submitted:
        return "auto-submitted"
    if parsed.auto_reply:
        return "automatic reply"
    if parsed.bulk:
        return "bulk or list mail"
    if parsed.from_address.startswith(NOISY_SENDERS):
        return "mailer-daemon or postmaster"
    cap = writer.intake.acks_per_sender_hour
    if writer.acks_in_last_hour(parsed.from_address, now) >= cap:
        return f"more than {cap} acknowledgements to this sender in an hour"
    return None


def _acknowledge(session, writer, item, parsed, now, sender=None):
    # The template itself, without render_template's request context (none is used here).
    body = current_app.jinja_env.get_template("email/acknowledgement.txt").render(item=item, parsed=parsed)
    values = dict(
        work_item_id=item.id, kind="outbound", message_id=lifecycle.new_message_id(),
        in_reply_to=parsed.message_id,
        references=" ".join((parsed.references + [parsed.message_id])[-lifecycle.MAX_REFERENCES:])
        if parsed.message_id else None, to_addresses=parsed.from_address,
        subject=f"[{item.ref}] {parsed.subject or 'Your request'}"[:MAX_HEADER_LINE], body_text=body,
        from_address=sender, is_automatic=True, send_status="queued", created_at=now,
    )
    message = writer.add_message(values, [], item)
    record_event(session, item, "acknowledged", "intake", {"message_id": message.id, "to": parsed.from_address},
                 now=now)
    enqueue_after_commit(session, "workers.mail_out.send_message", message.id)
    writer.acknowledged(parsed.from_address, now)


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
    return finish(inbound, "followup", now, item=item)


def pending_ids(session, older_than, limit=200):
    """Stored emails still waiting to be processed (for the intake sweep)."""
    return session.scalars(sa.select(InboundEmail.id).where(InboundEmail.status == "received",
                                                            InboundEmail.received_at <= older_than)
                           .order_by(InboundEmail.id).limit(limit)).all()


