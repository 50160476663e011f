"""Full-text search over work items: reference, subject, description, requester, order number, account
reference and message bodies.

The database's own full-text index does the matching, never LIKE '%...%' (its schema, FTS5
tables on SQLite and GIN expression indexes on PostgreSQL, is queue_app.db.search_index).

An item matches when all the words typed are in its own fields, or all of them are in one of
its messages. Results: the items the user may see, newest first, in pages of PAGE_SIZE with a
keyset (`before`, an item id), so a page costs the same however many items match: a common
word makes the planner walk the id order and stop after a page, a rare one reads the index.

A tag (services.items.tags) narrows the matches to the items carrying it; a tag alone, without
words, lists its items newest first, walking the (tag, work_item_id) index.
"""
import re
from dataclasses import dataclass

import sqlalchemy as sa

from queue_app.db.search_index import PG_ITEM_DOCUMENT, PG_MESSAGE_DOCUMENT
from queue_app.models import ItemTag, Message, WorkItem
from queue_app.services import access
from queue_app.services.errors import Invalid
from queue_app.services.items import tags as items_tags
from queue_app.services.items.work_types import REF_PATTERN

PAGE_SIZE = 25
MAX_QUERY = 200
MAX_TERMS = 12

# --- the query ------------------------------------------------------------------------------

_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass
class Results:
    query: str
    items: list
    next_before: int = None  # the `before` of the next page, None on the last page
    tag: str = None  # the tag the results carry, if the search named one


def clean_query(text):
    """The query as typed, trimmed; an empty or junk query (no letter or digit) is refused."""
    text = " ".join((text or "").split())
    if not text:
        raise Invalid("type one or more words to search for", {"q": "empty"})
    if len(text) > MAX_QUERY:
        raise Invalid(f"the search is too long (at most {MAX_QUERY} characters)", {"q": "too long"})
    if not _WORD.search(text):
        raise Invalid("the search needs at least one letter or digit", {"q": "no words"})
    return text


def fts5_query(text):
    """A safe FTS5 MATCH expression: each word typed becomes a quoted phrase (so FTS5 operators
    and syntax characters are never interpreted), all of them required. "priya@example.com"
    becomes the phrase "priya example com", as the tokenizer splits the indexed text."""
    phrases = []
    for chunk in text.split():
        words = _WORD.findall(chunk)
        if words:
            phrases.append('"' + " ".join(words) + '"')
    if not phrases:
        raise Invalid("the search needs at least one letter or digit", {"q": "no words"})
    return " ".join(phrases[:MAX_TERMS])


def looks_like_ref(text):
    return bool(REF_PATTERN.fullmatch((text or "").strip().upper()))


def _match():
    return sa.bindparam("match", type_=sa.String)


def _fts(table):
    return sa.table(table, sa.column("rowid", sa.Integer))


def search_queries(session, user, text, before=None, limit=PAGE_SIZE + 1, tag=None):
    """Two SELECTs of item ids, newest first, at most `limit` each: items matched on their own
    fields, and items with a matching message; both limited to what `user` may see and to ids
    below `before`. The first `limit` ids of their union are the page. Each is one index walk:
    the planner either reads the full-text index or walks the id order and stops at `limit`."""
    dialect = session.get_bind().dialect.name
    visible = access.visible_items(user)
    if dialect == "sqlite":
        items_fts, messages_fts = _fts("work_items_fts"), _fts("messages_fts")
        params = {"match": fts5_query(text)}
        on_item = (sa.select(WorkItem.id).join(items_fts, items_fts.c.rowid == WorkItem.id)
                   .where(sa.text("work_items_fts MATCH :match").bindparams(_match()), visible))
        on_message = (sa.select(Message.work_item_id).distinct()
                      .join(messages_fts, messages_fts.c.rowid == Message.id)
                      .join(WorkItem, WorkItem.id == Message.work_item_id)
                      .where(sa.text("messages_fts MATCH :match").bindparams(_match()), visible))
        item_key = items_fts.c.rowid
    elif dialect == "postgresql":
        params = {"match": text}
        tsquery = sa.func.websearch_to_tsquery(sa.literal_column("'simple'::regconfig"), _match())
        on_item = sa.select(WorkItem.id).where(sa.literal_column(PG_ITEM_DOCUMENT).op("@@")(tsquery), visible)
        on_message = (sa.select(Message.work_item_id).distinct()
                      .join(WorkItem, WorkItem.id == Message.work_item_id)
                      .where(sa.literal_column(PG_MESSAGE_DOCUMENT).op("@@")(tsquery), visible))
        item_key = WorkItem.id
    else:  # pragma: no cover - only the two supported databases
        raise Invalid(f"full-text search is not available on {dialect}")
    if tag is not None:
        on_item = on_item.where(items_tags.tagged(tag))
        on_message = on_message.where(items_tags.tagged(tag))
    if before is not None:
        on_item = on_item.where(item_key < before)
        on_message = on_message.where(Message.work_item_id < before)
    return ([on_item.order_by(item_key.desc()).limit(limit),
             on_message.order_by(Message.work_item_id.desc()).limit(limit)], params)


def tagged_query(user, tag, before=None, limit=PAGE_SIZE + 1):
    """The ids of the items `user` may see that carry `tag`, newest first, below `before`: one walk
    of the (tag, work_item_id) index."""
    query = (sa.select(ItemTag.work_item_id).join(WorkItem, WorkItem.id == ItemTag.work_item_id)
             .where(ItemTag.tag == tag, access.visible_items(user)))
    if before is not None:
        query = query.where(ItemTag.work_item_id < before)
    return query.order_by(ItemTag.work_item_id.desc()).limit(limit)


def search(session, user, text, before=None, size=PAGE_SIZE, options=(), *, tag=None):
    """One page of the items `user` may see that match `text` (and carry `tag`, if given; a tag
    alone lists its items), newest first (keyset: pass the page's next_before to get the next one)."""
    tag = items_tags.parse_filter(tag)
    text = clean_query(text) if tag is None or (text or "").strip() else ""
    if before not in (None, ""):
        try:
            before = int(before)
            if not 0 < before < 2 ** 53:
                raise ValueError(before)
        except (TypeError, ValueError):
            raise Invalid("the page link is not valid; search again", {"before": "not a number"}) from None
    else:
        before = None
    if text:
        queries, params = search_queries(session, user, text, before, size + 1, tag=tag)
    else:
        queries, params = [tagged_query(user, tag, before, size + 1)], {}
    ids = set()
    for query in queries:
        ids.update(session.scalars(query, params))
    ids = sorted(ids, reverse=True)[:size + 1]
    by_id = {item.id: item for item in session.scalars(
        sa.select(WorkItem).where(WorkItem.id.in_(ids[:size])).options(*options))} if ids else {}
    items = [by_id[i] for i in ids[:size] if i in by_id]
    return Results(query=text, items=items, next_before=items[-1].id if len(ids) > size and items else None,
                   tag=tag)


def find_ref(session, user, text):
    """The visible item whose reference is exactly `text` (like BO-000123), or None."""
    if not looks_like_ref(text):
        return None
    item = session.scalar(sa.select(WorkItem).where(WorkItem.ref == text.strip().upper()))
    if item is None or not access.can_view(user, item):
        return None
    return item


def explain(session, query, params=None):
    """The database's plan for `query` (EXPLAIN on PostgreSQL, EXPLAIN QUERY PLAN on SQLite), as lines."""
    if params:
        query = query.params(**params)
    dialect = session.get_bind().dialect
    sql = str(query.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
    prefix = "EXPLAIN QUERY PLAN " if dialect.name == "sqlite" else "EXPLAIN "
    rows = session.execute(sa.text(prefix + sql.replace(":", r"\:") if dialect.name == "sqlite" else prefix + sql))
    return [" | ".join(str(value) for value in row) for row in rows]


