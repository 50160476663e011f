"""Handing an item on: the assignee hands it back to the team's queue, or passes it to a colleague.

Invariants:
- Handing back needs a reason and the assignee or a supervisor of the team; passing needs the
  assignee, a team that allows it (Team.executives_may_pass) and an active colleague of the team
  who is in the office and has room: an executive cannot override capacity, as a supervisor can.
- The change itself is the gate's (state.hand_on: open item, the version the person saw, the
  "handed_back" or "passed" event); the colleague is notified. Flush, never commit.
"""
from queue_app.models.base import utcnow
from queue_app.services import access
from queue_app.services.assignment.capacity import lock_users, open_loads
from queue_app.services.errors import Invalid, PermissionDenied
from queue_app.services.items import state
from queue_app.services.people import notifications

MAX_REASON = 2000


def _text(value, field, required):
    value = (value or "").strip()
    if required and not value:
        raise Invalid(f"give the {field} for handing it on", {field: "is required"})
    if len(value) > MAX_REASON:
        raise Invalid(f"the {field} is too long", {field: f"at most {MAX_REASON} characters"})
    return value or None


def hand_back(session, item, *, actor, reason, now=None, expected_version=None):
    """Back to the team's unassigned queue, with the reason in the "handed_back" event."""
    access.require_work(actor, item)
    reason = _text(reason, "reason", required=True)
    if item.assignee_id is None:
        raise Invalid(f"{item.ref} is not assigned to anyone", {"assignee": "nobody to hand it back"})
    return state.hand_on(session, item, None, actor=actor, kind="handed_back", data={"reason": reason},
                         now=now, expected_version=expected_version)


def may_pass(user, item):
    """Whether `user` may pass `item` to a colleague now (the page shows the form only then)."""
    return item.is_open and item.assignee_id == user.id and bool(item.team.executives_may_pass)


def colleagues(item, user):
    """Whom `user` could pass `item` to: the team's other active members."""
    return [member for member in item.team.members if member.is_active and member.id != user.id]


def pass_to(session, item, colleague, *, actor, note=None, now=None, expected_version=None):
    """To a colleague of the team, with a "passed" event naming both and the note; they are notified."""
    now = now or utcnow()
    access.require_change(actor, item)
    if item.assignee_id != actor.id:
        raise PermissionDenied("only the assignee can pass this item to a colleague")
    if not item.team.executives_may_pass:
        raise Invalid(f"{item.team.name} does not let executives pass items; ask a supervisor",
                      {"team": "does not allow passing"})
    note = _text(note, "note", required=False)
    if colleague.id == actor.id:
        raise Invalid("the item is yours already", {"to": "already the assignee"})
    if not colleague.is_active or item.team_id not in colleague.team_ids:
        raise Invalid(f"{colleague.email} is not an active member of {item.team.name}",
                      {"to": "not a member of the item's team"})
    if colleague.is_out_of_office(now):
        raise Invalid(f"{colleague.name} is out of office", {"to": "out of office"})
    capacity = lock_users(session, [colleague.id]).get(colleague.id, colleague.capacity)
    load = open_loads(session, [colleague.id])[colleague.id]
    if load >= capacity:
        raise Invalid(f"{colleague.name} has no room ({load} open of {capacity})", {"to": "over capacity"})
    state.hand_on(session, item, colleague, actor=actor, kind="passed", data={"note": note}, now=now,
                  expected_version=expected_version)
    body = f"{actor.name or actor.email} passed {item.ref} ({item.subject}) to you."
    notifications.notify(session, item, [colleague], f"[{item.ref}] passed to you",
                         body + (f"\nTheir note: {note}" if note else ""), now, kind="assigned")
    return item
