"""The gate: the only code that writes a work item's status, team or assignee, and their events.

Every path (web, API, bulk assignment, auto-assignment, approvals, SLA escalations, email
intake, jobs) changes those three columns through this module, so each rule is written once:
- Status changes follow TRANSITIONS; anything else is Invalid, never a silent change.
  `awaiting_approval` is entered only with a pending Approval (`enter_approval`) and left only
  by its decision (`leave_approval`). Resolving anything whose stake needs a checker
  (services.approvals.stake) is refused here unless it is that decision: the control fails
  closed for any caller that forgot to ask for approval. Nor is a document verification resolved
  as verified while a mandatory check failed, unless a supervisor overrode those failures
  (services.items.verdicts).
- Resolving, or asking a checker to approve a resolution, is refused while mandatory checklist
  steps are open (services.items.checklists); an approval decided meanwhile cannot resolve either.
- A status change moves the SLA clock (pause, resume, met) in the same step.
- A team change drops an assignee who is not a member of the new team and recalculates the
  SLA under the new team's policy; it is recorded with the other changes of the same step.
- An assignee must be active and a member of the item's team, and the item open.
- Every write touches updated_at/last_activity_at and records its event (services.items.events).
- Callers that show the item to a person pass expected_version; a mismatch is a Conflict.
  Writes that skip the ORM (assign_many) are guarded by the version each row was read at.

It also holds the urgency order every queue sorts by, so "most urgent" means one thing.
Like every service: flush, never commit.
"""
import sqlalchemy as sa
from sqlalchemy.orm.attributes import set_committed_value

from queue_app.models import Approval, ChecklistStep, ChecklistTick, User, WorkItem
from queue_app.models.base import utcnow
from queue_app.models.work_item import STATUSES
from queue_app.services import access
from queue_app.services.approvals import stake
from queue_app.services.errors import Conflict, Invalid
from queue_app.services.items import verdicts
from queue_app.services.items.events import record_event
from queue_app.services.sla import policies

TRANSITIONS = {
    "new": {"open", "pending_customer", "pending_third_party", "resolved", "closed"},
    "open": {"pending_customer", "pending_third_party", "resolved"},
    "pending_customer": {"open", "pending_third_party", "resolved"},
    "pending_third_party": {"open", "pending_customer", "resolved"},
    "awaiting_approval": set(),  # decided through services.approvals.decisions
    "resolved": {"open", "closed"},
    "closed": set(),
}


def urgency_order(query, attention_first=False):
    """Most urgent first: sla_next_due (none last), then id; items needing attention first if asked."""
    keys = (WorkItem.sla_next_due.asc().nulls_last(), WorkItem.id.asc())
    if attention_first:
        keys = (WorkItem.needs_attention.desc(),) + keys
    return query.order_by(*keys)


def after_in_urgency_order(due, item_id):
    """Rows after the item with (sla_next_due, id) = (due, item_id) in urgency_order (keyset paging)."""
    if due is None:
        return sa.and_(WorkItem.sla_next_due.is_(None), WorkItem.id > item_id)
    return sa.or_(
        WorkItem.sla_next_due > due,
        sa.and_(WorkItem.sla_next_due == due, WorkItem.id > item_id),
        WorkItem.sla_next_due.is_(None),
    )


def allowed_transitions(item):
    return sorted(TRANSITIONS[item.status])


def check_version(item, expected_version):
    if expected_version is not None and int(expected_version) != item.version:
        raise Conflict(f"{item.ref} was changed by someone else (version {item.version}, you had "
                       f"{expected_version}); reload to see what changed", {"version": str(item.version)})


def touch(item, now):
    item.updated_at = now
    item.last_activity_at = now


# --- assignee ---------------------------------------------------------------------------------

def check_assignable(item, assignee):
    """Invalid unless `item` may go to `assignee` (None: back to the queue)."""
    if not item.is_open:
        raise Invalid(f"{item.ref} is {item.status}; reopen it before assigning", {"status": item.status})
    if assignee is not None:
        if not assignee.is_active:
            raise Invalid(f"{assignee.email} is not an active user", {"assignee": "inactive user"})
        if item.team_id not in assignee.team_ids:
            raise Invalid(f"{assignee.email} is not a member of {item.team.name}",
                          {"assignee": "not a member of the item's team"})


def assign(session, item, assignee, *, actor, now=None, expected_version=None, check_access=True):
    """Assign to `assignee` (a User) or unassign with None."""
    now = now or utcnow()
    if check_access:
        access.require_assign(actor, item, assignee)
    check_version(item, expected_version)
    check_assignable(item, assignee)
    previous = item.assignee
    if (previous.id if previous else None) == (assignee.id if assignee else None):
        return item
    item.assignee = assignee
    item.assignee_id = assignee.id if assignee else None
    touch(item, now)
    record_event(session, item, "assigned" if assignee else "unassigned", actor, {
        "from": previous.email if previous else None,
        "to": assignee.email if assignee else None,
    }, now=now)
    session.flush()
    return item


def assign_many(session, items, assignee, *, actor, now=None, expected_versions=None, check_access=True):
    """`assign` for many items at once, all or nothing: each is checked by the same rules
    first, then all are changed by one UPDATE guarded by the version each was read at.
    One "assigned" (or "unassigned") event per item changed; returns the items changed."""
    now = now or utcnow()
    expected_versions = expected_versions or {}
    for item in items:
        if check_access:
            access.require_assign(actor, item, assignee)
        if item.id in expected_versions:
            check_version(item, expected_versions[item.id])
        check_assignable(item, assignee)
    target = assignee.id if assignee is not None else None
    changed = [item for item in items if item.assignee_id != target]
    if not changed:
        return []
    previous_ids = {item.assignee_id for item in changed if item.assignee_id is not None}
    emails = dict(session.execute(sa.select(User.id, User.email).where(User.id.in_(previous_ids))).all()) \
        if previous_ids else {}
    session.flush()  # anything pending goes first: the update below is written directly
    _update_assignees(session, changed, target, now)
    for item in changed:
        was = item.assignee_id
        for name, value in (("assignee_id", target), ("assignee", assignee), ("version", item.version + 1),
                            ("updated_at", now), ("last_activity_at", now)):
            set_committed_value(item, name, value)
        record_event(session, item, "assigned" if assignee else "unassigned", actor, {
            "from": emails.get(was), "to": assignee.email if assignee else None, "bulk": len(changed),
        }, now=now)
    session.flush()
    return changed


def _update_assignees(session, items, assignee_id, now):
    """One UPDATE for all the items, guarded by the version each was read at (optimistic locking,
    as the ORM's version column does row by row): if anyone changed one meanwhile, nothing is kept."""
    table = WorkItem.__table__
    result = session.execute(
        sa.update(table)
        .where(table.c.id.in_([item.id for item in items]),
               sa.tuple_(table.c.id, table.c.version).in_([(item.id, item.version) for item in items]))
        .values(assignee_id=assignee_id, updated_at=now, last_activity_at=now, version=table.c.version + 1))
    if result.rowcount != len(items):
        raise Conflict("some of the items were changed by someone else meanwhile; reload and try again")


def hand_on(session, item, to, *, actor, kind, data, now=None, expected_version=None):
    """The assignee hands the item back to the queue (to None, kind "handed_back") or passes it to a
    colleague ("passed"); the event names from and to, with `data` (the reason, the note). Who may,
    and to whom, is services.assignment.handing's to say; what any assignment needs is checked here."""
    now = now or utcnow()
    check_version(item, expected_version)
    check_assignable(item, to)
    previous = item.assignee
    item.assignee = to
    item.assignee_id = to.id if to else None
    touch(item, now)
    record_event(session, item, kind, actor, {"from": previous.email if previous else None,
                                              "to": to.email if to else None, **data}, now=now)
    session.flush()
    return item


# --- status -----------------------------------------------------------------------------------

def change_status(session, item, new_status, *, actor, now=None, expected_version=None, comment=None,
                  check_access=True):
    """Move the item along TRANSITIONS. Resolving what needs a checker is refused (ask for
    approval with services.approvals.decisions.request_approval instead)."""
    now = now or utcnow()
    if new_status not in STATUSES:
        raise Invalid(f"unknown status {new_status!r}", {"status": f"must be one of {', '.join(STATUSES)}"})
    if check_access:
        access.require_work(actor, item)
    check_version(item, expected_version)
    old = item.status
    if new_status == old:
        raise Invalid(f"{item.ref} is already {old}", {"status": "unchanged"})
    if new_status not in TRANSITIONS[old]:
        allowed = ", ".join(sorted(TRANSITIONS[old])) or "none"
        raise Invalid(f"cannot change {item.ref} from {old} to {new_status} (allowed: {allowed})",
                      {"status": f"not allowed from {old}"})
    if new_status == "resolved":
        refuse_resolving(session, item, now)
    _write_status(session, item, new_status, actor=actor, now=now, comment=comment)
    return item


def refuse_resolving(session, item, now, approving=False):
    """Invalid if `item` may not be resolved now: a stake that needs a checker (unless this is the
    checker's approval), open mandatory checklist steps, failed checks passed as verified without
    an override."""
    if not approving and stake.needs_approval(session, item, now.date()):
        raise Invalid(f"{item.ref} needs a checker's approval before it can be resolved",
                      {"status": "needs approval"})
    check_checklist(session, item)
    blocker = verdicts.resolving_blocker(session, item)
    if blocker:
        raise Invalid(blocker, {"status": "checks failed"})


def enter_approval(session, item, approval, *, actor, now):
    """awaiting_approval, for the pending `approval` of this item just asked for."""
    if approval.work_item_id != item.id or approval.status != "pending":
        raise Invalid(f"{item.ref} has no pending approval to wait for", {"approval": "not pending"})
    if "resolved" not in TRANSITIONS[item.status]:
        raise Invalid(f"{item.ref} is {item.status}; it cannot wait for approval", {"status": item.status})
    refuse_resolving(session, item, now, approving=True)
    _write_status(session, item, "awaiting_approval", actor=actor, now=now)


def leave_approval(session, item, approval, *, actor, now, comment=None):
    """Resolved when `approval` was approved, open again when rejected or void."""
    if item.status != "awaiting_approval" or approval.work_item_id != item.id \
            or approval.status not in ("approved", "rejected", "void"):
        raise Invalid(f"{item.ref} is not waiting for this decision", {"approval": approval.status})
    if approval.status == "approved":
        changed = stake.changed_since(item, (approval.data or {}).get("snapshot") or {})
        if changed:
            raise Invalid(f"{item.ref} changed after it was approved ({', '.join(changed)}); it needs a new approval",
                          {"approval": "void"})
        refuse_resolving(session, item, now, approving=True)
    _write_status(session, item, "resolved" if approval.status == "approved" else "open", actor=actor, now=now,
                  comment=comment)


def void_approval(session, item, approval, *, actor, now, changed):
    """What `approval` was asked for changed before its decision: void, with an event naming what
    changed, and the item open again (its maker asks anew)."""
    approval.status = "void"
    approval.decided_at = now
    approval.data = {**(approval.data or {}), "void_because": list(changed)}
    record_event(session, item, "approval_voided", actor,
                 {"approval_id": approval.id, "changed": list(changed)}, now=now)
    leave_approval(session, item, approval, actor=actor, now=now,
                   comment=f"the approval is void: {', '.join(changed)} changed")


def _void_pending_approval(session, item, actor, now):
    """A change to what a pending approval covers voids it (services.approvals.stake.SNAPSHOT_FIELDS)."""
    approval = session.scalar(sa.select(Approval).where(Approval.work_item_id == item.id,
                                                        Approval.status == "pending"))
    if approval is None:
        return
    changed = stake.changed_since(item, (approval.data or {}).get("snapshot") or {})
    if changed:
        void_approval(session, item, approval, actor=actor, now=now, changed=changed)


def _write_status(session, item, new_status, *, actor, now, comment=None):
    old = item.status
    item.status = new_status
    if new_status == "resolved":
        item.resolved_at = now
    elif new_status == "closed":
        item.closed_at = now
    elif old in ("resolved", "closed"):
        item.resolved_at = None
        item.closed_at = None
    policies.on_status_change(session, item, old, new_status, now, actor)
    touch(item, now)
    record_event(session, item, "status_changed", actor, {"from": old, "to": new_status, "comment": comment},
                 now=now)
    session.flush()


# --- checklist (steps are defined and ticked in services.items.checklists) ---------------------

def open_mandatory_steps(session, item):
    """The active mandatory steps of the item's checklist not ticked on it, in order."""
    ticked = sa.select(ChecklistTick.step_id).where(ChecklistTick.work_item_id == item.id)
    return session.scalars(
        sa.select(ChecklistStep)
        .where(ChecklistStep.team_id == item.team_id, ChecklistStep.work_type == item.type,
               ChecklistStep.active.is_(True), ChecklistStep.mandatory.is_(True), ChecklistStep.id.not_in(ticked))
        .order_by(ChecklistStep.position, ChecklistStep.id)).all()


def check_checklist(session, item):
    """Invalid while mandatory checklist steps are open: resolving waits for them, on every path."""
    steps = open_mandatory_steps(session, item)
    if steps:
        names = "; ".join(f"“{step.text}”" for step in steps)
        raise Invalid(f"{item.ref} has open mandatory checklist steps: {names}", {"status": "checklist incomplete"})


# --- team (with type and priority, which choose the SLA policy too) ----------------------------

def reclassify(session, item, *, actor, now=None, type=None, priority=None, team=None, data=None):
    """Set type, priority and team; returns the changes, {} when nothing changed.

    One "reclassified" event lists them (an assignee who is not a member of the new team is
    dropped, and listed too; `data` adds what the caller wants said), then the SLA policy and
    due times are recalculated once for all of them. The caller checks who may do it.
    """
    now = now or utcnow()
    if not item.is_open:
        raise Invalid(f"{item.ref} is {item.status}; reopen it before changing it", {"status": item.status})
    changes = {}
    if type is not None and type != item.type:
        changes["type"] = [item.type, type]
        item.type = type
    if priority is not None and priority != item.priority:
        changes["priority"] = [item.priority, priority]
        item.priority = priority
    if team is not None and team.id != item.team_id:
        changes["team"] = [item.team.name, team.name]
        item.team = team
        item.team_id = team.id
        if item.assignee is not None and team.id not in item.assignee.team_ids:
            changes["assignee"] = [item.assignee.email, None]
            item.assignee = None
            item.assignee_id = None
    if not changes:
        return changes
    touch(item, now)
    record_event(session, item, "reclassified", actor, {**changes, **(data or {})}, now=now)
    policies.recalculate(session, item, now, actor, reason=", ".join(sorted(changes)))
    if item.status == "awaiting_approval":
        _void_pending_approval(session, item, actor, now)
    session.flush()
    return changes
