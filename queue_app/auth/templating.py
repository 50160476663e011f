"""Template helpers for every page: times in the viewer's own time zone, labels for codes.

Time is UTC inside and local at the edges, so templates never format a datetime themselves.
"""
import re
from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask_login import current_user
from markupsafe import Markup

from queue_app.auth import bp
from queue_app.models.base import utcnow
from queue_app.models.work_item import PRIORITIES, SLA_STATES, SOURCES, STATUSES, TYPES
from queue_app.services import sla

LABELS = {
    "on_track": "On track", "at_risk": "At risk", "breached": "Breached", "paused": "Paused", "met": "Met",
    "pending_customer": "Pending customer", "pending_third_party": "Pending third party",
    "awaiting_approval": "Awaiting approval", "document_verification": "Document verification",
    "discrepancy_fix": "Discrepancy fix", "api": "API",
}
CODES = set(STATUSES) | set(TYPES) | set(PRIORITIES) | set(SLA_STATES) | set(SOURCES)


def viewer_zone():
    name = getattr(current_user, "timezone", None) or "UTC"
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return timezone.utc


@bp.app_template_filter("localtime")
def localtime(value, fmt="%Y-%m-%d %H:%M"):
    """A UTC datetime as text in the viewer's zone, with the zone's abbreviation."""
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    local = value.astimezone(viewer_zone())
    return f"{local.strftime(fmt)} {local.tzname()}"


@bp.app_template_filter("timetag")
def timetag(value, fmt="%Y-%m-%d %H:%M"):
    """A <time> element: machine-readable UTC, human-readable local."""
    if value is None:
        return Markup('<span class="muted">—</span>')
    return Markup('<time datetime="{}">{}</time>').format(value.astimezone(timezone.utc).isoformat(),
                                                         localtime(value, fmt))


@bp.app_template_filter("relative")
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


@bp.app_template_filter("sla_state")
def sla_state(item):
    """The state as of now, so an item past its deadline shows breached before the sweep records it."""
    return sla.state_at(item, utcnow())


@bp.app_template_filter("label")
def label(code):
    if code is None:
        return ""
    if code in LABELS:
        return LABELS[code]
    return re.sub(r"\bsla\b", "SLA", str(code).replace("_", " ").capitalize(), flags=re.I)


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


@bp.app_template_filter("event_data")
def event_data(data):
    """An event's data as "key: value" pairs, datetimes shown in the viewer's zone."""
    parts = [Markup("<span><span class=\"k\">{}</span> {}</span>").format(label(k), _display_value(v))
             for k, v in (data or {}).items() if v not in (None, "", [], {}) and not k.endswith("_id")]
    return Markup(" ").join(parts) if parts else Markup("")


@bp.app_context_processor
def page_context():
    return {"now": utcnow(), "viewer_zone_name": str(viewer_zone())}

