"""Authorization: the one place that says who may see and do what.

Rules:
- admin: everything.
- supervisor: sees and manages the items of the teams they belong to.
- executive: sees the items of their teams; works (replies, status) on items assigned
  to them; may take an unassigned item of their team; adds notes to any item they see.
Items a user may not see are reported as not found, so references cannot be probed.
"""
import sqlalchemy as sa

from queue_app.models import WorkItem
from queue_app.services.errors import NotFound, PermissionDenied


def can_view(user, item):
    return user.role == "admin" or item.team_id in user.team_ids


def manages_team(user, team_id):
    return user.role == "admin" or (user.role == "supervisor" and team_id in user.team_ids)


def require_view(user, item):
    if item is None or not can_view(user, item):
        raise NotFound("no such work item")


def require_work(user, item):
    require_view(user, item)
    if manages_team(user, item.team_id) or item.assignee_id == user.id:
        return
    raise PermissionDenied("only the assignee or a supervisor of the team can do this")


def require_assign(user, item, assignee):
    require_view(user, item)
    if manages_team(user, item.team_id):
        return
    if assignee is not None and assignee.id == user.id and item.assignee_id is None:
        return  # an executive taking an unassigned item of their team
    raise PermissionDenied("only a supervisor of the team can assign this item")


def require_manage_team(user, team_id):
    if not manages_team(user, team_id):
        raise PermissionDenied("only a supervisor of this team can do this")


def require_role(user, *roles):
    if user.role not in roles:
        raise PermissionDenied(f"this needs the role {' or '.join(roles)}")


def visible_items(user):
    """A filter clause for the items the user may see (use in every list query)."""
    if user.role == "admin":
        return sa.true()
    team_ids = list(user.team_ids)
    if not team_ids:
        return sa.false()
    return WorkItem.team_id.in_(team_ids)
