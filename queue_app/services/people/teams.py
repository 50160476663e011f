"""Teams as admins configure them: name, address, work types, auto-assign policy, approval
threshold, business calendar and whether executives may pass items to a colleague. Memberships
are edited on the person (services.people.users).

Invariants: everything is checked before anything changes (Invalid names the field); a new
calendar changes due times of the team's open items, so their recalculation is queued after
commit, as for `flask sla load`; every change is recorded in the audit trail (services.audit).
"""
from decimal import Decimal, InvalidOperation

import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from queue_app.db.outbox import enqueue_after_commit
from queue_app.models import Calendar, Team
from queue_app.models.team import AUTO_ASSIGN_POLICIES
from queue_app.models.work_item import TYPES
from queue_app.services.audit import record as audit
from queue_app.services.errors import Invalid
from queue_app.services.people.users import normalise_email

MAX_NAME = 120
MAX_THRESHOLD = Decimal("999999999999.99")
MAX_APPROVAL_DUE_MINUTES = 60 * 24 * 30  # a month of round-the-clock minutes
RECALCULATE_JOB = "workers.sla_timers.recalculate_open_items"


def list_teams(session):
    return session.scalars(sa.select(Team).options(selectinload(Team.members), selectinload(Team.calendar))
                           .order_by(Team.name)).all()


def parse_threshold(value):
    """An amount (text, number or None) as a Decimal with two places, or None; raises Invalid."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise Invalid("invalid approval threshold", {"approval_threshold": "not an amount"}) from None
    if not amount.is_finite() or amount < 0 or amount > MAX_THRESHOLD:
        raise Invalid("invalid approval threshold",
                      {"approval_threshold": f"an amount from 0 to {MAX_THRESHOLD:,}"})
    return amount.quantize(Decimal("0.01"))


def settings_of(session, team):
    """What the audit trail records of a team."""
    calendar = session.get(Calendar, team.calendar_id) if team.calendar_id is not None else None
    return audit.snapshot(team, ("name", "email", "work_types", "auto_assign", "approval_threshold",
                                 "approval_due_minutes", "auto_close_days", "executives_may_pass"),
                          calendar=calendar.name if calendar is not None else None)


def save_team(session, team=None, *, name, email=None, work_types=(), auto_assign="manual",
              approval_threshold=None, calendar_id=None, approval_due_minutes=None, auto_close_days=None,
              executives_may_pass=False, actor=None):
    """Create (team None) or update a team; returns it."""
    errors = {}
    name = (name or "").strip()
    if not name:
        errors["name"] = "is required"
    elif len(name) > MAX_NAME:
        errors["name"] = f"at most {MAX_NAME} characters"
    elif session.scalar(sa.select(Team.id).where(Team.name == name, Team.id != (team.id if team else -1))):
        errors["name"] = "another team has this name"
    if email:
        try:
            email = normalise_email(email)
        except Invalid as exc:
            errors["email"] = exc.fields.get("email", exc.message)
    unknown = [t for t in work_types if t not in TYPES]
    if unknown:
        errors["work_types"] = f"unknown work types: {', '.join(map(str, unknown))}"
    if auto_assign not in AUTO_ASSIGN_POLICIES:
        errors["auto_assign"] = f"must be one of {', '.join(AUTO_ASSIGN_POLICIES)}"
    try:
        threshold = parse_threshold(approval_threshold)
    except Invalid as exc:
        errors.update(exc.fields)
    if calendar_id is not None and session.get(Calendar, calendar_id) is None:
        errors["calendar"] = "no such calendar"
    if approval_due_minutes is not None and not (isinstance(approval_due_minutes, int)
                                                 and 0 < approval_due_minutes <= MAX_APPROVAL_DUE_MINUTES):
        errors["approval_due_minutes"] = f"a whole number of minutes from 1 to {MAX_APPROVAL_DUE_MINUTES:,}"
    if auto_close_days is not None and not (isinstance(auto_close_days, int) and 0 < auto_close_days <= 365):
        errors["auto_close_days"] = "a whole number of days from 1 to 365"
    if errors:
        raise Invalid("the team was not saved", errors)
    before = settings_of(session, team) if team is not None else None
    if team is None:
        team = Team()
        session.add(team)
    calendar_changed = team.id is not None and team.calendar_id != calendar_id
    team.name = name
    team.email = email or None
    team.work_types = [t for t in TYPES if t in work_types]
    team.auto_assign = auto_assign
    team.approval_threshold = threshold
    team.calendar_id = calendar_id
    team.approval_due_minutes = approval_due_minutes
    team.auto_close_days = auto_close_days
    team.executives_may_pass = bool(executives_may_pass)
    session.flush()
    audit.changed(session, actor, "team", team, before, settings_of(session, team), label=team.name)
    if calendar_changed:
        enqueue_after_commit(session, RECALCULATE_JOB)
    return team
