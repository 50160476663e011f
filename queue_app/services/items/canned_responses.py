"""Canned responses: reply texts an executive inserts into a reply and edits before sending.

A response belongs to one team, or to every team when its team is None (only admins keep
those). Supervisors manage their own teams' responses; admins manage all of them.

Placeholders are written in single braces, e.g. ``Dear {requester_name},``. The set is fixed
(PLACEHOLDERS below); saving a text with any other ``{...}`` is refused, so a typo is caught
when the response is written, not when a customer reads it. Rendering is a plain one-pass
text substitution of those names: no template engine, no attribute or index access, and a
substituted value is never looked at again. Anything that is not a known placeholder (old
data, ``{{7*7}}``, ``{requester_name.__class__}``) is left exactly as written.

``{due_date}`` is the resolution deadline's date in the team's calendar time zone (UTC when
the team has no calendar): the requester reads it, and the team's working calendar is the
one the deadline was counted in, so it is the same date the team works towards, whatever
zone the executive sits in.

Every response created, changed or deleted is recorded in the audit trail (services.audit).
"""
import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from queue_app.models import CannedResponse, Team
from queue_app.models.base import utcnow
from queue_app.services import access
from queue_app.services.audit import record as audit
from queue_app.services.errors import Invalid, NotFound, PermissionDenied

MAX_TITLE = 120
MAX_BODY = 20_000

PLACEHOLDERS = {
    "reference": "the item's reference, e.g. BO-000123",
    "subject": "the item's subject",
    "requester_name": "the requester's name (\"customer\" when unknown)",
    "requester_email": "the requester's email address",
    "executive_name": "the name of the person sending the reply",
    "team": "the item's team",
    "due_date": "the resolution deadline's date in the team's calendar time zone, e.g. 2 December 2026",
}
# Any brace pair with no brace inside: a placeholder if its name is in PLACEHOLDERS.
_TOKEN = re.compile(r"\{([^{}\n]{0,60})\}")


def unknown_placeholders(body):
    """The ``{...}`` names in a text that are not placeholders, in order of appearance, once each."""
    seen = []
    for match in _TOKEN.finditer(body or ""):
        name = match.group(1)
        if name not in PLACEHOLDERS and name not in seen:
            seen.append(name)
    return seen


def _due_date(item):
    if item.resolution_due is None:
        return ""
    zone_name = item.team.calendar.timezone if item.team is not None and item.team.calendar is not None else "UTC"
    try:
        zone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    local = item.resolution_due.astimezone(zone)
    return f"{local.day} {local.strftime('%B %Y')}"


def values_for(item, executive):
    """The text each placeholder stands for on this item, sent by this person."""
    return {
        "reference": item.ref or "",
        "subject": item.subject or "",
        "requester_name": (item.requester_name or "").strip() or "customer",
        "requester_email": item.requester_email or "",
        "executive_name": executive.name if executive is not None else "",
        "team": item.team.name if item.team is not None else "",
        "due_date": _due_date(item),
    }


def render(body, item, executive):
    """The text with its placeholders filled in for the item; everything else exactly as written."""
    values = values_for(item, executive)

    def fill(match):
        name = match.group(1)
        return values[name] if name in values else match.group(0)

    return _TOKEN.sub(fill, body or "")


# --- reading -------------------------------------------------------------------------------------

def list_for_item(session, item):
    """The active responses an executive may use on the item: its team's and the global ones."""
    return session.scalars(
        sa.select(CannedResponse)
        .where(CannedResponse.active.is_(True),
               sa.or_(CannedResponse.team_id == item.team_id, CannedResponse.team_id.is_(None)))
        .order_by(CannedResponse.title, CannedResponse.id)).all()


def get_for_item(session, item, response_id):
    """One response usable on the item; any other id (another team's, inactive, missing) is not found."""
    response = session.get(CannedResponse, response_id) if isinstance(response_id, int) else None
    if response is None or not response.active or response.team_id not in (None, item.team_id):
        raise NotFound("no such canned response for this item")
    return response


def may_manage(user, response):
    """Admins manage every response; supervisors those of their own teams (never the global ones)."""
    if user.role == "admin":
        return True
    return response.team_id is not None and access.manages_team(user, response.team_id)


def list_manageable(session, user):
    """The responses the user may edit: all for an admin, their teams' for a supervisor, none otherwise."""
    query = sa.select(CannedResponse).options(selectinload(CannedResponse.team))
    if user.role != "admin":
        team_ids = sorted(user.team_ids) if user.role == "supervisor" else []
        if not team_ids:
            return []
        query = query.where(CannedResponse.team_id.in_(team_ids))
    return session.scalars(query.order_by(CannedResponse.team_id.is_not(None), CannedResponse.team_id,
                                          CannedResponse.title, CannedResponse.id)).all()


def get_manageable(session, user, response_id):
    """A response the user may edit; one they may not is reported as not found (ids cannot be probed)."""
    response = session.get(CannedResponse, response_id)
    if response is None or not may_manage(user, response):
        raise NotFound("no such canned response")
    return response


def require_management_role(user):
    access.require_role(user, "supervisor", "admin")


# --- writing -------------------------------------------------------------------------------------

def validate(title, body):
    """Cleaned (title, body); Invalid naming each field that is wrong."""
    errors = {}
    title = (title or "").strip()
    body = (body or "").replace("\r\n", "\n").strip()
    if not title:
        errors["title"] = "is required"
    elif len(title) > MAX_TITLE:
        errors["title"] = f"at most {MAX_TITLE} characters"
    if not body:
        errors["body"] = "is required"
    elif len(body) > MAX_BODY:
        errors["body"] = f"at most {MAX_BODY:,} characters"
    else:
        unknown = unknown_placeholders(body)
        if unknown:
            shown = ", ".join("{" + name + "}" for name in unknown[:5])
            errors["body"] = (f"unknown placeholder{'s' if len(unknown) > 1 else ''} {shown}; use only "
                              + ", ".join("{" + name + "}" for name in PLACEHOLDERS))
    if any("\x00" in value for value in (title, body)):
        errors.setdefault("body", "contains a character that is not allowed")
    if errors:
        raise Invalid("the canned response is not valid", errors)
    return title, body


def _check_team(actor, team_id):
    if team_id is None:
        if actor.role != "admin":
            raise PermissionDenied("only an admin can make a response for every team")
        return
    if not access.manages_team(actor, team_id):
        raise PermissionDenied("only a supervisor of this team can keep its responses")


def audited(session, response):
    """What the audit trail records of a response: its team by name."""
    team = session.get(Team, response.team_id) if response.team_id is not None else None
    return audit.snapshot(response, ("title", "body", "active"), team=team.name if team is not None else "(all teams)")


def save(session, response=None, *, actor, title, body, team_id, active=True, now=None):
    """Create (response None) or update a response; returns it. Checks the actor may keep it for that team."""
    require_management_role(actor)
    if response is not None and not may_manage(actor, response):
        raise NotFound("no such canned response")
    title, body = validate(title, body)
    _check_team(actor, team_id)
    now = now or utcnow()
    before = audited(session, response) if response is not None else None
    if response is None:
        response = CannedResponse(created_by_id=actor.id, created_at=now)
        session.add(response)
    response.title = title
    response.body = body
    response.team_id = team_id
    response.active = bool(active)
    response.updated_at = now
    session.flush()
    audit.changed(session, actor, "canned_response", response, before, audited(session, response), now=now)
    return response


def delete(session, response, *, actor):
    if not may_manage(actor, response):
        raise NotFound("no such canned response")
    before = audited(session, response)
    session.delete(response)
    session.flush()
    audit.changed(session, actor, "canned_response", response, before, None)
