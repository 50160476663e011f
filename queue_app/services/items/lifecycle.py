"""Work items: create, reclassify, change fields, notes and replies, as every entry point asks.

Invariants:
- Every change writes an Event (services.items.events) with actor and time, in the same flush.
- Status, team and assignee change only through the gate (services.items.state); a person
  resolving what needs a checker gets an approval request instead (services.approvals.decisions).
- Jobs (checks, outbound mail) are recorded with db.outbox.enqueue_after_commit, so they
  reach RQ only if the caller's commit succeeds.
- Callers that show the item to a person pass expected_version; a mismatch is a Conflict
  (the item changed since it was read), and the version column catches concurrent writers.
"""
import uuid
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa

from queue_app.db.outbox import enqueue_after_commit
from queue_app.models import Message, RoutingRule, Team, User, WorkItem
from queue_app.models.base import utcnow
from queue_app.models.work_item import (
    OPEN_STATUSES,
    PRIORITIES,
    SOURCES,
    TYPES,
    format_ref,
)
from queue_app.services import access
from queue_app.services.approvals import decisions, stake
from queue_app.services.assignment import auto as auto_assignment
from queue_app.services.checks import runner
from queue_app.services.errors import Invalid, NotFound
from queue_app.services.intake import mailboxes
from queue_app.services.intake.routing import route
from queue_app.services.items import drafts, state, watchers
from queue_app.services.items import tags as item_tags
from queue_app.services.items.events import record_event
from queue_app.services.items.work_types import (
    REF_PATTERN,
    fields_of,
    plain_fields,
    validate_fields,
)
from queue_app.services.sla import policies
from queue_app.settings import MailSettings

MAX_SUBJECT = 255
MAX_BODY = 100_000
MAX_NAME = 255


def get_item(session, ref):
    ref = (ref or "").strip().upper()
    if not REF_PATTERN.fullmatch(ref):
        raise NotFound(f"no work item {ref!r}")
    item = session.scalar(sa.select(WorkItem).where(WorkItem.ref == ref))
    if item is None:
        raise NotFound(f"no work item {ref}")
    return item


def get_visible_item(session, user, ref):
    item = get_item(session, ref)
    access.require_view(user, item)
    return item


def _check_choices(message, *, required=(), **given):
    """Invalid naming each field whose value is not among its choices ({field: (value, choices)});
    None means not given, which only the fields in `required` refuse."""
    errors = {field: f"must be one of {', '.join(choices)}" for field, (value, choices) in given.items()
              if (value is not None or field in required) and value not in choices}
    if errors:
        raise Invalid(message, errors)


def _clean_text(value, field, max_length, required=False):
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise Invalid(f"{field} must be a string", {field: "must be a string"})
    value = value.strip()
    if required and not value:
        raise Invalid(f"{field} is required", {field: "is required"})
    if len(value) > max_length:
        raise Invalid(f"{field} is too long", {field: f"at most {max_length} characters"})
    return value


@dataclass
class NewItem:
    """A work item checked and routed but not written yet: its columns and how it got them."""

    columns: dict
    team: Team
    rule: RoutingRule | None
    actor: User | None
    source: str
    assignee: User | None
    now: datetime
    from_email: dict = field(default_factory=dict)  # the fields taken from the email: name -> value


def prepare_item(session, *, actor, source, type=None, subject, description="", fields=None, priority=None,
                 team=None, requester_email=None, requester_name=None, assignee=None, recipient=None,
                 sender=None, require_fields=True, route_defaults=None, email_fields=None, now=None):
    """Validate and route a new item; Invalid or PermissionDenied before anything is written.

    `actor` is the User who entered it (None for email intake or the system).
    `email_fields(type, team)`: the field values an email gives once routing has decided the type
    and team (email intake); `fields` win over them, and the item records which ones it took.
    """
    now = now or utcnow()
    _check_choices("invalid work item", required={"source"}, source=(source, SOURCES), type=(type, TYPES),
                   priority=(priority, PRIORITIES))
    subject = _clean_text(subject, "subject", MAX_SUBJECT, required=True)
    description = _clean_text(description, "description", MAX_BODY)
    requester_name = _clean_text(requester_name, "requester_name", MAX_NAME) or None

    decision = route(session, source=source, work_type=type, team=team, priority=priority, recipient=recipient,
                     sender=sender or requester_email, subject=subject, body=description,
                     defaults=route_defaults)
    from_email = {}
    if email_fields is not None:
        given = fields if isinstance(fields, dict) else {}
        from_email = {name: value for name, value in email_fields(decision.type, decision.team).items()
                      if given.get(name) in (None, "")}
        fields = {**from_email, **given}
    values = validate_fields(decision.type, fields, require=require_fields)
    from_email = {name: values[name] for name in from_email}
    access.require_file(actor, decision.team.id, source)

    columns = dict(
        type=decision.type, status="new", priority=decision.priority, source=source, subject=subject,
        description=description, team_id=decision.team.id,
        requester_email=(requester_email or None), requester_name=requester_name,
        created_by_id=actor.id if actor else None, created_at=now, updated_at=now, last_activity_at=now,
        **values,
    )
    if from_email:
        columns["fields_from_email"] = sorted(from_email)
    return NewItem(columns, decision.team, decision.rule, actor, source, assignee, now, from_email)


def create_item(session, **details):
    """Validate, route, start the SLA clock and record the item; checks run after commit.

    `details` are prepare_item's; returns the WorkItem.
    """
    return add_item(session, prepare_item(session, **details))


def add_item(session, new):
    """Write a prepared item: its row and ref, creation events, SLA clock and assignment (by hand or
    by the team's policy); its checks run after the commit."""
    item = WorkItem(team=new.team, **new.columns)
    session.add(item)
    session.flush()
    item.ref = format_ref(item.id)
    record_creation(session, item, new)
    policies.start_clock(session, item, new.now, new.actor)
    if new.assignee is not None:
        state.assign(session, item, new.assignee, actor=new.actor, now=new.now, check_access=new.actor is not None)
    elif new.team.auto_assign != "manual":
        auto_assignment.auto_assign(session, item, new.now)
    enqueue_checks(session, item)
    session.flush()
    return item


def record_creation(session, item, new):
    """The events of a new item: created, and routed when a rule decided."""
    record_event(session, item, "created", new.actor, {
        "source": new.source, "type": item.type, "team": new.team.name, "priority": item.priority,
    }, now=new.now)
    if new.rule is not None:
        record_event(session, item, "routed", new.actor, {"rule": new.rule.name, "team": new.team.name},
                     now=new.now)
    if new.from_email:
        record_event(session, item, "fields_from_email", new.actor or "intake", plain_fields(new.from_email),
                     now=new.now)


def enqueue_checks(session, item):
    runner.enqueue_checks(session, item)


def change_status(session, item, new_status, *, actor, now=None, expected_version=None, comment=None,
                  check_access=True):
    """Change the status as a person asks; resolving what needs a checker asks for approval instead."""
    now = now or utcnow()
    before = item.status
    if new_status == "resolved" and new_status in state.TRANSITIONS.get(item.status, ()) \
            and stake.needs_approval(session, item, now.date()):
        if check_access:
            access.require_work(actor, item)
        state.check_version(item, expected_version)
        result = decisions.request_approval(session, item, actor=actor, action="resolve", now=now, comment=comment)
    else:
        result = state.change_status(session, item, new_status, actor=actor, now=now,
                                     expected_version=expected_version, comment=comment, check_access=check_access)
    watchers.notify_watchers(session, item, "status", actor, now, f"Now {item.status.replace('_', ' ')}, "
                                                                  f"was {before.replace('_', ' ')}.")
    return result


def reclassify(session, item, *, actor, type=None, priority=None, team=None, now=None, expected_version=None):
    """Change type, priority or team; the SLA policy and due times are recalculated.

    Moving an item to another team needs a supervisor of its current team; the assignee
    is dropped when they are not a member of the new team.
    """
    now = now or utcnow()
    access.require_work(actor, item)
    state.check_version(item, expected_version)
    _check_choices("invalid change", type=(type, TYPES), priority=(priority, PRIORITIES))
    if team is not None and team.id != item.team_id:
        access.require_manage_team(actor, item.team_id)
    changes = state.reclassify(session, item, actor=actor, now=now, type=type, priority=priority, team=team)
    if "type" in changes:
        enqueue_checks(session, item)
    session.flush()
    return item


def update_fields(session, item, *, actor, fields, now=None, expected_version=None):
    """Change type-specific fields (partial: fields left out keep their value); the checks run again.

    Missing required fields are allowed, as at email intake: the required-fields check
    reports them. An item awaiting approval keeps its amounts until the approval is decided.
    """
    now = now or utcnow()
    access.require_work(actor, item)
    state.check_version(item, expected_version)
    if not isinstance(fields, dict) or not fields:
        raise Invalid("give the fields to change", {"fields": "must be a non-empty object"})
    if not item.is_open:
        raise Invalid(f"{item.ref} is {item.status}; reopen it before changing it", {"status": item.status})
    if item.status == "awaiting_approval":
        raise Invalid(f"{item.ref} is awaiting approval; its details cannot change until it is decided",
                      {"status": item.status})
    before = fields_of(item)
    values = validate_fields(item.type, {**before, **fields}, require=False)
    for name, value in values.items():
        if getattr(item, name) != value:
            setattr(item, name, value)
    after = fields_of(item)
    changes = {name: [before[name], after[name]] for name in after if before[name] != after[name]}
    if not changes:
        return item
    if item.fields_from_email and changes.keys() & set(item.fields_from_email):
        # A person's value is no longer the email's.
        item.fields_from_email = [name for name in item.fields_from_email if name not in changes] or None
    state.touch(item, now)
    record_event(session, item, "fields_changed", actor, changes, now=now)
    enqueue_checks(session, item)
    session.flush()
    return item


def add_note(session, item, *, actor, body, now=None):
    """An internal note: never sent to the requester."""
    now = now or utcnow()
    access.require_change(actor, item)
    body = _clean_text(body, "body", MAX_BODY, required=True)
    message = Message(work_item_id=item.id, kind="note", body_text=body, author_id=actor.id, created_at=now)
    session.add(message)
    drafts.clear(session, actor, item, "note")  # sent: the draft has done its job
    state.touch(item, now)
    session.flush()
    record_event(session, item, "note_added", actor, {"message_id": message.id}, now=now)
    watchers.notify_watchers(session, item, "note", actor, now)
    return message


def new_message_id():
    return f"<{uuid.uuid4().hex}@{MailSettings.current().domain}>"


MAX_REFERENCES = 20


def reply_threading(session, item):
    """(In-Reply-To, References) for a message we send on `item`, so the requester's mail client
    puts it in their thread.

    In-Reply-To is the requester's latest email on the item (a stranger's flagged mail is not
    answered to them), else the latest message with a Message-ID (our acknowledgement, say).
    References is that message's References plus its Message-ID, with the Message-ID of the
    requester's first email first (RFC 5322 threading, and what clients fall back on), at
    most MAX_REFERENCES ids: the first and the latest ones.
    """
    with_id = sa.select(Message).where(Message.work_item_id == item.id, Message.message_id.is_not(None))
    inbound = with_id.where(Message.kind == "inbound", Message.flagged_for_review.is_(False))
    parent = (session.scalar(inbound.order_by(Message.id.desc()).limit(1))
              or session.scalar(with_id.order_by(Message.id.desc()).limit(1)))
    if parent is None:
        return None, None
    first = session.scalar(inbound.order_by(Message.id).limit(1))
    chain = ([first.message_id] if first is not None else []) + (parent.references or "").split() + [parent.message_id]
    references = list(dict.fromkeys(chain))  # no repeats, first occurrence kept
    if len(references) > MAX_REFERENCES:
        references = references[:1] + references[-(MAX_REFERENCES - 1):]
    return parent.message_id, " ".join(references)


def add_reply(session, item, *, actor, body, now=None, expected_version=None):
    """An outbound reply to the requester, sent by the mail job after commit."""
    now = now or utcnow()
    access.require_work(actor, item)
    state.check_version(item, expected_version)
    body = _clean_text(body, "body", MAX_BODY, required=True)
    if not item.requester_email:
        raise Invalid(f"{item.ref} has no requester email to reply to", {"requester_email": "missing"})
    in_reply_to, references = reply_threading(session, item)
    message = Message(
        work_item_id=item.id, kind="outbound", message_id=new_message_id(),
        in_reply_to=in_reply_to, references=references,
        to_addresses=item.requester_email, subject=f"[{item.ref}] {item.subject}", body_text=body,
        from_address=mailboxes.sender_for(session, item), author_id=actor.id, send_status="queued", created_at=now,
    )
    session.add(message)
    drafts.clear(session, actor, item, "reply")  # sent: the draft has done its job
    policies.on_first_response(session, item, now)
    state.touch(item, now)
    session.flush()
    record_event(session, item, "reply_sent", actor, {"message_id": message.id, "to": item.requester_email},
                 now=now)
    enqueue_after_commit(session, "workers.mail_out.send_message", message.id)
    return message


def list_items(session, user, *, status=None, type=None, priority=None, team=None, assignee=None,
               before_id=None, limit=50, options=(), tag=None):
    """Items the user may see, newest first, keyset-paginated on id (pass the last id seen as before_id).

    `assignee` is a User, "me" or "none" (unassigned); `tag` a normalised tag (services.items.tags).
    """
    query = sa.select(WorkItem).where(access.visible_items(user)).options(*options)
    for column, value in ((WorkItem.status, status), (WorkItem.type, type), (WorkItem.priority, priority)):
        if value is not None:
            query = query.where(column == value)
    if team is not None:
        query = query.where(WorkItem.team_id == team.id)
    if isinstance(assignee, str) and assignee.lower() == "none":
        query = query.where(WorkItem.assignee_id.is_(None))
    elif isinstance(assignee, str) and assignee.lower() == "me":
        query = query.where(WorkItem.assignee_id == user.id)
    elif assignee is not None:
        query = query.where(WorkItem.assignee_id == assignee.id)
    if tag is not None:
        query = query.where(item_tags.tagged(tag))
    if before_id is not None:
        query = query.where(WorkItem.id < before_id)
    return session.scalars(query.order_by(WorkItem.id.desc()).limit(limit)).all()


def open_items_query(user):
    return sa.select(WorkItem).where(access.visible_items(user), WorkItem.status.in_(OPEN_STATUSES))


def user_by_email(session, email):
    return session.scalar(sa.select(User).where(User.email == (email or "").strip().lower()))
