"""SLA calendars and policies edited through forms, with exactly the rules of `flask sla load`.

A form's values are turned into the dict a configuration file parses to and handed to
services.sla.config.load_config, so a form can never store what the file would refuse, and
the recalculation of open items is queued after commit whenever something changed. Renaming
is the one thing a file cannot say (it matches records by name), so it happens first and the
rest goes through load_config under the new name; the caller rolls back on Invalid.
Error paths of load_config ("calendars[0].hours.mon[1]") come back keyed by form field.
Every change reaches the audit trail with the actor: load_config records what it writes, and a
rename or a policy switched off or on is recorded here.
"""
import json
import re

import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from queue_app.db.outbox import enqueue_after_commit
from queue_app.models import Calendar, SlaPolicy, Team
from queue_app.models.calendar import WEEKDAYS
from queue_app.services.audit import record as audit
from queue_app.services.errors import Invalid
from queue_app.services.sla import config as sla_config

_SEPARATORS = re.compile(r"[\s,;]+")
RECALCULATE_JOB = "workers.sla_timers.recalculate_open_items"
MAX_TARGET_MINUTES = sla_config.MAX_TARGET_MINUTES


def list_calendars(session):
    return session.scalars(sa.select(Calendar).order_by(Calendar.name)).all()


def list_policies(session):
    return session.scalars(sa.select(SlaPolicy).options(selectinload(SlaPolicy.team), selectinload(SlaPolicy.calendar))
                           .order_by(SlaPolicy.active.desc(), SlaPolicy.name)).all()


def split_list(text):
    """'09:00-12:00, 13:00-17:00' or one per line -> ['09:00-12:00', '13:00-17:00']."""
    return [part for part in _SEPARATORS.split(text or "") if part]


def _field_errors(exc, prefix, mapping):
    """load_config's path -> message, re-keyed by form field (the first error of a field wins)."""
    fields = {}
    for path, message in exc.fields.items():
        rest = path[len(prefix):].lstrip(".") if path.startswith(prefix) else path
        key = rest
        for pattern, field in mapping:
            if re.match(pattern, rest):
                key = field(rest) if callable(field) else field
                break
        fields.setdefault(key, message)
    return Invalid(exc.message, fields)


_CALENDAR_FIELDS = [
    (r"hours\.(mon|tue|wed|thu|fri|sat|sun)", lambda rest: "hours_" + rest[6:9]),
    (r"hours$", "hours_mon"),
    (r"holidays\.subdivision", "holiday_subdivision"),
    (r"holidays", "holiday_country"),
    (r"closed_dates", "closed_dates"),
]


def _rename(session, model, record, name, actor):
    if record is None or record.name == name or not name:
        return
    if session.scalar(sa.select(model.id).where(model.name == name)) is not None:
        kind = "calendar" if model is Calendar else "policy"
        raise Invalid("the name is taken", {"name": f"another {kind} has this name"})
    before = {"name": record.name}
    record.name = name
    session.flush()
    audit.changed(session, actor, "calendar" if model is Calendar else "sla_policy", record, before, {"name": name})


def save_calendar(session, calendar=None, *, name, timezone, hours, holiday_country=None, holiday_subdivision=None,
                  closed_dates=(), actor=None):
    """Create or update a calendar. `hours` maps mon..sun to interval texts (list or "a, b" text)."""
    name = (name or "").strip()
    week = {}
    for day in WEEKDAYS:
        value = hours.get(day)
        week[day] = split_list(value) if isinstance(value, str) else list(value or [])
    entry = {"name": name, "timezone": (timezone or "").strip(), "hours": week}
    if (holiday_country or "").strip():
        entry["holidays"] = {"country": holiday_country.strip()}
        if (holiday_subdivision or "").strip():
            entry["holidays"]["subdivision"] = holiday_subdivision.strip()
    elif (holiday_subdivision or "").strip():
        raise Invalid("the calendar was not saved", {"holiday_country": "required with a subdivision"})
    dates = split_list(closed_dates) if isinstance(closed_dates, str) else list(closed_dates)
    if dates:
        entry["closed_dates"] = dates
    _rename(session, Calendar, calendar, name, actor)
    try:
        sla_config.load_config(session, {"calendars": [entry]}, actor=actor)
    except Invalid as exc:
        raise _field_errors(exc, "calendars[0]", _CALENDAR_FIELDS) from None
    return session.scalar(sa.select(Calendar).where(Calendar.name == name))


_POLICY_FIELDS = [
    (r"match\.type", "match_type"), (r"match\.priority", "match_priority"), (r"match\.team", "match_team"),
    (r"pause_statuses", "pause_statuses"), (r"escalation", "escalation"),
]


def parse_escalation(text):
    """The escalation ladder from its JSON text ('' is no ladder); raises Invalid on bad JSON."""
    if not (text or "").strip():
        return []
    try:
        return json.loads(text)
    except ValueError as exc:
        raise Invalid("the policy was not saved", {"escalation": f"not valid JSON ({exc.msg} at line {exc.lineno})"}) \
            from None


def save_policy(session, policy=None, *, name, match_type=None, match_priority=None, match_team=None, calendar=None,
                first_response_minutes, resolution_minutes, warn_at_percent=sla_config.DEFAULT_WARN_PERCENT,
                pause_statuses=None, escalation=None, actor=None):
    """Create or update a policy (and make it active). Team and calendar are given by name."""
    name = (name or "").strip()
    too_long = {key: f"at most {MAX_TARGET_MINUTES:,} minutes (ten years)" for key, value in
                (("first_response_minutes", first_response_minutes), ("resolution_minutes", resolution_minutes))
                if isinstance(value, int) and value > MAX_TARGET_MINUTES}
    if too_long:  # the database column would overflow; load_config checks the rest
        raise Invalid("the policy was not saved", too_long)
    entry = {"name": name, "first_response_minutes": first_response_minutes,
             "resolution_minutes": resolution_minutes, "warn_at_percent": warn_at_percent,
             "pause_statuses": list(pause_statuses or []), "escalation": escalation if escalation is not None else []}
    match = {key: value for key, value in (("type", match_type), ("priority", match_priority), ("team", match_team))
             if value}
    if match:
        entry["match"] = match
    if calendar:
        entry["calendar"] = calendar
    _rename(session, SlaPolicy, policy, name, actor)
    try:
        sla_config.load_config(session, {"policies": [entry]}, actor=actor)
    except Invalid as exc:
        raise _field_errors(exc, "policies[0]", _POLICY_FIELDS) from None
    return session.scalar(sa.select(SlaPolicy).where(SlaPolicy.name == name))


def set_policy_active(session, policy, active, *, actor=None):
    """Switch a policy off (or on again); open items are recalculated after commit."""
    if bool(policy.active) == bool(active):
        return policy
    policy.active = bool(active)
    session.flush()
    audit.changed(session, actor, "sla_policy", policy, {"active": not policy.active}, {"active": policy.active})
    enqueue_after_commit(session, RECALCULATE_JOB)
    return policy


def team_names(session):
    return list(session.scalars(sa.select(Team.name).order_by(Team.name)))
