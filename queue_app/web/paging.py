"""Keyset pagination in urgency order: (sla_next_due, nulls last, then id), or for My queue
(needs_attention first, then sla_next_due nulls last, then id).

A page never counts or skips rows, so it costs the same on page 1 and page 1000, and it
walks the (.., sla_next_due, id) indexes the queues are built on. The cursor carries every
sort key of the last row, so rows are neither skipped nor repeated across pages.
"""
from datetime import datetime, timezone

import sqlalchemy as sa

from queue_app.models import WorkItem
from queue_app.services.items.state import after_in_urgency_order, urgency_order

PAGE_SIZE = 50
_NONE = "none"


def encode_cursor(item, attention_first=False):
    due = item.sla_next_due.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ") if item.sla_next_due else _NONE
    cursor = f"{due}_{item.id}"
    return f"a{int(bool(item.needs_attention))}_{cursor}" if attention_first else cursor


def decode_cursor(cursor, attention_first=False):
    """(attention, due, id) from a cursor string (attention None when not part of the order), or None
    when it is missing or malformed."""
    try:
        text = cursor or ""
        attention = None
        if attention_first:
            flag, text = text.split("_", 1)
            if flag not in ("a0", "a1"):
                return None
            attention = flag == "a1"
        due_text, id_text = text.split("_", 1)
        due = None if due_text == _NONE else datetime.strptime(due_text, "%Y%m%dT%H%M%S.%fZ").replace(
            tzinfo=timezone.utc)
        return attention, due, int(id_text)
    except ValueError:
        return None


def after(query, cursor, attention_first=False):
    """Rows strictly after the cursor in the order."""
    decoded = decode_cursor(cursor, attention_first)
    if decoded is None:
        return query
    attention, due, item_id = decoded
    if not attention_first:
        return query.where(after_in_urgency_order(due, item_id))
    if attention:  # the rest of the items needing attention, then every item that does not
        return query.where(sa.or_(
            sa.and_(WorkItem.needs_attention.is_(True), after_in_urgency_order(due, item_id)),
            WorkItem.needs_attention.is_(False),
        ))
    return query.where(WorkItem.needs_attention.is_(False), after_in_urgency_order(due, item_id))


def page(session, query, cursor=None, size=PAGE_SIZE, attention_first=False):
    """One page of items and the cursor of the next page (None on the last page)."""
    rows = session.scalars(urgency_order(after(query, cursor, attention_first), attention_first)
                           .limit(size + 1)).all()
    if len(rows) > size:
        return rows[:size], encode_cursor(rows[size - 1], attention_first)
    return rows, None
