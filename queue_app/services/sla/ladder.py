"""The SLA ladder: the warning, the breach and each escalation level, taken when they fall due.

Invariants:
- Each step of each target happens once per item: it is recorded as an SlaEscalation row
  under a unique constraint, inserted before anything else is done, so a second worker, a
  retry or the sweep loses cleanly.
- An escalation that moves the item to another team goes through the gate
  (services.items.state): the assignee is unassigned, the team change is recorded and the
  SLA is recalculated under the new team's policy; the rest of the ladder follows that policy.
- A timer carrying an old sla_version, or finding nothing due, does nothing (workers.sla_timers).
"""
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from queue_app.models import SlaEscalation, Team, WorkItem
from queue_app.models.base import utcnow
from queue_app.models.work_item import PRIORITIES
from queue_app.services.items import state
from queue_app.services.items.events import record_event
from queue_app.services.people import notifications
from queue_app.services.sla import policies


def _claim_step(session, item, target, stage, kind, level, due_at, now, fired_by):
    """Insert the step's row unless it exists; True if this caller took the step."""
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = insert(SlaEscalation).values(
        work_item_id=item.id, target=target, stage=stage, kind=kind, level=level, due_at=due_at, fired_at=now,
        fired_by=fired_by,
    ).on_conflict_do_nothing(index_elements=["work_item_id", "target", "stage"]).returning(SlaEscalation.id)
    # A returned id means this caller inserted the row (rowcount is -1 here on PostgreSQL/psycopg).
    return session.execute(statement).first() is not None


def _supervisors(item):
    return [u for u in item.team.members if u.role == "supervisor" and u.is_active]


def _notify(session, item, who, subject, body, now, skip=()):
    recipients = {}
    for group in who:
        if group == "assignee" and item.assignee is not None:
            recipients[item.assignee.email] = item.assignee
        elif group == "supervisors":
            recipients.update({u.email: u for u in _supervisors(item)})
    for email in skip:
        recipients.pop(email, None)
    return notifications.notify(session, item, recipients.values(), subject, body, now, kind="sla")


def _raise_priority(item):
    index = PRIORITIES.index(item.priority)
    if index + 1 < len(PRIORITIES):
        item.priority = PRIORITIES[index + 1]
        return True
    return False


def _take_step(session, item, target, stage, kind, level, rung, due, now):
    """Take one step; True when it moved the item to another team."""
    label = target.replace("_", " ")
    data = {"target": target, "level": level, "due": due.isoformat()}
    if kind == "warning":
        if item.sla_state == "on_track":
            item.sla_state = "at_risk"
        data["notified"] = _notify(session, item, ["assignee"], f"[{item.ref}] {label} due soon",
                                   f"The {label} of {item.ref} ({item.subject}) is due at {due:%Y-%m-%d %H:%M} UTC.",
                                   now)
        record_event(session, item, "sla_warning", "sla", data, now=now)
        return False
    item.sla_state = "breached"
    item.escalation_level = max(item.escalation_level or 0, level)
    rung = rung or {}
    if rung.get("raise_priority") and _raise_priority(item):
        data["priority"] = item.priority
    title = "breached" if kind == "breach" else f"escalated to level {level}"
    who = rung.get("notify", ["assignee", "supervisors"])
    subject = f"[{item.ref}] {label} {title}"
    body = f"The {label} of {item.ref} ({item.subject}) was due at {due:%Y-%m-%d %H:%M} UTC and is {title}."
    data["notified"] = _notify(session, item, who, subject, body, now)
    team = _team_to_move_to(session, item, rung)
    if team is not None:
        data["reassigned_from"] = item.team.name
        data["reassigned_to"] = team.name
    record_event(session, item, "sla_breached" if kind == "breach" else "escalated", "sla", data, now=now)
    if team is not None:
        # Through the gate: unassigned, moved (with its event) and the SLA recalculated for the new team.
        state.assign(session, item, None, actor="sla", now=now, check_access=False)
        state.reclassify(session, item, actor="sla", now=now, team=team, data={"reason": f"SLA {title}"})
        # The receiving team's supervisors learn of it too.
        data["notified"] += _notify(session, item, ["supervisors"], subject, body, now, skip=data["notified"])
    return team is not None


def _team_to_move_to(session, item, rung):
    name = rung.get("reassign_to_team")
    if not name:
        return None
    team = session.scalar(sa.select(Team).where(Team.name == name))
    return team if team is not None and team.id != item.team_id else None


def process_due(session, item, now=None, fired_by="timer"):
    """Take every ladder step due by `now`; returns [(target, kind, level)] taken by this call.

    A step another worker took first is skipped and this call stops there, leaving the
    item to the one that won, so two racing workers record each step once. A step that moved
    the item to another team ends the call: its later steps follow the new team's policy.
    """
    now = now or utcnow()
    taken = []
    for target, due in policies.pending_targets(item):
        for stage, at, kind, level, rung in policies.steps(item, target, due):
            if stage <= (policies.stage_of(item, target) or 0) or at > now:
                continue
            if not _claim_step(session, item, target, stage, kind, level, due, now, fired_by):
                return taken
            policies.set_stage(item, target, stage)
            moved = _take_step(session, item, target, stage, kind, level, rung, due, now)
            taken.append((target, kind, level))
            if moved:
                return _done(session, item, taken)
    return _done(session, item, taken)


def _done(session, item, taken):
    policies.refresh(session, item)
    session.flush()
    return taken


def due_item_ids(session, now, limit=500):
    """Items with a ladder step due, most overdue first (an index range scan on sla_next_check_at)."""
    return session.scalars(
        sa.select(WorkItem.id).where(WorkItem.sla_next_check_at <= now)
        .order_by(WorkItem.sla_next_check_at, WorkItem.id).limit(limit)
    ).all()
