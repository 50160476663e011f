"""Closing resolved items a team no longer expects to hear about: `auto_close_days` after an item
was resolved, if nobody reopened it, the scheduler closes it through the gate (an event says so).
A reply from the customer before then reopens the item as usual (services.intake.filing)."""
from datetime import timedelta

import sqlalchemy as sa

from queue_app.models import Team, WorkItem
from queue_app.models.base import utcnow
from queue_app.services.items import state


def due_for_closing(session, now=None, limit=500):
    """Ids of resolved items whose team's auto-close days have passed, oldest resolution first."""
    now = now or utcnow()
    due = []
    for team_id, days in session.execute(sa.select(Team.id, Team.auto_close_days)
                                         .where(Team.auto_close_days.is_not(None)).order_by(Team.id)):
        due += session.scalars(
            sa.select(WorkItem.id).where(WorkItem.team_id == team_id, WorkItem.status == "resolved",
                                         WorkItem.resolved_at <= now - timedelta(days=days))
            .order_by(WorkItem.resolved_at, WorkItem.id).limit(limit - len(due))).all()
        if len(due) >= limit:
            break
    return due


def close_if_due(session, item_id, now=None):
    """Close one item if it is still resolved and due; True if it did. The caller commits."""
    now = now or utcnow()
    item = session.get(WorkItem, item_id)
    if item is None or item.status != "resolved" or item.team.auto_close_days is None:
        return False
    days = item.team.auto_close_days
    if item.resolved_at is None or item.resolved_at > now - timedelta(days=days):
        return False
    state.change_status(session, item, "closed", actor="scheduler", now=now, check_access=False,
                        comment=f"closed automatically {days} days after it was resolved")
    return True
