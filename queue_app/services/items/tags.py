"""Tags: free words on items ("vip", "fraud-check", "chargeback") that people filter their queues,
search and the API by.

Invariants:
- A tag is stored normalised (normalise): lower case, trimmed, inner white space as "-", at most
  MAX_TAG characters of letters (any alphabet), digits, "-" and "_". Two spellings of one tag are
  one tag.
- Whoever may work the item may tag it (services.access.require_work), in any status: a closed
  item can still be marked "chargeback" when the bank writes months later.
- An item carries at most MAX_TAGS tags.
- Each change is one "tags_changed" event naming what was added and removed; a change that
  changes nothing records nothing.
Like every service: flush, never commit.
"""
import re
import unicodedata

import sqlalchemy as sa

from queue_app.models import ItemTag, WorkItem
from queue_app.models.base import utcnow
from queue_app.models.tag import MAX_TAG
from queue_app.services import access
from queue_app.services.errors import Invalid, NotFound, PermissionDenied
from queue_app.services.items import state
from queue_app.services.items.events import record_event

MAX_TAGS = 20
_ALLOWED = re.compile(r"[^\W_]|[_-]", re.UNICODE)  # a letter or digit of any alphabet, "_" or "-"


def normalise(text, field="tags"):
    """The stored form of a tag as typed; Invalid (naming `field`) when nothing usable is left."""
    tag = "-".join(unicodedata.normalize("NFC", str(text or "")).lower().split())
    if not tag:
        raise Invalid("a tag cannot be empty", {field: "a tag cannot be empty"})
    if len(tag) > MAX_TAG:
        raise Invalid(f"the tag {tag[:MAX_TAG]}… is too long (at most {MAX_TAG} characters)",
                      {field: f"at most {MAX_TAG} characters a tag"})
    bad = sorted({ch for ch in tag if not _ALLOWED.fullmatch(ch)})
    if bad:
        shown = " ".join(repr(ch) for ch in bad[:5])
        raise Invalid(f"the tag {tag!r} has characters a tag cannot hold ({shown}); use letters, digits, - and _",
                      {field: "only letters, digits, - and _"})
    return tag


def split(text):
    """The tags of a comma-separated line as typed ("VIP, fraud check" -> ["vip", "fraud-check"])."""
    return [normalise(part) for part in (text or "").split(",") if part.strip()]


def tags_on(session, item):
    """The item's tags, in alphabetical order."""
    return tags_of(session, [item]).get(item.id, [])


def tags_of(session, items):
    """{item id: [tags in alphabetical order]} for a page of items, in one query."""
    ids = sorted({item.id for item in items})
    found = {}
    if not ids:
        return found
    rows = session.execute(sa.select(ItemTag.work_item_id, ItemTag.tag).where(ItemTag.work_item_id.in_(ids))
                           .order_by(ItemTag.work_item_id, ItemTag.tag))
    for item_id, tag in rows:
        found.setdefault(item_id, []).append(tag)
    return found


def tagged(tag):
    """A filter clause: the items carrying `tag` (already normalised), read from the (tag, item) index."""
    return WorkItem.id.in_(sa.select(ItemTag.work_item_id).where(ItemTag.tag == tag))


def may_tag(user, item):
    try:
        access.require_work(user, item)
    except (NotFound, PermissionDenied):
        return False
    return True


def change(session, item, *, actor, add=(), remove=(), now=None):
    """Add and remove tags on the item (as typed; normalised here). Returns its tags afterwards.

    A tag both added and removed is removed; adding a tag it has and removing one it lacks change nothing.
    """
    access.require_work(actor, item)
    now = now or utcnow()
    add = list(dict.fromkeys(normalise(tag, "add") for tag in add))
    remove = set(normalise(tag, "remove") for tag in remove)
    rows = {row.tag: row for row in session.scalars(sa.select(ItemTag).where(ItemTag.work_item_id == item.id))}
    added = [tag for tag in add if tag not in rows and tag not in remove]
    removed = sorted(tag for tag in remove if tag in rows)
    if len(rows) - len(removed) + len(added) > MAX_TAGS:
        raise Invalid(f"an item carries at most {MAX_TAGS} tags; {item.ref} has {len(rows)}",
                      {"add": f"at most {MAX_TAGS} tags an item"})
    if not added and not removed:
        return sorted(rows)
    for tag in removed:
        session.delete(rows.pop(tag))
    for tag in added:
        rows[tag] = ItemTag(work_item_id=item.id, tag=tag, created_at=now,
                            created_by_id=getattr(actor, "id", None))
        session.add(rows[tag])
    state.touch(item, now)
    record_event(session, item, "tags_changed", actor, {"added": sorted(added), "removed": removed}, now=now)
    session.flush()
    session.expire(item, ["tags"])  # item.tags reads the rows again
    return sorted(rows)


def parse_filter(value, field="tag"):
    """The `tag` of a filter's query string, normalised; None when not given."""
    if value is None or not str(value).strip():
        return None
    return normalise(value, field)
