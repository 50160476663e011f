"""SLA configuration as code: calendars and policies loaded from / exported to a plain dict.

The dict is what a YAML or JSON file parses to (see `flask sla load|export`):

    calendars: [{name, timezone, hours, holidays?: {country, subdivision?}, closed_dates?}]
    policies:  [{name, match?: {type?, priority?, team?}, calendar?, first_response_minutes,
                 resolution_minutes, warn_at_percent?, pause_statuses?, approval_wait?, escalation?}]

Rules, chosen so that a file can be the source of truth and be applied repeatedly:
- Records are matched by name and upserted; records missing from the file are left alone.
- The file describes the whole record: an optional key left out takes its default
  (no holidays, no closed dates, warn at 75%, the default pause statuses, no escalation,
  match anything), so deleting a line from the file really removes that setting.
- Everything is validated before anything is written; errors are reported per path
  ("calendars[0].hours.mon[1]") and unknown keys are errors, so typos do not pass silently.
- Values are compared after normalising, so loading the same data twice writes nothing.
- A policy named in the file is active; export lists active policies only, so that
  export -> load is a no-op.
- Each record created or changed is recorded in the audit trail (services.audit.record) with
  its values before and after (calendars and teams by name).
"""
from datetime import date, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays
import sqlalchemy as sa

from queue_app.db.outbox import enqueue_after_commit
from queue_app.models import Calendar, SlaPolicy, Team
from queue_app.models.calendar import WEEKDAYS, round_the_clock_hours
from queue_app.models.sla_policy import APPROVAL_WAITS, DEFAULT_PAUSE_STATUSES
from queue_app.models.work_item import PRIORITIES, STATUSES, TYPES
from queue_app.services.audit import record as audit
from queue_app.services.errors import Invalid
from queue_app.services.sla import clock

DEFAULT_WARN_PERCENT = 75
NAME_MAX = 120
# A target longer than this is a typo, and due times beyond it would overflow date arithmetic.
MAX_TARGET_MINUTES = 10 * 366 * 24 * 60
ROOT = "(root)"

TOP_KEYS = {"calendars", "policies"}
CALENDAR_KEYS = {"name", "timezone", "hours", "holidays", "closed_dates"}
CALENDAR_REQUIRED = ("name", "timezone", "hours")
HOLIDAY_KEYS = {"country", "subdivision"}
POLICY_KEYS = {"name", "match", "calendar", "first_response_minutes", "resolution_minutes", "warn_at_percent",
               "pause_statuses", "approval_wait", "escalation"}
POLICY_REQUIRED = ("name", "first_response_minutes", "resolution_minutes")
MATCH_KEYS = {"type", "priority", "team"}


AUDIT_KINDS = {"calendars": "calendar", "policies": "sla_policy"}


def load_config(session, data, *, actor=None):
    """Validate `data` whole, then upsert its calendars and policies by name; returns counts.

    Raises Invalid (fields: path -> message) without writing anything when any part is bad.
    Flushes but does not commit: the caller owns the transaction.
    """
    errors = {}
    calendars, policies = _validate(session, data, errors)
    if errors:
        raise Invalid("the SLA configuration is invalid", fields=errors)

    summary = {"calendars_created": 0, "calendars_updated": 0, "policies_created": 0, "policies_updated": 0,
               "unchanged": 0}
    changes = []  # (kind, record, its state before or None), for the audit trail
    by_name = {c.name: c for c in session.scalars(sa.select(Calendar))}
    for values in calendars:
        _upsert(session, Calendar, by_name, values, _calendar_state, "calendars", summary, changes)
    session.flush()

    teams = {t.name: t.id for t in session.scalars(sa.select(Team))}
    existing = {p.name: p for p in session.scalars(sa.select(SlaPolicy))}
    for values in policies:
        values = dict(values)
        calendar = values.pop("calendar")
        values["calendar_id"] = by_name[calendar].id if calendar else None
        team = values.pop("match_team")
        values["match_team_id"] = teams[team] if team else None
        _upsert(session, SlaPolicy, existing, values, _policy_state, "policies", summary, changes)
    session.flush()
    calendar_names = {c.id: c.name for c in by_name.values()}
    team_names = {team_id: name for name, team_id in teams.items()}
    for kind, record, before in changes:
        state = _calendar_state if kind == "calendars" else _policy_state
        audit.changed(session, actor, AUDIT_KINDS[kind], record,
                      before and _readable(before, calendar_names, team_names),
                      _readable(state(record), calendar_names, team_names))
    if any(count for key, count in summary.items() if key != "unchanged"):
        # Open items may now match another policy or calendar: re-derive their due times.
        enqueue_after_commit(session, "workers.sla_timers.recalculate_open_items")
    return summary


def export_config(session):
    """All calendars and the active policies, in the shape load_config takes."""
    calendars = []
    for cal in session.scalars(sa.select(Calendar).order_by(Calendar.name)):
        out = {"name": cal.name, "timezone": cal.timezone or "UTC", "hours": _normal_hours(cal.hours)}
        if cal.holiday_country:
            out["holidays"] = {"country": cal.holiday_country}
            if cal.holiday_subdivision:
                out["holidays"]["subdivision"] = cal.holiday_subdivision
        if cal.closed_dates:
            out["closed_dates"] = [_iso(d) for d in cal.closed_dates]
        calendars.append(out)

    policies = []
    for pol in session.scalars(sa.select(SlaPolicy).where(SlaPolicy.active.is_(True)).order_by(SlaPolicy.name)):
        out = {"name": pol.name}
        match = {}
        if pol.match_type is not None:
            match["type"] = pol.match_type
        if pol.match_priority is not None:
            match["priority"] = pol.match_priority
        if pol.team is not None:
            match["team"] = pol.team.name
        if match:
            out["match"] = match
        if pol.calendar is not None:
            out["calendar"] = pol.calendar.name
        out["first_response_minutes"] = pol.first_response_minutes
        out["resolution_minutes"] = pol.resolution_minutes
        out["warn_at_percent"] = pol.warn_at_percent
        out["pause_statuses"] = list(pol.pause_statuses or [])
        out["approval_wait"] = pol.approval_wait
        out["escalation"] = list(pol.escalation or [])
        policies.append(out)
    return {"calendars": calendars, "policies": policies}


# -- writing ---------------------------------------------------------------------------

def _upsert(session, model, existing, values, state, kind, summary, changes):
    record = existing.get(values["name"])
    if record is None:
        record = model(**values)
        session.add(record)
        existing[record.name] = record
        summary[f"{kind}_created"] += 1
        changes.append((kind, record, None))
    elif state(record) != values:
        changes.append((kind, record, state(record)))
        for key, value in values.items():
            setattr(record, key, value)
        summary[f"{kind}_updated"] += 1
    else:
        summary["unchanged"] += 1


def _readable(state, calendar_names, team_names):
    """A record's state for the audit trail: its calendar and team by name rather than id."""
    values = dict(state)
    if "calendar_id" in values:
        values["calendar"] = calendar_names.get(values.pop("calendar_id"))
    if "match_team_id" in values:
        values["match_team"] = team_names.get(values.pop("match_team_id"))
    return values


def _calendar_state(cal):
    """A stored calendar in the normalised form the validator produces, for comparison."""
    return {
        "name": cal.name,
        "timezone": cal.timezone or "UTC",
        "hours": _normal_hours(cal.hours),
        "holiday_country": cal.holiday_country or None,
        "holiday_subdivision": cal.holiday_subdivision or None,
        "closed_dates": [_iso(d) for d in (cal.closed_dates or [])],
    }


def _policy_state(pol):
    return {
        "name": pol.name,
        "match_type": pol.match_type,
        "match_priority": pol.match_priority,
        "match_team_id": pol.match_team_id,
        "calendar_id": pol.calendar_id,
        "first_response_minutes": pol.first_response_minutes,
        "resolution_minutes": pol.resolution_minutes,
        "warn_at_percent": pol.warn_at_percent,
        "pause_statuses": list(pol.pause_statuses or []),
        "approval_wait": pol.approval_wait,
        "escalation": list(pol.escalation or []),
        "active": bool(pol.active),
    }


def _normal_hours(hours):
    """All seven days, in order, a missing day as []; stored None means round the clock."""
    if hours is None:
        return round_the_clock_hours()
    return {day: list(hours.get(day) or []) for day in WEEKDAYS}


def _iso(value):
    return value.isoformat() if isinstance(value, date) else value


# -- validation ------------------------------------------------------------------------

def _validate(session, data, errors):
    """Normalised values for each calendar and policy; problems go into `errors`."""
    if not isinstance(data, dict):
        errors[ROOT] = "expected a mapping with 'calendars' and/or 'policies'"
        return [], []
    _unknown_keys(data, TOP_KEYS, "", errors)
    cal_items = _list_of_objects(data.get("calendars", []), "calendars", errors)
    pol_items = _list_of_objects(data.get("policies", []), "policies", errors)

    calendars = []
    seen = set()
    for i, raw in cal_items:
        values = _validate_calendar(raw, f"calendars[{i}]", errors)
        name = values.get("name")
        if name in seen:
            errors[f"calendars[{i}].name"] = f"calendar {name!r} appears more than once"
        elif name is not None:
            seen.add(name)
        calendars.append(values)

    known_calendars = seen | set(session.scalars(sa.select(Calendar.name)))
    known_teams = set(session.scalars(sa.select(Team.name)))
    policies = []
    seen = set()
    for i, raw in pol_items:
        values = _validate_policy(raw, f"policies[{i}]", known_calendars, known_teams, errors)
        name = values.get("name")
        if name in seen:
            errors[f"policies[{i}].name"] = f"policy {name!r} appears more than once"
        elif name is not None:
            seen.add(name)
        policies.append(values)
    return calendars, policies


def _validate_calendar(raw, path, errors):
    _unknown_keys(raw, CALENDAR_KEYS, path, errors)
    _required(raw, CALENDAR_REQUIRED, path, errors)
    out = {"name": _name(raw.get("name"), f"{path}.name", errors)}

    tz = raw.get("timezone")
    if "timezone" in raw:
        if not isinstance(tz, str) or not _zone_exists(tz):
            errors[f"{path}.timezone"] = f"unknown time zone {tz!r}"
        out["timezone"] = tz

    if "hours" in raw:
        out["hours"] = _validate_hours(raw["hours"], f"{path}.hours", errors)

    out["holiday_country"] = out["holiday_subdivision"] = None
    if raw.get("holidays") is not None:
        out["holiday_country"], out["holiday_subdivision"] = _validate_holidays(raw["holidays"], f"{path}.holidays",
                                                                                errors)

    out["closed_dates"] = []
    closed = raw.get("closed_dates")
    if closed is not None:
        if not isinstance(closed, list):
            errors[f"{path}.closed_dates"] = "expected a list of YYYY-MM-DD dates"
        else:
            for j, value in enumerate(closed):
                iso = _iso_date(value)
                if iso is None:
                    errors[f"{path}.closed_dates[{j}]"] = f"{value!r} is not a YYYY-MM-DD date"
                out["closed_dates"].append(iso)
    return out


def _validate_hours(hours, path, errors):
    if not isinstance(hours, dict):
        errors[path] = "expected a mapping of weekdays (mon..sun) to lists of 'HH:MM-HH:MM' intervals"
        return None
    for day in hours:
        if day not in WEEKDAYS:
            errors[f"{path}.{day}"] = f"unknown day; days are {', '.join(WEEKDAYS)}"
    ok = True
    for day in WEEKDAYS:
        intervals = hours.get(day)
        if intervals is None:
            continue
        if not isinstance(intervals, list):
            errors[f"{path}.{day}"] = "expected a list of 'HH:MM-HH:MM' intervals"
            ok = False
            continue
        day_ok = True
        for j, text in enumerate(intervals):
            try:  # one interval at a time, so the error can name its index
                clock.validate_hours({day: [text]})
            except ValueError as exc:
                errors[f"{path}.{day}[{j}]"] = str(exc)
                day_ok = False
        if day_ok:
            try:  # the day as a whole: overlapping intervals
                clock.validate_hours({day: intervals})
            except ValueError as exc:
                errors[f"{path}.{day}"] = str(exc)
                day_ok = False
        ok = ok and day_ok
    normal = _normal_hours({k: v for k, v in hours.items() if k in WEEKDAYS and isinstance(v, list)})
    if ok and not any(normal.values()):
        # add_business_minutes cannot compute a due time on such a calendar.
        errors[path] = "no working hours on any day"
    return normal


def _validate_holidays(value, path, errors):
    if not isinstance(value, dict):
        errors[path] = "expected a mapping with 'country' and optional 'subdivision'"
        return None, None
    _unknown_keys(value, HOLIDAY_KEYS, path, errors)
    country, subdivision = value.get("country"), value.get("subdivision")
    if not isinstance(country, str) or not country.strip():
        errors[f"{path}.country"] = "required: a country code such as IN or DE"
        return None, None
    country = country.strip().upper()
    if subdivision is not None and (not isinstance(subdivision, str) or not subdivision.strip()):
        errors[f"{path}.subdivision"] = "expected a subdivision code such as MH"
        return country, None
    subdivision = subdivision.strip() if subdivision else None
    if not _holidays_available(country, None):
        errors[f"{path}.country"] = f"no holiday data for country {country!r}"
    elif subdivision and not _holidays_available(country, subdivision):
        errors[f"{path}.subdivision"] = f"no holiday data for subdivision {subdivision!r} of {country}"
    return country, subdivision


def _validate_policy(raw, path, known_calendars, known_teams, errors):
    _unknown_keys(raw, POLICY_KEYS, path, errors)
    _required(raw, POLICY_REQUIRED, path, errors)
    out = {"name": _name(raw.get("name"), f"{path}.name", errors),
           "match_type": None, "match_priority": None, "match_team": None}

    match = raw.get("match")
    if match is not None:
        if not isinstance(match, dict):
            errors[f"{path}.match"] = "expected a mapping with optional type, priority and team"
        else:
            _unknown_keys(match, MATCH_KEYS, f"{path}.match", errors)
            out["match_type"] = _choice(match.get("type"), TYPES, f"{path}.match.type", errors)
            out["match_priority"] = _choice(match.get("priority"), PRIORITIES, f"{path}.match.priority", errors)
            team = match.get("team")
            if team is not None and team not in known_teams:
                errors[f"{path}.match.team"] = f"no team named {team!r}"
            out["match_team"] = team

    calendar = raw.get("calendar")
    if calendar is not None and calendar not in known_calendars:
        errors[f"{path}.calendar"] = f"no calendar named {calendar!r} in the file or the database"
    out["calendar"] = calendar

    for key in ("first_response_minutes", "resolution_minutes"):
        if key in raw:
            value = raw[key]
            if not _is_int(value) or value <= 0:
                errors[f"{path}.{key}"] = f"expected a positive whole number of minutes, got {value!r}"
            elif value > MAX_TARGET_MINUTES:
                errors[f"{path}.{key}"] = f"at most {MAX_TARGET_MINUTES:,} minutes (ten years), got {value!r}"
            out[key] = value

    warn = raw.get("warn_at_percent", DEFAULT_WARN_PERCENT)
    if not _is_int(warn) or not 1 <= warn <= 99:
        errors[f"{path}.warn_at_percent"] = f"expected a whole number from 1 to 99, got {warn!r}"
    out["warn_at_percent"] = warn

    pause = raw.get("pause_statuses", DEFAULT_PAUSE_STATUSES)
    if not isinstance(pause, list):
        errors[f"{path}.pause_statuses"] = "expected a list of statuses"
        pause = []
    for j, status in enumerate(pause):
        if status not in STATUSES:
            errors[f"{path}.pause_statuses[{j}]"] = f"unknown status {status!r}; statuses are {', '.join(STATUSES)}"
    out["pause_statuses"] = list(pause)

    wait = raw.get("approval_wait", "paused")
    if wait not in APPROVAL_WAITS:
        errors[f"{path}.approval_wait"] = f"expected one of {', '.join(APPROVAL_WAITS)}, got {wait!r}"
    out["approval_wait"] = wait

    escalation = raw.get("escalation", [])
    if not isinstance(escalation, list):
        errors[f"{path}.escalation"] = "expected a list of objects"
        escalation = []
    for j, step in enumerate(escalation):
        if not isinstance(step, dict):
            errors[f"{path}.escalation[{j}]"] = "expected an object"
    out["escalation"] = list(escalation)
    out["active"] = True
    return out


# -- small helpers ---------------------------------------------------------------------

def _list_of_objects(value, path, errors):
    """(index, dict) pairs; a non-dict entry is reported and skipped."""
    if value is None:
        return []
    if not isinstance(value, list):
        errors[path] = "expected a list"
        return []
    items = []
    for i, item in enumerate(value):
        if isinstance(item, dict):
            items.append((i, item))
        else:
            errors[f"{path}[{i}]"] = "expected an object"
    return items


def _unknown_keys(mapping, allowed, path, errors):
    for key in mapping:
        if key not in allowed:
            where = f"{path}.{key}" if path else str(key)
            errors[where] = f"unknown key; expected one of {', '.join(sorted(allowed))}"


def _required(mapping, keys, path, errors):
    for key in keys:
        if key not in mapping:
            errors[f"{path}.{key}"] = "required"


def _name(value, path, errors):
    if value is None:
        return None  # reported as required
    if not isinstance(value, str) or not value.strip():
        errors[path] = "expected a non-empty name"
        return None
    if len(value) > NAME_MAX:
        errors[path] = f"longer than {NAME_MAX} characters"
    return value


def _choice(value, allowed, path, errors):
    if value is not None and value not in allowed:
        errors[path] = f"unknown value {value!r}; expected one of {', '.join(allowed)}"
    return value


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _iso_date(value):
    """YYYY-MM-DD text for a date or ISO date string (YAML parses bare dates itself), else None."""
    if isinstance(value, datetime):
        return None
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip()).isoformat()
        except ValueError:
            return None
    return None


def _zone_exists(name):
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a directory such as "Asia"
        return False
    return True


def _holidays_available(country, subdivision):
    try:
        holidays.country_holidays(country, subdiv=subdivision)
    except (NotImplementedError, KeyError, ValueError):
        return False
    return True
