"""Assignment by hand: one item, many at once, and the board's checked selection.

Invariants:
- Assignment by hand may go over capacity: the supervisor decides, and the board shows loads.
  The board's bulk action (assign_selected) refuses, item by item, what would take someone
  over capacity, to someone out of office or without the skill, unless the supervisor
  overrides; whatever changed hands meanwhile is always refused.
- Every change goes through the gate (services.items.state), which checks what any
  assignment needs (open item, active member of its team, the version the person saw).
- Like every service: flush, never commit; the caller owns the transaction (and the locks).
"""
from dataclasses import dataclass, field
from datetime import datetime, timezone

import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from queue_app.models import User, WorkItem
from queue_app.models.base import MAX_ID, utcnow
from queue_app.services import access
from queue_app.services.assignment.capacity import lock_users, open_loads
from queue_app.services.assignment.notices import notify_assigned
from queue_app.services.errors import Invalid
from queue_app.services.items import state
from queue_app.services.items.work_types import type_label

MAX_BULK = 1_000


def assign(session, item, assignee, *, actor, now=None, expected_version=None):
    """Assign (or unassign, assignee None) one item by hand, and tell the new assignee."""
    now = now or utcnow()
    before = item.assignee_id
    state.assign(session, item, assignee, actor=actor, now=now, expected_version=expected_version)
    if assignee is not None and before != assignee.id:
        notify_assigned(session, [(item, assignee)], actor, now)
    return item


def bulk_assign(session, items, assignee, *, actor, now=None, expected_versions=None, check_access=True):
    """Assign many items to one person (or unassign them, assignee None) in one go.

    All or nothing, by the gate's rules (state.assign_many): one "assigned" event per item;
    the assignee gets one notification listing them. Returns the items changed.
    """
    now = now or utcnow()
    items = list(items)
    if len(items) > MAX_BULK:
        raise Invalid(f"at most {MAX_BULK} items at once", {"items": f"at most {MAX_BULK}"})
    changed = state.assign_many(session, items, assignee, actor=actor, now=now, expected_versions=expected_versions,
                                check_access=check_access)
    if assignee is not None and changed:
        notify_assigned(session, [(item, assignee) for item in changed], actor, now)
    return changed


def items_by_id(session, user, ids):
    """The open-or-not items with these ids that `user` may see, in the order given (for bulk forms)."""
    ids = [int(i) for i in ids][:MAX_BULK + 1]
    rows = session.scalars(sa.select(WorkItem).where(WorkItem.id.in_(ids), access.visible_items(user))).all()
    by_id = {item.id: item for item in rows}
    return [by_id[i] for i in dict.fromkeys(ids) if i in by_id]


@dataclass
class Selection:
    """What the supervisor asked for and what came of it."""
    assigned: list = field(default_factory=list)  # the items changed
    refused: list = field(default_factory=list)  # [(ref, reason)] in the order of the selection


def parse_selection(values):
    """{item id: assignee id the page showed (None: unassigned)} from "id:assignee" form values.

    A value may also be a bare id (shown unassigned). Anything else raises Invalid.
    """
    selection = {}
    for value in values:
        item_text, _, seen_text = str(value).strip().partition(":")
        try:
            item_id = int(item_text)
            seen = int(seen_text) if seen_text.strip() else None
        except ValueError:
            raise Invalid("the selection is not valid; reload the page and try again",
                          {"items": "not a list of item ids"}) from None
        if not 0 < item_id <= MAX_ID or (seen is not None and not 0 < seen <= MAX_ID):
            raise Invalid("the selection is not valid; reload the page and try again",
                          {"items": "not a list of item ids"})
        selection[item_id] = seen
    return selection


def _refusal(item, assignee, seen, target, names):
    """Why `item` cannot be given to `assignee` by hand (None when it can), before any rule that
    the supervisor may override (capacity, absence, skills)."""
    if not item.is_open:
        return f"it is {item.status.replace('_', ' ')}; reopen it before assigning"
    if item.assignee_id != seen:
        if item.assignee_id is None:
            return "it was returned to the queue meanwhile"
        if item.assignee_id == target:
            return f"it was already assigned to {names.get(item.assignee_id, 'them')} meanwhile"
        return f"it was taken by {names.get(item.assignee_id, 'someone else')} meanwhile"
    if item.assignee_id == target:
        return f"it is already assigned to {assignee.name}" if assignee is not None else "it is already unassigned"
    if assignee is not None and item.team_id not in assignee.team_ids:
        return f"{assignee.name} is not a member of {item.team.name}"
    return None


def assign_selected(session, actor, selection, assignee, *, now=None, override=False):
    """Assign the selected items to `assignee` (None: back to the queue) from the board.

    `selection` is {item id: assignee id the page showed}. Each item is checked on its own and
    the ones that may not be assigned are reported with the reason, the others assigned in one
    go by bulk_assign (one "assigned" event each, one notification to the assignee):
    - gone, not in a team the actor manages, closed, already taken or changed hands meanwhile,
      the assignee not in the item's team: always refused;
    - the assignee out of office, without the item's type in their skills, or with no free
      capacity left (counted in urgency order, the most urgent items first): refused unless
      `override` (assignment by hand may go over capacity when the supervisor says so).
    The assignee's users row is locked before the load is counted, so two supervisors filling
    the same person's last slots at once cannot both succeed.
    """
    now = now or utcnow()
    if not selection:
        raise Invalid("select at least one item", {"items": "nothing selected"})
    if len(selection) > MAX_BULK:
        raise Invalid(f"at most {MAX_BULK} items at once", {"items": f"at most {MAX_BULK}"})
    if assignee is not None and not assignee.is_active:
        raise Invalid(f"{assignee.name} cannot sign in any more; choose someone else", {"assignee": "inactive"})
    ids = list(selection)
    rows = session.scalars(
        sa.select(WorkItem).where(WorkItem.id.in_(ids), access.visible_items(actor))
        .options(selectinload(WorkItem.team)).execution_options(populate_existing=True)).all()
    by_id = {item.id: item for item in rows}
    holders = {item.assignee_id for item in rows if item.assignee_id is not None}
    names = dict(session.execute(sa.select(User.id, User.name).where(User.id.in_(holders))).all()) if holders else {}
    target = assignee.id if assignee is not None else None
    refused = {}
    candidates = []
    for item_id in ids:
        item = by_id.get(item_id)
        if item is None or not access.manages_team(actor, item.team_id):
            refused[item_id] = (f"item {item_id}", "it does not exist or is not in a team you manage")
            continue
        reason = _refusal(item, assignee, selection[item_id], target, names)
        if reason:
            refused[item_id] = (item.ref, reason)
        else:
            candidates.append(item)
    accepted = candidates
    if assignee is not None and candidates and not override:
        accepted = []
        if assignee.is_out_of_office(now):
            for item in candidates:
                refused[item.id] = (item.ref, f"{assignee.name} is out of office")
            candidates = []
        capacity = lock_users(session, [assignee.id]).get(assignee.id, assignee.capacity)
        load = open_loads(session, [assignee.id])[assignee.id]
        skills = set(assignee.skills or [])
        far = datetime.max.replace(tzinfo=timezone.utc)
        for item in sorted(candidates, key=lambda i: (i.sla_next_due or far, i.id)):
            if item.type not in skills:
                refused[item.id] = (item.ref, f"{assignee.name} does not have the skill {type_label(item.type)}")
            elif load >= capacity:
                refused[item.id] = (item.ref, f"{assignee.name} would go over capacity "
                                              f"({load} open of {capacity})")
            else:
                load += 1
                accepted.append(item)
    changed = []
    if accepted:
        order = {item_id: n for n, item_id in enumerate(ids)}
        accepted.sort(key=lambda i: order[i.id])
        changed = bulk_assign(session, accepted, assignee, actor=actor, now=now)
    return Selection(assigned=changed, refused=[refused[i] for i in ids if i in refused])
