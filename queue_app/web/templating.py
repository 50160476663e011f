"""Template helpers for every page: times in the viewer's own time zone, labels for codes.

Time is UTC inside and local at the edges, so templates never format a datetime themselves.
"""
import re
from collections import namedtuple
from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import has_request_context, request
from flask_login import current_user
from markupsafe import Markup, escape

from queue_app.models.base import utcnow
from queue_app.models.verification import VERDICTS
from queue_app.models.work_item import PRIORITIES, SLA_STATES, SOURCES, STATUSES, TYPES
from queue_app.extensions import db
from queue_app.services.checks.rules import CHECKS
from queue_app.services.people import notifications
from queue_app.services.sla import policies

LABELS = {
    "on_track": "On track", "at_risk": "At risk", "breached": "Breached", "paused": "Paused", "met": "Met",
    "pending_customer": "Pending customer", "pending_third_party": "Pending third party",
    "awaiting_approval": "Awaiting approval", "document_verification": "Document verification",
    "discrepancy_fix": "Discrepancy fix", "api": "API",
    # Event kinds of the SLA ladder and reclassification.
    "sla_set": "SLA set", "sla_warning": "SLA warning", "sla_breached": "SLA breached", "escalated": "Escalated",
    "sla_recalculated": "SLA recalculated", "sla_paused": "SLA paused", "sla_resumed": "SLA resumed",
    "reclassified": "Reclassified",
    # Ladder targets and step kinds (SlaEscalation.kind).
    "first_response": "First response", "resolution": "Resolution",
    "warning": "Warning", "breach": "Breach", "escalation": "Escalation",
    # Event data keys whose plain spelling reads oddly.
    "reassigned_to": "Reassigned to", "reassigned_from": "Reassigned from", "paused_minutes": "Paused (business min)",
}
CODES = set(STATUSES) | set(TYPES) | set(PRIORITIES) | set(SLA_STATES) | set(SOURCES) | set(policies.TARGETS) \
    | set(VERDICTS)
# Events whose data maps each changed attribute to [old, new].
CHANGE_EVENTS = {"reclassified"}
# Event data kept for the record but not shown: how a mail left (older events hold the server path
# of the .eml written without SMTP).
HIDDEN_EVENT_DATA = {"mail_sent": {"via"}}
_ZONE_KEY = "backdesk.viewer_zone"
_CODE_LABELS = {}


def _zone_of(user):
    name = getattr(user, "timezone", None) or "UTC"
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return timezone.utc


def viewer_zone():
    """The signed-in user's time zone (UTC for anyone else), looked up once per request: a
    page of items formats a few hundred times with it."""
    if not has_request_context():
        return _zone_of(current_user)
    zone = request.environ.get(_ZONE_KEY)
    if zone is None:
        zone = request.environ[_ZONE_KEY] = _zone_of(current_user)
    return zone


def localtime(value, fmt="%Y-%m-%d %H:%M"):
    """A UTC datetime as text in the viewer's zone, with the zone's abbreviation."""
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    local = value.astimezone(viewer_zone())
    return f"{local.strftime(fmt)} {local.tzname()}"


def timetag(value, fmt="%Y-%m-%d %H:%M"):
    """A <time> element: machine-readable UTC, human-readable local."""
    if value is None:
        return Markup('<span class="muted">—</span>')
    return Markup(f'<time datetime="{value.astimezone(timezone.utc).isoformat()}">'
                  f'{escape(localtime(value, fmt))}</time>')


def relative(value, now=None):
    """"in 2 h 5 min" or "3 h overdue", so urgency reads at a glance."""
    if value is None:
        return ""
    now = now or utcnow()
    minutes = int((value - now).total_seconds() // 60)
    span = abs(minutes)
    if span < 60:
        text = f"{span} min"
    elif span < 48 * 60:
        text = f"{span // 60} h {span % 60} min" if span % 60 else f"{span // 60} h"
    else:
        text = f"{span // (24 * 60)} d {span % (24 * 60) // 60} h"
    return f"in {text}" if minutes >= 0 else f"{text} overdue"


Countdown = namedtuple("Countdown", "minutes text overdue")


def business_span(minutes, overdue=None):
    """Business minutes as words: "2 h 15 min left", "35 min overdue".

    `overdue` is decided by the caller from wall-clock time when it can be: past a deadline
    outside working hours no business time has passed yet, but the item is still late.
    """
    if minutes is None:
        return ""
    whole = int(round(minutes))
    overdue = whole < 0 if overdue is None else overdue
    span = abs(whole)
    if span == 0:
        text = "under 1 min"
    elif span < 60:
        text = f"{span} min"
    else:
        text = f"{span // 60} h {span % 60} min" if span % 60 else f"{span // 60} h"
    return f"{text} overdue" if overdue else f"{text} left"


def sla_countdown(item, now=None):
    """Business time to the item's next deadline as of now, or None when no clock is running.

    Business time, not wall-clock time: 30 minutes before closing on a Friday is 30 minutes
    left, not a whole weekend.
    """
    now = now or utcnow()
    minutes = policies.remaining_minutes(item, now)
    if minutes is None:
        return None
    overdue = item.sla_next_due <= now
    return Countdown(minutes, business_span(minutes, overdue), overdue)


def sla_state(item):
    """The state as of now, so an item past its deadline shows breached before the sweep records it."""
    return policies.state_at(item, utcnow())


def label(code):
    if code is None:
        return ""
    if code in LABELS:
        return LABELS[code]
    if code in _CODE_LABELS:
        return _CODE_LABELS[code]
    text = re.sub(r"\bsla\b", "SLA", str(code).replace("_", " ").capitalize(), flags=re.I)
    if code in CODES:  # a fixed set: remember it (a queue page asks for the same few hundreds of times)
        _CODE_LABELS[code] = text
    return text


def _display_value(value):
    if isinstance(value, str) and len(value) >= 19 and value[10:11] == "T":
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return value
        if parsed.tzinfo is not None:
            return localtime(parsed)
    if isinstance(value, str) and value in CODES:
        return label(value)
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    if isinstance(value, date):
        return value.isoformat()
    return value


def _display_change(value):
    """[old, new] as "Old → New", so a reclassification reads as what changed."""
    if isinstance(value, (list, tuple)) and len(value) == 2:
        before, after = (_display_value(v) if v is not None else "none" for v in value)
        return f"{before} → {after}"
    return _display_value(value)


def check_label(name):
    """A check's title ("Required fields"), not its code name."""
    definition = CHECKS.get(name)
    return definition.label if definition is not None else label(name)


def run_label(key):
    """A check run's key as words: "v5" is the automatic run for version 5, "rerun-..." one asked for."""
    key = str(key or "")
    if key.startswith("v") and key[1:].isdigit():
        return f"after change {key[1:]}"
    if key.startswith("rerun-"):
        return "asked for again"
    return key


# Event data values shown as words rather than as stored.
VALUE_WORDS = {
    "check": check_label,
    "failed_checks": lambda names: ", ".join(check_label(n) for n in names or ()),
    "checks": lambda names: ", ".join(check_label(n) for n in names or ()) if isinstance(names, list) else names,
    "run": run_label,
    "paused_minutes": lambda minutes: business_span(minutes).removesuffix(" left") if minutes is not None else "",
}


def event_data(data, kind=None):
    """An event's data as "key: value" pairs, datetimes shown in the viewer's zone."""
    show = _display_change if kind in CHANGE_EVENTS else _display_value
    hidden = HIDDEN_EVENT_DATA.get(kind, ())
    parts = [Markup("<span><span class=\"k\">{}</span> {}</span>").format(
                 label(k), VALUE_WORDS[k](v) if k in VALUE_WORDS else show(v))
             for k, v in (data or {}).items()
             if v not in (None, "", [], {}) and not k.endswith("_id") and k not in hidden]
    return Markup(" ").join(parts) if parts else Markup("")


class CheckRun:
    """The check_result events of one run, shown as one history row with the details on demand."""

    kind = "check_run"

    def __init__(self, first):
        self.events = [first]
        self.id, self.at, self.actor_label = first.id, first.at, first.actor_label
        self.run = (first.data or {}).get("run")

    @property
    def counts(self):
        seen = {}
        for event in self.events:
            status = (event.data or {}).get("status", "?")
            seen[status] = seen.get(status, 0) + 1
        order = ("failed", "error", "warning", "passed")
        return ", ".join(f"{seen[s]} {s}" for s in sorted(seen, key=lambda s: order.index(s) if s in order else 9))


def history_rows(events):
    """Events in order, with the check results of one run folded into one CheckRun row."""
    rows = []
    for event in events:
        run = (event.data or {}).get("run") if event.kind == "check_result" else None
        last = rows[-1] if rows else None
        if run is not None and isinstance(last, CheckRun) and last.run == run:
            last.events.append(event)
        elif run is not None:
            rows.append(CheckRun(event))
        else:
            rows.append(event)
    return rows


def capitalize_first(text):
    """The first letter upper-case and the rest as written ("e.g. BO-000123" stays so), unlike
    Jinja's `capitalize`, which lower-cases the rest."""
    text = "" if text is None else str(text)
    return text[:1].upper() + text[1:]


def page_context():
    return {"now": utcnow(), "viewer_zone_name": str(viewer_zone()), "unread_notifications": unread_notifications()}


def unread_notifications():
    """The bell's count for the signed-in person (one indexed count per page), 0 for anyone else."""
    if not has_request_context() or not getattr(current_user, "is_authenticated", False):
        return 0
    return notifications.unread_count(db.session, current_user)


def init_app(app):
    """Register the filters and the page context on the app (every blueprint's templates use them)."""
    app.jinja_env.filters.update({
        "localtime": localtime,
        "timetag": timetag,
        "relative": relative,
        "sla_countdown": sla_countdown,
        "sla_state": sla_state,
        "label": label,
        "event_data": event_data,
        "history_rows": history_rows,
        "check_label": check_label,
        "run_label": run_label,
        "capitalize": capitalize_first,
    })
    app.context_processor(page_context)
