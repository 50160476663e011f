"""A pending approval has a due time: its checkers are warned before it and told when it passed.

The due time is the team's approval_due_minutes of business time (over the team's calendar)
after the request; the warning comes at WARN_PERCENT of it. Each notice goes out once:
warned_at and overdue_at are claimed with a conditional UPDATE, so a timer delivered twice,
a retry or the sweep sends nothing again, and a decided approval's timers do nothing.
Timers are jobs through the outbox, run at their instant (workers.approvals); the scheduler's
sweep finds whatever the timers missed.
"""
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm.attributes import set_committed_value

from queue_app.db.outbox import enqueue_after_commit
from queue_app.models import Approval, User, team_checkers
from queue_app.models.base import utcnow
from queue_app.services.items.events import record_event
from queue_app.services.people import notifications
from queue_app.services.sla import clock

REMIND_JOB = "workers.approvals.remind"
WARN_PERCENT = 75


def schedule(session, item, approval, now):
    """Give a new approval its due time and its two timers (none when the team sets no due time)."""
    minutes = item.team.approval_due_minutes if item.team is not None else None
    if not minutes:
        return
    calendar = item.team.calendar
    approval.due_at = clock.add_business_minutes(calendar, now, minutes)
    warn_at = clock.add_business_minutes(calendar, now, minutes * WARN_PERCENT / 100)
    approval.data = {**(approval.data or {}), "warn_at": warn_at.isoformat()}
    session.flush()
    for at in (warn_at, approval.due_at):
        enqueue_after_commit(session, REMIND_JOB, approval.id, run_at=at)


def remind(session, approval_id, now=None):
    """Send the notices of this approval that are due by `now`; returns ["warning", "overdue"] sent."""
    now = now or utcnow()
    approval = session.get(Approval, approval_id)
    if approval is None or approval.status != "pending" or approval.due_at is None:
        return []
    item = approval.work_item
    warn_at = datetime.fromisoformat(approval.data["warn_at"]) if (approval.data or {}).get("warn_at") \
        else approval.due_at
    due = f"{approval.due_at:%Y-%m-%d %H:%M} UTC"
    notices = (
        ("warning", warn_at, "warned_at", "approval_due_soon", "approval due soon",
         f"{item.ref} ({item.subject}) waits for a checker's decision, due at {due}."),
        ("overdue", approval.due_at, "overdue_at", "approval_overdue", "approval overdue",
         f"{item.ref} ({item.subject}) has waited for a checker since {due}."),
    )
    sent = []
    for name, at, column, event, subject, body in notices:
        if now >= at and getattr(approval, column) is None and _claim(session, approval, column, now):
            told = notifications.notify(session, item, checkers(session, item, approval), f"[{item.ref}] {subject}",
                                        body, now, kind="approval")
            record_event(session, item, event, "approvals",
                         {"approval_id": approval.id, "due": approval.due_at.isoformat(), "notified": told}, now=now)
            sent.append(name)
    session.flush()
    return sent


def _claim(session, approval, column, now):
    """Set the notice's column unless someone set it first; True if this caller did."""
    table = Approval.__table__
    done = session.execute(sa.update(table).where(table.c.id == approval.id, table.c[column].is_(None))
                           .values({column: now})).rowcount == 1
    if done:
        set_committed_value(approval, column, now)
    return done


def checkers(session, item, approval):
    """Who may decide: the team's active supervisors and its designated checkers, never the maker."""
    designated = sa.select(team_checkers.c.user_id).where(team_checkers.c.team_id == item.team_id)
    people = [u for u in item.team.members if u.is_active and u.role == "supervisor"]
    people += session.scalars(sa.select(User).where(User.id.in_(designated), User.is_active_user.is_(True))).all()
    return [u for u in people if u.id != approval.requested_by_id]


def overdue_ids(session, now, limit=200):
    """Pending approvals whose due time passed without their overdue notice (the sweep's work)."""
    return session.scalars(sa.select(Approval.id).where(Approval.status == "pending", Approval.due_at <= now,
                                                        Approval.overdue_at.is_(None))
                           .order_by(Approval.due_at).limit(limit)).all()
