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
  it; a closed item is not reopened (a new item refers to it). An automatic reply (out of
  office, autoresponder) is filed on its thread, closed or not, and changes nothing there.
  A sender who is neither the requester nor a participant is flagged for review. No email
  changes assignment, approval or any other status by itself.
- Mail to MAIL_FROM (our outgoing mail's sender, which customers answer) with no mailbox
  among its recipients is filed by threading alone: on its item, or for a closed item as a
  new item in that item's team; if it answers nothing it is quarantined (`no_mailbox`).
- Acknowledgements go to new items' requesters only when the mail is not automatic (nor
  an automatic reply), bulk, a bounce, from a mailer-daemon/postmaster or ourselves, and
  under the per-sender hourly cap.
"""
import hashlib
import logging
import queue as queue_module
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from email.utils import parseaddr
from functools import lru_cache
from itertools import islice
from typing import Optional

import sqlalchemy as sa
from flask import current_app, has_app_context
from sqlalchemy.orm import defer

from queue_app.models import Attachment, InboundEmail, Message, WorkItem
from queue_app.models.base import utcnow
from queue_app.db import batched_rows, config_cache
from queue_app.services.intake import mailboxes as intake_mailboxes
from queue_app.services.sla import policies as sla_policies
from queue_app.services.items import lifecycle, state
from queue_app.services.items.events import record_event
from queue_app.db.blobs import store_blob
from queue_app.db.outbox import enqueue_after_commit
from queue_app.services.errors import DomainError
from queue_app.services.intake.mail.headers import extract_ref_tag, normalise_message_id
from queue_app.services.intake.mail.parser import MailParseError, ParsedEmail, parse_email

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


def _setting(key, default):
    return current_app.config.get(key, default) if has_app_context() else default


def size_limit():
    """The largest message we file (INTAKE_MAX_MESSAGE_BYTES); a larger one is quarantined as oversize."""
    return _setting("INTAKE_MAX_MESSAGE_BYTES", 25 * 1024 * 1024)


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


def receive(session, raw, *, source, envelope_from=None, envelope_to=(), mailbox=None, imap_uid=None, now=None,
            message_id=None, sha256=None):
    """Store the raw message (the caller commits before acknowledging it). Returns the InboundEmail.

    `message_id` and `sha256` may be passed when the caller has already read them from `raw`.
    """
    now = now or utcnow()
    inbound = InboundEmail(
        source=source, mailbox_id=mailbox.id if mailbox else None, envelope_from=envelope_from,
        envelope_to=[a.lower() for a in envelope_to], message_id=message_id or _peek_message_id(raw),
        sha256=sha256 or hashlib.sha256(raw).hexdigest(), size=len(raw), raw=raw, imap_uid=imap_uid,
        received_at=now,
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


def process(session, inbound, *, fallback_mailbox=None, now=None, known_new=False, parsed=None):
    """Turn a stored email into an item, a follow-up, a duplicate or a quarantined message.

    `known_new`: the caller has just checked that no earlier copy of this email is stored
    (the bulk import checks a whole batch in one query), so the check is not made again.
    `parsed`: what parse_email returned (or the MailParseError it raised) for `inbound.raw`,
    when the caller has parsed it already (the bulk import parses in another process).
    """
    now = now or utcnow()
    if inbound.status != "received":
        return Outcome(inbound.status, inbound, inbound.work_item, inbound.reason)
    inbound.attempts += 1
    if not known_new:
        first = find_known(session, inbound.message_id, inbound.sha256)
        if first is not None and first.id != inbound.id:
            inbound.duplicate_of_id = first.id
            inbound.raw = None  # the bytes are kept once, on the first copy
            return _finish(inbound, "duplicate", now, item=first.work_item)
    if inbound.size > size_limit():
        return quarantine(inbound, "oversize", now, f"{inbound.size} bytes is over the limit")
    try:
        if isinstance(parsed, MailParseError):
            raise parsed
        if parsed is None:
            parsed = parse_email(inbound.raw)
    except MailParseError as exc:
        return quarantine(inbound, exc.reason, now, exc.detail or None)
    lookups = _lookups(session)
    seen = lookups.seen(parsed.message_id) if parsed.message_id else None
    if seen is not None:
        # A Message-ID we sent ourselves (or stored from another source): nothing new.
        kind, item = seen
        if kind == "outbound":
            return quarantine(inbound, "mail_loop", now)
        inbound.raw = None
        return _finish(inbound, "duplicate", now, item=item)
    if _is_our_own(parsed):
        return quarantine(inbound, "mail_loop", now)
    if parsed.is_bounce:
        return _file_bounce(session, inbound, parsed, now)

    recipients = list(inbound.envelope_to or []) + parsed.to + parsed.cc
    mailbox = inbound.mailbox or intake_mailboxes.mailbox_for(session, recipients) or fallback_mailbox
    if mailbox is not None and inbound.mailbox_id is None:
        inbound.mailbox_id = mailbox.id
    item = _thread(parsed, lookups)
    try:
        if item is not None and (item.status != "closed" or _is_automatic(parsed)):
            # An automatic reply (out of office) to a closed item is filed there: it is no new work.
            return _add_follow_up(session, inbound, parsed, item, now)
        if mailbox is None and item is not None and _to_our_sender(recipients):
            # A reply to our own mail (its From is MAIL_FROM, no mailbox) about a closed item:
            # a new item that refers to it, in the closed item's team, as a mailbox would file it.
            return _create_item(session, inbound, parsed, _ReplyRoute(item), now, closed=item)
        if mailbox is None:
            if _to_our_sender(recipients):
                return quarantine(inbound, "no_mailbox", now,
                                  f"Addressed to {_our_sender()}, the sender of our outgoing mail, but it answers "
                                  "none of our messages (no known In-Reply-To, References or [BO-…] tag)")
            return quarantine(inbound, "no_mailbox", now,
                              "Addressed to " + (", ".join(dict.fromkeys(recipients)) or "nobody")
                              + "; none is one of our mailboxes")
        return _create_item(session, inbound, parsed, mailbox, now, closed=item)
    except DomainError as exc:
        return quarantine(inbound, "rejected", now, exc.message)


def _our_sender():
    """The address of MAIL_FROM (which may carry a display name), lower case, or ""."""
    return _address_of(_setting("MAIL_FROM", "") or "")


@lru_cache(maxsize=16)
def _address_of(value):
    return parseaddr(value)[1].lower()


def _to_our_sender(recipients):
    ours = _our_sender()
    return bool(ours) and any((a or "").strip().lower() == ours for a in recipients)


@dataclass
class _ReplyRoute:
    """Routing defaults for a reply sent to MAIL_FROM (no mailbox): those of the item it answers."""

    item: WorkItem

    @property
    def address(self):
        return _our_sender()

    @property
    def type(self):
        return self.item.type

    @property
    def team(self):
        return self.item.team

    @property
    def priority(self):
        return None


def _is_our_own(parsed):
    domain = _setting("MAIL_DOMAIN", "backdesk.example.com").lower()
    ours = _our_sender()
    return bool((ours and parsed.from_address == ours)
                or (parsed.message_id and parsed.message_id.lower().endswith(f"@{domain}>")))


def _thread(parsed, lookups):
    keys = [k for k in parsed.in_reply_to + parsed.references if k]
    item = lookups.latest_item(keys) if keys else None
    if item is not None:
        return item
    ref = extract_ref_tag(parsed.subject)
    return lookups.item_by_ref(ref) if ref else None


class _DatabaseLookups:
    """What filing a message reads of the messages and items we have, a query per question
    (`_BatchLookups` answers the same questions for a whole batch of the bulk import)."""

    def __init__(self, session):
        self.session = session

    def seen(self, message_id):
        """(kind, item) of the message we already have with this Message-ID, or None."""
        message = self.session.scalar(sa.select(Message).where(Message.message_id == message_id))
        return (message.kind, message.work_item) if message is not None else None

    def latest_item(self, keys):
        """The item of the newest message with one of these Message-IDs, or None."""
        message = self.session.scalar(sa.select(Message).where(Message.message_id.in_(keys))
                                      .order_by(Message.id.desc()).limit(1))
        return message.work_item if message is not None else None

    def item_by_ref(self, ref):
        return self.session.scalar(sa.select(WorkItem).where(WorkItem.ref == ref))

    def participants(self, item):
        """The requester and everyone on the item's mail, except messages flagged for review."""
        people = {item.requester_email.lower()} if item.requester_email else set()
        for row in self.session.execute(
                sa.select(Message.from_address, Message.to_addresses, Message.cc_addresses)
                .where(Message.work_item_id == item.id, Message.flagged_for_review.is_(False))):
            people.update(_addresses(*row))
        return people


def _lookups(session):
    return _batch_lookups(session) or _DatabaseLookups(session)


def _addresses(*values):
    """The lower-case addresses in comma-separated address columns."""
    return {a.strip().lower() for value in values for a in (value or "").split(",") if a.strip()}


def _store_message(session, inbound, parsed, item, now, flagged=False):
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
    if session.info.get(_BULK) is not None:
        return _queue_message_rows(session, values, attachments, item)
    message = Message(**values)
    session.add(message)
    session.flush()
    for row in attachments:
        session.add(Attachment(message_id=message.id, **row))
    if attachments:
        session.flush()
        if any(row["is_inline"] for row in attachments):
            message.body_html = _link_inline_images(message.body_html, message.attachments, item)
    return message


def _queue_message_rows(session, values, attachments, item):
    """Bulk import: the message and its attachments as rows queued for the batch's INSERTs
    (batched_rows.batched_rows), their ids taken beforehand, without ORM objects."""
    values["id"] = batched_rows.new_id(session, Message.__table__)
    for row in attachments:
        row["message_id"] = values["id"]
        row["id"] = batched_rows.new_id(session, Attachment.__table__)
    if any(row["is_inline"] for row in attachments):
        values["body_html"] = _link_inline_images(values["body_html"], [_Row(**row) for row in attachments], item)
    batched_rows.add_row(session, Message, values)
    for row in attachments:
        batched_rows.add_row(session, Attachment, row)
    lookups = _batch_lookups(session)
    if lookups is not None:
        lookups.wrote_message(values)
    return _Row(**values)


class _Row:
    """The values of a row written without an ORM object (bulk import), as attributes."""

    def __init__(self, **values):
        self.__dict__.update(values)


def _link_inline_images(html, attachments, item):
    """Point `cid:` images at our own attachment URLs (the parser left them as cid: for us)."""
    html = html or ""
    for attachment in attachments:
        if attachment.content_id:
            html = html.replace(f'src="cid:{attachment.content_id}"',
                                f'src="/items/{item.ref}/attachments/{attachment.id}/inline"')
    return html


def _add_follow_up(session, inbound, parsed, item, now):
    flagged = parsed.from_address not in _lookups(session).participants(item)
    message = _store_message(session, inbound, parsed, item, now, flagged=flagged)
    item.last_activity_at = now
    record_event(session, item, "email_received", parsed.from_address,
                 {"message_id": message.id, "flagged_for_review": flagged, "inbound_email_id": inbound.id}, now=now)
    if flagged:
        record_event(session, item, "flagged_for_review", "intake",
                     {"message_id": message.id, "reason": f"{parsed.from_address} is not a participant"}, now=now)
    # A stranger's mail changes no status, nor does an automatic one (an out-of-office reply).
    if item.status == "resolved" and not flagged and not _is_automatic(parsed):
        state.change_status(session, item, "open", actor="intake", now=now, check_access=False,
                            comment=f"reopened by an email from {parsed.from_address}")
    if parsed.attachments:
        lifecycle.enqueue_checks(session, item)
    _flush_unless_bulk(session)
    return _finish(inbound, "followup", now, item=item)


def _flush_unless_bulk(session):
    """Flush now, so a failure shows at the message that caused it; the bulk import leaves it to
    the batch's commit (a failed batch is filed again one message at a time)."""
    if session.info.get(_BULK) is None:
        session.flush()


def _is_automatic(parsed):
    return parsed.auto_reply or parsed.auto_submitted


def _create_item(session, inbound, parsed, mailbox, now, closed=None):
    description = parsed.body_text
    if closed is not None:
        description = f"Follow-up to {closed.ref}, which is closed.\n\n{description}"
    # Cut to the item's limits: a long subject or body is no reason to quarantine (the Message keeps all).
    item = lifecycle.create_item(
        session, actor=None, source="email", subject=(parsed.subject or "(no subject)")[:lifecycle.MAX_SUBJECT],
        description=description[:lifecycle.MAX_BODY],
        requester_email=parsed.from_address, requester_name=parsed.from_name or None, recipient=mailbox.address,
        sender=parsed.from_address, require_fields=False, route_defaults=mailbox, now=now,
    )
    lookups = _batch_lookups(session)
    if lookups is not None:
        lookups.made_item(item)
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
    _flush_unless_bulk(session)
    return _finish(inbound, "created", now, item=item)


def _no_ack_reason(session, parsed, now):
    if parsed.auto_submitted:
        return "auto-submitted"
    if parsed.auto_reply:
        return "automatic reply"
    if parsed.bulk:
        return "bulk or list mail"
    if parsed.from_address.startswith(NOISY_SENDERS):
        return "mailer-daemon or postmaster"
    cap = _setting("INTAKE_ACKS_PER_SENDER_HOUR", 5)
    bulk = session.info.get(_BULK)
    if bulk is not None:
        sent = bulk.acks_in_last_hour(session, parsed.from_address, now)
    else:
        sent = session.scalar(sa.select(sa.func.count()).select_from(Message).where(
            Message.is_automatic.is_(True), Message.to_addresses == parsed.from_address,
            Message.created_at > now - timedelta(hours=1)))
    if sent >= cap:
        return f"more than {cap} acknowledgements to this sender in an hour"
    return None


def _acknowledge(session, item, parsed, now):
    # The template itself, without render_template's request context (none is used here).
    body = current_app.jinja_env.get_template("email/acknowledgement.txt").render(item=item, parsed=parsed)
    values = dict(
        work_item_id=item.id, kind="outbound", message_id=lifecycle.new_message_id(),
        in_reply_to=parsed.message_id, references=" ".join((parsed.references + [parsed.message_id])[-20:])
        if parsed.message_id else None, to_addresses=parsed.from_address,
        subject=f"[{item.ref}] {parsed.subject or 'Your request'}"[:998], body_text=body, is_automatic=True,
        send_status="queued", created_at=now,
    )
    if session.info.get(_BULK) is not None:
        message = _queue_message_rows(session, values, [], item)
    else:
        message = Message(**values)
        session.add(message)
        session.flush()
    record_event(session, item, "acknowledged", "intake", {"message_id": message.id, "to": parsed.from_address},
                 now=now)
    enqueue_after_commit(session, "workers.mail_out.send_message", message.id)
    bulk = session.info.get(_BULK)
    if bulk is not None:
        bulk.acknowledged(parsed.from_address, now)


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


# --- bulk import (`flask intake file`) ----------------------------------------------------

_BULK = "backdesk_bulk_import"


class _BulkImport:
    """What one bulk import keeps between messages: the acknowledgements sent per sender in the
    last hour (read once, then counted here instead of queried per new item)."""

    def __init__(self):
        self.acks = None  # sender -> [sent at], loaded on first use
        self.log = []  # (sender, sent at) added by this import, in order, to undo a failed batch
        self.lookups = None  # the batch being written: its _BatchLookups

    def acks_in_last_hour(self, session, sender, now):
        if self.acks is None:
            self.acks = {}
            for to_address, created_at in session.execute(
                    sa.select(Message.to_addresses, Message.created_at).where(
                        Message.is_automatic.is_(True), Message.created_at > now - timedelta(hours=1))):
                self.acks.setdefault(to_address, []).append(created_at)
        since = now - timedelta(hours=1)
        return sum(1 for at in self.acks.get(sender, ()) if at > since)

    def acknowledged(self, sender, now):
        if self.acks is not None:
            self.acks.setdefault(sender, []).append(now)
            self.log.append(sender)

    def mark(self):
        return len(self.log)

    def undo(self, position):
        for sender in reversed(self.log[position:]):
            self.acks[sender].pop()
        del self.log[position:]


def _batch_lookups(session):
    bulk = session.info.get(_BULK)
    return bulk.lookups if bulk is not None else None


class _BatchLookups:
    """The reads that filing a batch makes, done for the whole batch up front in a few queries
    and kept current as the batch writes: the messages we have under the Message-IDs the
    batch mentions, the items those and its [BO-…] tags lead to, and who takes part in them.

    Filing one message at a time asks the database for each of these; here every message
    of the batch sees exactly what it would have seen there, as the rows the batch writes
    (messages, new items) are added as they are queued.
    """

    CHUNK = 500  # values per IN (...) list

    def __init__(self, session, parsed):
        self.session = session
        self.messages = {}  # Message-ID -> (message id, item id, kind)
        self.items, self.refs, self.people = {}, {}, {}
        self.asked_ids, self.asked_refs = set(), set()
        keys, refs = set(), set()
        for p in parsed:
            if isinstance(p, ParsedEmail):  # not the error to quarantine with, nor None
                keys.update(k for k in (p.message_id, *p.in_reply_to, *p.references, *p.bounced_message_ids) if k)
                ref = extract_ref_tag(p.subject)
                if ref:
                    refs.add(ref)
        self._fetch(keys, refs)

    def _fetch(self, keys, refs=()):
        """Read what the database has for these Message-IDs and refs (once per value)."""
        keys, refs = set(keys) - self.asked_ids, set(refs) - self.asked_refs
        if not keys and not refs:
            return
        self.asked_ids.update(keys)
        self.asked_refs.update(refs)
        item_ids = set()
        for chunk in _chunks(sorted(keys), self.CHUNK):
            for message_id, row_id, item_id, kind in self.session.execute(
                    sa.select(Message.message_id, Message.id, Message.work_item_id, Message.kind)
                    .where(Message.message_id.in_(chunk))):
                self.messages[message_id] = (row_id, item_id, kind)
                item_ids.add(item_id)
        item_ids = sorted(item_ids - set(self.items))
        loaded = []
        for column, values in ((WorkItem.id, item_ids), (WorkItem.ref, sorted(refs - set(self.refs)))):
            for chunk in _chunks(values, self.CHUNK):
                loaded += self.session.scalars(sa.select(WorkItem).where(column.in_(chunk))).all()
        for item in loaded:
            self._add_item(item)
        for chunk in _chunks(sorted(item.id for item in loaded), self.CHUNK):  # who takes part in them
            for item_id, *addresses in self.session.execute(
                    sa.select(Message.work_item_id, Message.from_address, Message.to_addresses, Message.cc_addresses)
                    .where(Message.work_item_id.in_(chunk), Message.flagged_for_review.is_(False))):
                self.people[item_id].update(_addresses(*addresses))

    def _add_item(self, item):
        self.items[item.id] = item  # held here: the session's identity map keeps no strong reference
        self.refs[item.ref] = item.id
        self.people[item.id] = {item.requester_email.lower()} if item.requester_email else set()

    def _work_item(self, item_id):
        """The WorkItem to change: an item made in this batch is a QueuedItem until it is loaded."""
        item = self.items[item_id]
        if isinstance(item, lifecycle.QueuedItem):
            item = self.items[item_id] = lifecycle.attach_queued_item(self.session, item)
        return item

    def seen(self, message_id):
        self._fetch([message_id])
        found = self.messages.get(message_id)
        return (found[2], self.items[found[1]]) if found else None

    def latest_item(self, keys):
        self._fetch(keys)
        found = [self.messages[k] for k in keys if k in self.messages]
        return self._work_item(max(found)[1]) if found else None

    def item_by_ref(self, ref):
        self._fetch((), [ref])
        return self._work_item(self.refs[ref]) if ref in self.refs else None

    def participants(self, item):
        return set(self.people[item.id])

    def made_item(self, item):
        self._add_item(item)
        self.asked_refs.add(item.ref)

    def wrote_message(self, values):
        if values.get("message_id"):
            self.messages[values["message_id"]] = (values["id"], values["work_item_id"], values["kind"])
        if not values.get("flagged_for_review") and values["work_item_id"] in self.people:
            self.people[values["work_item_id"]].update(
                _addresses(values.get("from_address"), values.get("to_addresses"), values.get("cc_addresses")))


def _chunks(iterable, size):
    iterator = iter(iterable)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _key(message_id, digest):
    """What makes two copies the same email (see find_known)."""
    return ("id", message_id) if message_id else ("sha256", digest)


def _known_keys(session, keys):
    """The keys among `keys` of emails already stored, in one query."""
    ids = sorted({value for kind, value in keys if kind == "id"})
    digests = sorted({value for kind, value in keys if kind == "sha256"})
    conditions = []
    if ids:
        conditions.append(InboundEmail.message_id.in_(ids))
    if digests:
        conditions.append(sa.and_(InboundEmail.message_id.is_(None), InboundEmail.sha256.in_(digests)))
    if not conditions:
        return set()
    rows = session.execute(sa.select(InboundEmail.message_id, InboundEmail.sha256)
                           .where(sa.or_(*conditions), InboundEmail.duplicate_of_id.is_(None)))
    return {_key(message_id, digest) for message_id, digest in rows}


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
    bulk = _BulkImport()
    limit = size_limit()
    # Rules, policies and mailboxes are read once per batch; events and jobs are written per batch.
    with config_cache.config_cache(session), batched_rows.batched_rows(session), \
            _ReadAhead(raws, batch, limit, enabled=read_ahead) as batches:
        session.info[_BULK] = bulk
        try:
            for chunk, parsed in batches:
                with sla_policies.memoised_due_times():
                    counts.update(_import_batch(session, chunk, fallback_mailbox, source, bulk, parsed, limit))
                config_cache.reset(session)
        finally:
            session.info.pop(_BULK, None)
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
        for chunk in _chunks(raws, size):
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
        for chunk in _chunks(islice(self.raws, received, None), self.size):
            yield chunk, None


def _receive_rows(session, raws, *, source, keys, now):
    """`receive` for the bulk import: a batch's rows are INSERTed at once, before anything else
    (the raw bytes are stored first, as always). What is returned holds each row's values as
    attributes, as an InboundEmail would (not an ORM object: the session does not track them);
    `_write_outcomes` writes what processing decided, for the whole batch."""
    rows = [dict(source=source, mailbox_id=None, envelope_from=None, envelope_to=[], message_id=message_id,
                 sha256=digest, size=len(raw), raw=raw, imap_uid=None, status="received", attempts=0,
                 received_at=now) for raw, (message_id, digest) in zip(raws, keys)]
    if not rows:
        return []
    ids = batched_rows.insert_returning_ids(session, InboundEmail.__table__, rows)
    return [_Row(id=row_id, mailbox=None, work_item=None, reason=None, detail=None, processed_at=None,
                 work_item_id=None, duplicate_of_id=None, **row) for row_id, row in zip(ids, rows)]


_OUTCOME_COLUMNS = ("status", "reason", "detail", "processed_at", "work_item_id", "mailbox_id", "attempts",
                    "duplicate_of_id")


def _write_outcomes(session, inbounds):
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


def _import_batch(session, raws, fallback_mailbox, source, bulk, parsed, limit):
    # One instant for the whole batch, as its rows become visible together: the transaction's time.
    now = utcnow()
    keys = [(_peek_message_id(raw), hashlib.sha256(raw).hexdigest()) for raw in raws]
    position = bulk.mark()
    counts = Counter()
    try:
        known = _known_keys(session, [_key(*key) for key in keys])
        new = []  # (index in the batch, raw, key) of each message not stored before
        for index, (raw, (message_id, digest)) in enumerate(zip(raws, keys)):
            key = _key(message_id, digest)
            if key in known:
                counts["duplicate"] += 1
                continue
            known.add(key)
            new.append((index, raw, (message_id, digest)))
        stored = _receive_rows(session, [raw for _, raw, _ in new], source=source, keys=[k for _, _, k in new],
                               now=now)
        if parsed is None:
            parsed_new = parse_many([raw for _, raw, _ in new], limit)
        else:
            parsed_new = [parsed[index] for index, _, _ in new]
        bulk.lookups = _BatchLookups(session, parsed_new)
        for inbound, parsed_one in zip(stored, parsed_new):
            outcome = process(session, inbound, fallback_mailbox=fallback_mailbox, now=now, known_new=True,
                              parsed=parsed_one)
            counts[outcome.status] += 1
        batched_rows.write_pending(session)  # the outcomes refer to the batch's new items
        _write_outcomes(session, stored)
        session.commit()
        return counts
    except Exception:
        session.rollback()
        bulk.undo(position)
        config_cache.reset(session)
        log.warning("intake: a batch of %d messages failed; filing them one at a time", len(raws), exc_info=True)
    finally:
        bulk.lookups = None
    counts = Counter()
    for raw in raws:
        counts[_import_one(session, raw, fallback_mailbox, source, bulk)] += 1
    return counts


def _import_one(session, raw, fallback_mailbox, source, bulk):
    position = bulk.mark()
    try:
        if find_known(session, _peek_message_id(raw), hashlib.sha256(raw).hexdigest()) is not None:
            return "duplicate"
        inbound = receive(session, raw, source=source)
        status = process(session, inbound, fallback_mailbox=fallback_mailbox).status
        session.commit()
        return status
    except Exception as exc:
        session.rollback()
        bulk.undo(position)
        config_cache.reset(session)
        log.exception("intake: a message could not be filed; it is kept and quarantined")
        now = utcnow()
        inbound = receive(session, raw, source=source, now=now)
        inbound.attempts = 1
        quarantine(inbound, "rejected", now, f"Filing failed: {type(exc).__name__}: {exc}"[:2000])
        session.commit()
        return "quarantined"


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
        body = inbound.raw.decode("utf-8", "replace").replace("\x00", "")[:lifecycle.MAX_BODY]
    item = lifecycle.create_item(
        session, actor=actor, source="email", subject=(subject or "(no subject)")[:lifecycle.MAX_SUBJECT],
        description=(body or "")[:lifecycle.MAX_BODY], requester_email=sender, recipient=mailbox.address,
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

