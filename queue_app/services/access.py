"""Authorization: the one place that says who may see and do what.

Rules:
- admin: everything.
- supervisor: sees and manages the items of the teams they belong to.
- executive: sees the items of their teams; works (replies, status) on items assigned
  to them; may take an unassigned item of their team; adds notes to any item they see.
- service (a partner system's account, API only): files new items for the teams named on it
  and reads the items it filed; nothing else, on any path.
Items a user may not see are reported as not found, so references cannot be probed.
"""
import sqlalchemy as sa

from queue_app.models import WorkItem
from queue_app.services.errors import NotFound, PermissionDenied


def can_view(user, item):
    if user.is_service:
        return item.created_by_id is not None and item.created_by_id == user.id
    return user.role == "admin" or item.team_id in user.team_ids


def manages_team(user, team_id):
    return user.role == "admin" or (user.role == "supervisor" and team_id in user.team_ids)


def require_view(user, item):
    if item is None or not can_view(user, item):
        raise NotFound("no such work item")


def require_change(user, item):
    """Anything that changes a visible item (a note, a file, a check run, a decision, ...)."""
    require_view(user, item)
    if user.is_service:
        raise PermissionDenied("a service account can only create items and read the ones it created")


def require_file(user, team_id, source):
    """May `user` file a new item for the team? API clients file for their own teams; the
    front-office form may file for any; a service account for the teams named on it."""
    if user is None:
        return
    if user.is_service:
        if team_id not in {t.id for t in user.intake_teams}:
            raise PermissionDenied("this service account cannot create items for that team")
        return
    if user.role != "admin" and team_id not in user.team_ids and source != "form":
        require_manage_team(user, team_id)


def require_work(user, item):
    require_change(user, item)
    if manages_team(user, item.team_id) or item.assignee_id == user.id:
        return
    raise PermissionDenied("only the assignee or a supervisor of the team can do this")


def require_assign(user, item, assignee):
    require_change(user, item)
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
    if user.is_service:
        return WorkItem.created_by_id == user.id
    if user.role == "admin":
        return sa.true()
    team_ids = list(user.team_ids)
    if not team_ids:
        return sa.false()
    return WorkItem.team_id.in_(team_ids)
