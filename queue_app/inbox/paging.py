"""Keyset pagination in urgency order (sla_next_due, nulls last, then id).

A page never counts or skips rows, so it costs the same on page 1 and page 1000, and it
walks the (.., sla_next_due, id) indexes the queues are built on.
"""
from datetime import datetime, timezone

import sqlalchemy as sa

from queue_app.models import WorkItem

PAGE_SIZE = 50
_NONE = "none"


def urgency_order(query):
    return query.order_by(WorkItem.sla_next_due.asc().nulls_last(), WorkItem.id.asc())


def encode_cursor(item):
    due = item.sla_next_due.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ") if item.sla_next_due else _NONE
    return f"{due}_{item.id}"


def decode_cursor(cursor):
    """(due, id) from a cursor string, or None when it is missing or malformed."""
    try:
        due_text, id_text = (cursor or "").split("_", 1)
        due = None if due_text == _NONE else datetime.strptime(due_text, "%Y%m%dT%H%M%S.%fZ").replace(
            tzinfo=timezone.utc)
        return due, int(id_text)
    except ValueError:
        return None


def after(query, cursor):
    """Rows strictly after the cursor in urgency order."""
    decoded = decode_cursor(cursor)
    if decoded is None:
        return query
    due, item_id = decoded
    if due is None:
        return query.where(WorkItem.sla_next_due.is_(None), WorkItem.id > item_id)
    return query.where(sa.or_(
        WorkItem.sla_next_due > due,
        sa.and_(WorkItem.sla_next_due == due, WorkItem.id > item_id),
        WorkItem.sla_next_due.is_(None),
    ))


def page(session, query, cursor=None, size=PAGE_SIZE):
    """One page of items and the cursor of the next page (None on the last page)."""
    rows = session.scalars(urgency_order(after(query, cursor)).limit(size + 1)).all()
    if len(rows) > size:
        return rows[:size], encode_cursor(rows[size - 1])
    return rows, None
