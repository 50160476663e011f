"""Requester history: everything one requester (an email address) has asked of the teams a
person may see, open and closed, with what we know of how to reach them.

Requesters never sign in and have no row of their own: they are the requester_email (and the
names they signed with) on their work items. A page is a keyset over the (requester_email, id)
index, newest first, so it costs the same however many items the requester has; the open and
closed counts read at most COUNT_CAP of their items, and say so when there are more.

Only the items `user` may see count (services.access): a requester with no visible item is
reported as not found, exactly like one who never wrote, so nobody learns of items in other teams.
"""
import re
from dataclasses import dataclass, field

import sqlalchemy as sa

from queue_app.models import WorkItem
from queue_app.models.work_item import OPEN_STATUSES
from queue_app.services import access
from queue_app.services.errors import Invalid, NotFound

PAGE_SIZE = 25
MAX_PAGE_SIZE = 100
COUNT_CAP = 1000
MAX_NAMES = 10
MAX_EMAIL = 255  # the column's length

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass
class Requester:
    email: str
    names: list = field(default_factory=list)
    open_count: int = 0
    closed_count: int = 0
    counts_capped: bool = False  # True when there are more than COUNT_CAP items: the counts are lower bounds
    first_seen: object = None  # the created_at of their oldest visible item (None when capped)
    last_seen: object = None  # the created_at of their newest visible item


def clean_email(email):
    """The address as given, trimmed. Control characters are refused (Invalid); text that cannot be
    a stored address (empty, longer than the column, no @) is a requester nobody is: NotFound."""
    if not isinstance(email, str):
        raise Invalid("the requester's address must be text", {"email": "must be a string"})
    if _CONTROL.search(email):
        raise Invalid("the requester's address contains a character that is not allowed", {"email": "not allowed"})
    email = email.strip()
    if not email or len(email) > MAX_EMAIL or "@" not in email:
        raise NotFound("no such requester")
    return email


def _theirs(user, email):
    """Their items `user` may see: the address as given, and in lower case when that differs (an
    equality when it does not, so the (requester_email, id) index also gives the order)."""
    lower = email.lower()
    same = WorkItem.requester_email == email if lower == email else WorkItem.requester_email.in_([email, lower])
    return sa.and_(same, access.visible_items(user))


def items_query(user, email, before_id=None, limit=PAGE_SIZE):
    """The SELECT of one page (`email` already cleaned)."""
    query = sa.select(WorkItem).where(_theirs(user, email))
    if before_id is not None:
        query = query.where(WorkItem.id < before_id)
    return query.order_by(WorkItem.id.desc()).limit(limit)


def items_page(session, user, email, before_id=None, limit=PAGE_SIZE, options=()):
    """Up to `limit` of the requester's items `user` may see, newest first, with ids below
    `before_id` (the keyset). Raises NotFound when the requester has no visible item at all."""
    email = clean_email(email)
    rows = session.scalars(items_query(user, email, before_id, limit).options(*options)).all()
    if not rows and (before_id is None or not _has_any(session, user, email)):
        raise NotFound("no such requester")
    return rows


def _has_any(session, user, email):
    return session.scalar(sa.select(WorkItem.id).where(_theirs(user, email)).limit(1)) is not None


def profile(session, user, email):
    """The requester's contact details and counts over the items `user` may see; NotFound when
    there is none."""
    email = clean_email(email)
    recent = (sa.select(WorkItem.status, WorkItem.requester_name, WorkItem.created_at)
              .where(_theirs(user, email)).order_by(WorkItem.id.desc()).limit(COUNT_CAP + 1))
    rows = session.execute(recent).all()
    if not rows:
        raise NotFound("no such requester")
    capped = len(rows) > COUNT_CAP
    rows = rows[:COUNT_CAP]
    names = []
    for _status, name, _created in rows:
        name = (name or "").strip()
        if name and name not in names and len(names) < MAX_NAMES:
            names.append(name)
    open_count = sum(1 for status, _name, _created in rows if status in OPEN_STATUSES)
    return Requester(
        email=email, names=names, open_count=open_count, closed_count=len(rows) - open_count,
        counts_capped=capped, first_seen=None if capped else rows[-1][2], last_seen=rows[0][2],
    )
