"""Full-text search over work items: reference, subject, description, requester and message bodies.

The database's own full-text index does the matching, never LIKE '%...%':

- SQLite: two FTS5 external-content tables, `work_items_fts` (ref, subject, description,
  requester name and email of work_items) and `messages_fts` (body_text of messages, internal
  notes included). Triggers on work_items and messages keep them current, so every path that
  writes rows (web, API, email intake with bulk inserts, workers, plain SQL) is covered.
- PostgreSQL: GIN expression indexes on to_tsvector('simple', ...) of the same columns; the
  query below uses the very same expressions, so the planner uses them and there is nothing
  to keep in sync.

An item matches when all the words typed are in its own fields, or all of them are in one of
its messages. Results: the items the user may see, newest first, in pages of PAGE_SIZE with a
keyset (`before`, an item id), so a page costs the same however many items match: a common
word makes the planner walk the id order and stop after a page, a rare one reads the index.

The schema is built both by `db.create_all()` (DDL events on the metadata below) and by the
Alembic migration b1a2c3d4e5f6, which uses the same statements (create_statements()).
"""
import re
from dataclasses import dataclass

import sqlalchemy as sa

from queue_app.models import Message, WorkItem
from queue_app.models.base import db
from queue_app.services import access
from queue_app.services.errors import Invalid
from queue_app.services.items.work_types import REF_PATTERN

PAGE_SIZE = 25
MAX_QUERY = 200
MAX_TERMS = 12

ITEM_COLUMNS = ("ref", "subject", "description", "requester_name", "requester_email")

# The text indexed per item on PostgreSQL; the query must repeat it exactly for the index to be used.
PG_ITEM_DOCUMENT = ("to_tsvector('simple'::regconfig, coalesce(ref, '') || ' ' || coalesce(subject, '') || ' ' || "
                    "coalesce(description, '') || ' ' || coalesce(requester_name, '') || ' ' || "
                    "coalesce(requester_email, ''))")
PG_MESSAGE_DOCUMENT = "to_tsvector('simple'::regconfig, coalesce(body_text, ''))"

SQLITE_OBJECTS = ("work_items_fts", "messages_fts")
SQLITE_TRIGGERS = ("work_items_fts_ai", "work_items_fts_ad", "work_items_fts_au",
                   "messages_fts_ai", "messages_fts_ad", "messages_fts_au")
PG_INDEXES = ("ix_work_items_fts", "ix_messages_fts")


def _sqlite_create():
    cols = ", ".join(ITEM_COLUMNS)
    new = ", ".join(f"new.{c}" for c in ITEM_COLUMNS)
    old = ", ".join(f"old.{c}" for c in ITEM_COLUMNS)
    changed = ", ".join(ITEM_COLUMNS)
    return [
        f"CREATE VIRTUAL TABLE IF NOT EXISTS work_items_fts USING fts5({cols}, content='work_items', "
        f"content_rowid='id', tokenize='unicode61 remove_diacritics 2')",
        f"CREATE TRIGGER IF NOT EXISTS work_items_fts_ai AFTER INSERT ON work_items BEGIN "
        f"INSERT INTO work_items_fts(rowid, {cols}) VALUES (new.id, {new}); END",
        f"CREATE TRIGGER IF NOT EXISTS work_items_fts_ad AFTER DELETE ON work_items BEGIN "
        f"INSERT INTO work_items_fts(work_items_fts, rowid, {cols}) VALUES ('delete', old.id, {old}); END",
        f"CREATE TRIGGER IF NOT EXISTS work_items_fts_au AFTER UPDATE OF {changed} ON work_items BEGIN "
        f"INSERT INTO work_items_fts(work_items_fts, rowid, {cols}) VALUES ('delete', old.id, {old}); "
        f"INSERT INTO work_items_fts(rowid, {cols}) VALUES (new.id, {new}); END",
        "CREATE VIRTUAL TABLE IF NOT EXISTS messages_fts USING fts5(body_text, content='messages', "
        "content_rowid='id', tokenize='unicode61 remove_diacritics 2')",
        "CREATE TRIGGER IF NOT EXISTS messages_fts_ai AFTER INSERT ON messages BEGIN "
        "INSERT INTO messages_fts(rowid, body_text) VALUES (new.id, new.body_text); END",
        "CREATE TRIGGER IF NOT EXISTS messages_fts_ad AFTER DELETE ON messages BEGIN "
        "INSERT INTO messages_fts(messages_fts, rowid, body_text) VALUES ('delete', old.id, old.body_text); END",
        "CREATE TRIGGER IF NOT EXISTS messages_fts_au AFTER UPDATE OF body_text ON messages BEGIN "
        "INSERT INTO messages_fts(messages_fts, rowid, body_text) VALUES ('delete', old.id, old.body_text); "
        "INSERT INTO messages_fts(rowid, body_text) VALUES (new.id, new.body_text); END",
    ]


def create_statements(dialect_name):
    """DDL that builds the search index (idempotent); the migration runs it too."""
    if dialect_name == "sqlite":
        return _sqlite_create()
    if dialect_name == "postgresql":
        return [f"CREATE INDEX IF NOT EXISTS ix_work_items_fts ON work_items USING gin ({PG_ITEM_DOCUMENT})",
                f"CREATE INDEX IF NOT EXISTS ix_messages_fts ON messages USING gin ({PG_MESSAGE_DOCUMENT})"]
    return []


def populate_statements(dialect_name):
    """Index the rows that existed before the index (PostgreSQL indexes them when it builds the index)."""
    if dialect_name == "sqlite":
        return ["INSERT INTO work_items_fts(work_items_fts) VALUES ('rebuild')",
                "INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')"]
    return []


def drop_statements(dialect_name):
    if dialect_name == "sqlite":
        return [f"DROP TRIGGER IF EXISTS {name}" for name in SQLITE_TRIGGERS] + \
               [f"DROP TABLE IF EXISTS {name}" for name in SQLITE_OBJECTS]
    if dialect_name == "postgresql":
        return [f"DROP INDEX IF EXISTS {name}" for name in PG_INDEXES]
    return []


def is_search_object(name):
    """True for the tables and indexes of the search index (schema comparisons leave them out)."""
    return bool(name) and (name in PG_INDEXES or any(name == t or name.startswith(t + "_") for t in SQLITE_OBJECTS))


def _run_if_indexed_tables(statements, metadata, connection, tables):
    """Run `statements` for this dialect when create_all/drop_all touches an indexed table."""
    names = {table.name for table in tables} if tables else set(metadata.tables)
    if {"work_items", "messages"} & names:
        for statement in statements(connection.dialect.name):
            connection.exec_driver_sql(statement)


@sa.event.listens_for(db.metadata, "after_create")
def _create_search_index(metadata, connection, tables=(), **_kw):
    _run_if_indexed_tables(create_statements, metadata, connection, tables)


@sa.event.listens_for(db.metadata, "before_drop")
def _drop_search_index(metadata, connection, tables=(), **_kw):
    _run_if_indexed_tables(drop_statements, metadata, connection, tables)


# --- the query ------------------------------------------------------------------------------

_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass
class Results:
    query: str
    items: list
    next_before: int = None  # the `before` of the next page, None on the last page


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


def search_queries(session, user, text, before=None, limit=PAGE_SIZE + 1):
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
    if before is not None:
        on_item = on_item.where(item_key < before)
        on_message = on_message.where(Message.work_item_id < before)
    return ([on_item.order_by(item_key.desc()).limit(limit),
             on_message.order_by(Message.work_item_id.desc()).limit(limit)], params)


def search(session, user, text, before=None, size=PAGE_SIZE, options=()):
    """One page of the items `user` may see that match `text`, newest first (keyset: pass the
    page's next_before to get the next one)."""
    text = clean_query(text)
    if before not in (None, ""):
        try:
            before = int(before)
            if not 0 < before < 2 ** 53:
                raise ValueError(before)
        except (TypeError, ValueError):
            raise Invalid("the page link is not valid; search again", {"before": "not a number"}) from None
    else:
        before = None
    queries, params = search_queries(session, user, text, before, size + 1)
    ids = set()
    for query in queries:
        ids.update(session.scalars(query, params))
    ids = sorted(ids, reverse=True)[:size + 1]
    by_id = {item.id: item for item in session.scalars(
        sa.select(WorkItem).where(WorkItem.id.in_(ids[:size])).options(*options))} if ids else {}
    items = [by_id[i] for i in ids[:size] if i in by_id]
    return Results(query=text, items=items, next_before=items[-1].id if len(ids) > size and items else None)


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


def repair_sqlite_triggers(connection):
    """Recreate the SQLite triggers if a table rebuild dropped them, and re-index; True if it did.

    Alembic's batch mode rebuilds a table (copy, drop, rename) for changes SQLite cannot ALTER,
    and dropping work_items or messages drops their triggers with them; migrations/env.py calls
    this after every upgrade so the index keeps following the tables.
    """
    names = {name for name, in connection.exec_driver_sql(
        "SELECT name FROM sqlite_master WHERE type IN ('table', 'trigger')")}
    if not set(SQLITE_OBJECTS) <= names or set(SQLITE_TRIGGERS) <= names:
        return False
    for statement in _sqlite_create() + populate_statements("sqlite"):
        connection.exec_driver_sql(statement)
    return True
