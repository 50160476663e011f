"""What changed on an item since a person opened it: optimistic locking made useful.

Every form on the item page carries the item version the person saw and the id of the last
event in the history they saw. When they submit, `since` lists the events recorded after
that one and decides whether any of them conflicts with what they are about to do.

The rule: a change conflicts when it alters what the person was deciding on, namely

- the state: status changes and approvals (requested or decided);
- who has it: assigned, unassigned, auto-assigned, or moved by an SLA escalation;
- what it is: type-specific fields, type, priority or team (reclassified, priority raised,
  an escalation that raised the priority).

Everything else does not conflict: notes, replies and mail going out, inbound email, check
results, SLA warnings, pauses and recalculations. A reply sent after a colleague only added a
note simply goes through, and so does a status change after the checks ran.

When nothing conflicts, the caller acts on the item as it is now (`expected_version` is the
current version, so a writer racing in between is still caught by the version column).
When something does, the caller shows the changes, the current values and the person's own
unsent input, and lets them submit again knowingly.
"""
from dataclasses import dataclass, field

import sqlalchemy as sa

from queue_app.models import Event

MATERIAL_KINDS = frozenset({
    "status_changed", "approval_requested", "approval_decided",
    "assigned", "unassigned", "auto_assigned",
    "fields_changed", "reclassified", "priority_raised",
})
# SLA ladder steps conflict only when they moved the item or raised its priority.
LADDER_KINDS = frozenset({"sla_breached", "escalated"})
LADDER_MATERIAL_KEYS = ("reassigned_to", "priority", "assignee")
# A long-open page could have hundreds of events behind it; the panel shows the latest ones.
MAX_SHOWN = 50


def is_material(event):
    if event.kind in MATERIAL_KINDS:
        return True
    if event.kind in LADDER_KINDS:
        data = event.data or {}
        return any(data.get(key) for key in LADDER_MATERIAL_KEYS)
    return False


@dataclass
class Changes:
    """The events after the one the person saw (oldest first, at most MAX_SHOWN), and the verdict."""

    events: list = field(default_factory=list)
    material: list = field(default_factory=list)
    more: int = 0  # events left out of `events` because there were too many
    seen_version: int | None = None
    current_version: int | None = None
    compare_versions_only: bool = False  # no seen event given: the service's version check decides

    @property
    def conflict(self):
        return bool(self.material)

    @property
    def expected_version(self):
        """The version to hand the service: the current one unless a change conflicts."""
        return self.seen_version if self.conflict or self.compare_versions_only else self.current_version


def last_event_id(session, item):
    """The id of the item's newest event (0 when it has none): what a freshly rendered page has seen."""
    return session.scalar(sa.select(sa.func.max(Event.id)).where(Event.work_item_id == item.id)) or 0


def events_after(session, item, event_id, limit=MAX_SHOWN + 1):
    return session.scalars(sa.select(Event).where(Event.work_item_id == item.id, Event.id > event_id)
                           .order_by(Event.id).limit(limit)).all()


def since(session, item, *, seen_version, seen_event_id):
    """What changed on the item after the person saw version `seen_version` and event `seen_event_id`.

    Without a seen event id (a form from an older page, an API client) there is nothing to
    compare: no conflict is reported here, and the service compares versions as before (a
    mismatch is its Conflict error).
    """
    changes = Changes(seen_version=seen_version, current_version=item.version)
    if seen_version is not None and seen_version == item.version:
        return changes
    if seen_event_id is None:
        changes.compare_versions_only = True
        return changes
    # Material events are looked for over the whole gap; only the display is capped.
    candidates = session.scalars(
        sa.select(Event).where(Event.work_item_id == item.id, Event.id > seen_event_id,
                               Event.kind.in_(MATERIAL_KINDS | LADDER_KINDS)).order_by(Event.id)).all()
    events = events_after(session, item, seen_event_id)
    if len(events) > MAX_SHOWN:
        total = session.scalar(sa.select(sa.func.count()).select_from(Event)
                               .where(Event.work_item_id == item.id, Event.id > seen_event_id))
        newest = session.scalars(sa.select(Event).where(Event.work_item_id == item.id, Event.id > seen_event_id)
                                 .order_by(Event.id.desc()).limit(MAX_SHOWN)).all()
        events = list(reversed(newest))
        changes.more = total - len(events)
    changes.events = events
    changes.material = [e for e in candidates if is_material(e)]
    return changes
