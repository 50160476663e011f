"""Reading the configuration trail: the admin page's filtered, keyset-paged list and the export
of a period, read a chunk at a time (never the whole period at once).

Each entry comes with its place in the chain (position and hash) once sealed, so an export can
be checked against the chain's head later.
"""
import json
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Optional

import sqlalchemy as sa

from queue_app.models import AuditSeal, ConfigChange
from queue_app.services.audit.record import KINDS
from queue_app.services.errors import Invalid

PAGE_SIZE = 50
CHUNK = 500
MAX_WHO = 255
_ENTRIES = ConfigChange.__table__
_SEALS = AuditSeal.__table__


@dataclass(frozen=True)
class Filters:
    who: Optional[str] = None  # part of the actor's label (their email), any case
    kind: Optional[str] = None  # one of record.KINDS
    start: Optional[date] = None  # whole days in UTC, both included
    end: Optional[date] = None


def parse_filters(who=None, kind=None, start=None, end=None):
    """Filters from text (a form or query string); Invalid names each field that is wrong."""
    errors = {}
    who = (who or "").strip() or None
    if who is not None and len(who) > MAX_WHO:
        errors["who"] = f"at most {MAX_WHO} characters"
    kind = (kind or "").strip() or None
    if kind is not None and kind not in KINDS:
        errors["kind"] = "not a kind of object the trail records"
    days = {}
    for key, text in (("start", start), ("end", end)):
        text = (text or "").strip()
        if not text:
            days[key] = None
            continue
        try:
            days[key] = date.fromisoformat(text)
        except ValueError:
            errors[key] = "a date as YYYY-MM-DD"
    if not errors and days["start"] and days["end"] and days["end"] < days["start"]:
        errors["end"] = "is before the start"
    if errors:
        raise Invalid("the filters are not valid", errors)
    return Filters(who, kind, days["start"], days["end"])


def _utc_midnight(day):
    return datetime.combine(day, time(0), tzinfo=timezone.utc)


def _query(filters):
    query = (sa.select(_ENTRIES, _SEALS.c.seq.label("chain_seq"), _SEALS.c.hash.label("chain_hash"))
             .outerjoin(_SEALS, sa.and_(_SEALS.c.entry_table == _ENTRIES.name, _SEALS.c.entry_id == _ENTRIES.c.id)))
    if filters.who:
        query = query.where(sa.func.lower(_ENTRIES.c.actor_label).contains(filters.who.lower(), autoescape=True))
    if filters.kind:
        query = query.where(_ENTRIES.c.object_type == filters.kind)
    if filters.start:
        query = query.where(_ENTRIES.c.at >= _utc_midnight(filters.start))
    if filters.end:
        query = query.where(_ENTRIES.c.at < _utc_midnight(filters.end + timedelta(days=1)))
    return query


def page(session, filters, *, before_id=None, size=PAGE_SIZE):
    """Newest first, `size` entries older than `before_id`; and the cursor of the next page (or None)."""
    query = _query(filters)
    if before_id is not None:
        query = query.where(_ENTRIES.c.id < before_id)
    rows = session.execute(query.order_by(_ENTRIES.c.id.desc()).limit(size + 1)).all()
    return rows[:size], (rows[size - 1].id if len(rows) > size else None)


def iter_period(session, filters, *, chunk=CHUNK):
    """Every entry the filters select, oldest first, read `chunk` at a time (keyset on id)."""
    after = 0
    while True:
        rows = session.execute(_query(filters).where(_ENTRIES.c.id > after).order_by(_ENTRIES.c.id)
                               .limit(chunk)).all()
        yield from rows
        if len(rows) < chunk:
            return
        after = rows[-1].id


def _iso(value):
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ") if value is not None else None


def as_record(row):
    """One entry as a JSON object (a JSON line of the export)."""
    return {
        "id": row.id, "at": _iso(row.at), "actor": row.actor_label, "actor_id": row.actor_id,
        "action": row.action, "object_type": row.object_type, "object_id": row.object_id,
        "object": row.object_label, "before": row.before, "after": row.after,
        "chain_position": row.chain_seq, "chain_hash": row.chain_hash,
    }


CSV_HEADER = ["Id", "Time (UTC)", "Who", "Action", "Kind", "Object id", "Object", "Before", "After",
              "Chain position", "Chain hash"]


def csv_row(row):
    """One entry as CSV cells (before and after as JSON text); the caller makes them spreadsheet-safe."""
    def text(values):
        return json.dumps(values, sort_keys=True, ensure_ascii=False) if values is not None else None

    return [row.id, row.at, row.actor_label, row.action, KINDS.get(row.object_type, row.object_type),
            row.object_id, row.object_label, text(row.before), text(row.after), row.chain_seq, row.chain_hash]
