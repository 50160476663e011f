"""Checklists: the steps (standard operating procedure) a team works through on items of one work type.

Invariants:
- An item's checklist is the active steps of its team and work type, in position order. A step
  switched off no longer shows or blocks; its ticks stay in the history.
- Ticking and unticking is working the item: the same people may do it as may change its status
  (services.access.require_work), and only while the item is open and not waiting for approval
  (the checker approves the checklist as it was asked).
- Every tick and untick is an event naming the step's text at that moment, who and when, so
  editing or switching off a step later does not rewrite what was done.
- Open mandatory steps block resolving: that rule is written once, in the gate
  (services.items.state.open_mandatory_steps), so no path resolves around it.
- Only admins define steps; every change to a step is in the audit trail (services.audit).
Like every service: flush, never commit.
"""
from dataclasses import dataclass

import sqlalchemy as sa

from queue_app.models import ChecklistStep, ChecklistTick, Team
from queue_app.models.base import MAX_ID, utcnow
from queue_app.models.work_item import TYPES
from queue_app.services import access
from queue_app.services.audit import record as audit
from queue_app.services.errors import Invalid, NotFound, PermissionDenied
from queue_app.services.items import state
from queue_app.services.items.events import record_event

MAX_TEXT = 500

open_mandatory_steps = state.open_mandatory_steps  # the gate's rule, for pages that show it


@dataclass
class Line:
    """One step of an item's checklist and its tick (None while open)."""

    step: ChecklistStep
    tick: ChecklistTick | None

    @property
    def done(self):
        return self.tick is not None


def steps_of(session, team_id, work_type, *, active_only=True):
    query = sa.select(ChecklistStep).where(ChecklistStep.team_id == team_id, ChecklistStep.work_type == work_type)
    if active_only:
        query = query.where(ChecklistStep.active.is_(True))
    return session.scalars(query.order_by(ChecklistStep.position, ChecklistStep.id)).all()


def checklist_of(session, item):
    """The item's checklist: its team's active steps for its type, each with its tick or None."""
    steps = steps_of(session, item.team_id, item.type)
    if not steps:
        return []
    ticks = {tick.step_id: tick for tick in session.scalars(
        sa.select(ChecklistTick).where(ChecklistTick.work_item_id == item.id,
                                       ChecklistTick.step_id.in_([s.id for s in steps])))}
    return [Line(step, ticks.get(step.id)) for step in steps]


def may_tick(user, item):
    try:
        require_tickable(user, item)
    except (Invalid, NotFound, PermissionDenied):
        return False
    return True


def require_tickable(user, item):
    access.require_work(user, item)
    if not item.is_open or item.status == "awaiting_approval":
        raise Invalid(f"{item.ref} is {item.status.replace('_', ' ')}; its checklist cannot change now",
                      {"status": item.status})


def _step_of(session, item, step_id):
    """The active step `step_id` of the item's checklist; any other is not found."""
    step = session.get(ChecklistStep, step_id) if isinstance(step_id, int) and 0 < step_id <= MAX_ID else None
    if step is None or not step.active or step.team_id != item.team_id or step.work_type != item.type:
        raise NotFound(f"no such checklist step on {item.ref}")
    return step


def _tick_of(session, item, step):
    return session.scalar(sa.select(ChecklistTick).where(ChecklistTick.work_item_id == item.id,
                                                         ChecklistTick.step_id == step.id))


def tick(session, item, step_id, *, actor, now=None):
    """Tick a step of the item's checklist; ticking a ticked step changes nothing. Returns the step."""
    now = now or utcnow()
    require_tickable(actor, item)
    step = _step_of(session, item, step_id)
    if _tick_of(session, item, step) is not None:
        return step
    session.add(ChecklistTick(work_item_id=item.id, step_id=step.id, ticked_by_id=actor.id, ticked_at=now))
    state.touch(item, now)
    record_event(session, item, "checklist_ticked", actor,
                 {"step_id": step.id, "step": step.text, "mandatory": step.mandatory}, now=now)
    session.flush()
    return step


def untick(session, item, step_id, *, actor, now=None):
    """Untick a step of the item's checklist; unticking an open step changes nothing. Returns the step."""
    now = now or utcnow()
    require_tickable(actor, item)
    step = _step_of(session, item, step_id)
    existing = _tick_of(session, item, step)
    if existing is None:
        return step
    session.delete(existing)
    state.touch(item, now)
    record_event(session, item, "checklist_unticked", actor,
                 {"step_id": step.id, "step": step.text, "mandatory": step.mandatory}, now=now)
    session.flush()
    return step


def set_ticks(session, item, wanted, *, actor, now=None):
    """Tick (True) or untick (False) several steps of the item's checklist at once, as one person's
    checklist form asks: {step_id: ticked}. All or nothing; returns how many changed."""
    now = now or utcnow()
    require_tickable(actor, item)
    changed = 0
    for step_id, ticked in wanted.items():
        try:
            step = _step_of(session, item, step_id)
        except NotFound:
            raise Invalid(f"the checklist of {item.ref} changed meanwhile; reload the page to see it",
                          {"step": "not on the checklist"}) from None
        already = _tick_of(session, item, step) is not None
        if already != bool(ticked):
            (tick if ticked else untick)(session, item, step.id, actor=actor, now=now)
            changed += 1
    return changed


# --- defining the steps (admins) --------------------------------------------------------------

def get_step(session, step_id):
    step = session.get(ChecklistStep, step_id) if 0 < step_id <= MAX_ID else None
    if step is None:
        raise NotFound("no such checklist step")
    return step


def audited(session, step):
    """What the audit trail records of a step: its team by name."""
    team = session.get(Team, step.team_id)
    return audit.snapshot(step, ("work_type", "position", "text", "mandatory", "active"),
                          team=team.name if team is not None else None)


def save_step(session, step=None, *, actor, team_id, work_type, text, mandatory=True, active=True, now=None):
    """Add (step None: at the end of its list) or change a step; returns it. Admins only."""
    access.require_role(actor, "admin")
    now = now or utcnow()
    text = " ".join((text or "").split())
    if not text:
        raise Invalid("write what the step is", {"text": "is required"})
    if len(text) > MAX_TEXT:
        raise Invalid("the step is too long", {"text": f"at most {MAX_TEXT} characters"})
    if work_type not in TYPES:
        raise Invalid(f"unknown work type {work_type!r}", {"work_type": f"must be one of {', '.join(TYPES)}"})
    if session.get(Team, team_id) is None:
        raise Invalid("no such team", {"team": "no such team"})
    before = audited(session, step) if step is not None else None
    if step is None or (step.team_id, step.work_type) != (team_id, work_type):
        last = session.scalar(sa.select(sa.func.max(ChecklistStep.position))
                              .where(ChecklistStep.team_id == team_id, ChecklistStep.work_type == work_type))
        position = (last or 0) + 1
    else:
        position = step.position
    if step is None:
        step = ChecklistStep(created_at=now)
        session.add(step)
    step.team_id = team_id
    step.work_type = work_type
    step.position = position
    step.text = text
    step.mandatory = bool(mandatory)
    step.active = bool(active)
    step.updated_at = now
    session.flush()
    audit.changed(session, actor, "checklist_step", step, before, audited(session, step), label=text[:120], now=now)
    return step


def move_step(session, step, *, actor, up, now=None):
    """Swap the step with its neighbour above (up) or below in its team and work type's list."""
    access.require_role(actor, "admin")
    now = now or utcnow()
    steps = list(steps_of(session, step.team_id, step.work_type, active_only=False))
    index = steps.index(step)
    other = index - 1 if up else index + 1
    if not 0 <= other < len(steps):
        return step
    steps[index], steps[other] = steps[other], steps[index]
    for position, each in enumerate(steps, start=1):  # renumbered, so equal positions cannot stick
        if each.position != position:
            before = audited(session, each)
            each.position = position
            each.updated_at = now
            session.flush()
            audit.changed(session, actor, "checklist_step", each, before, audited(session, each),
                          label=each.text[:120], now=now)
    return step

