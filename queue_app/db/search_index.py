"""The full-text search index's schema: what the database keeps so search never scans.

- SQLite: two FTS5 external-content tables, `work_items_fts` (ref, subject, description,
  requester name and email, order number and account reference of work_items) and `messages_fts` (body_text of messages, internal
  notes included). Triggers on work_items and messages keep them current, so every path that
  writes rows (web, API, email intake with bulk inserts, workers, plain SQL) is covered.
- PostgreSQL: GIN expression indexes on to_tsvector('simple', ...) of the same columns; the
  query (services.items.search) uses the very same expressions, so the planner uses them and
  there is nothing to keep in sync.

It is built both by `db.create_all()` (DDL events on the metadata, registered when this module
is imported, which create_app does) and by the Alembic migrations b1a2c3d4e5f6 and c7d3a9e5f210 (order number and account
added), which wrote the same statements out.
"""
import sqlalchemy as sa

from queue_app.models.base import db

ITEM_COLUMNS = ("ref", "subject", "description", "requester_name", "requester_email", "order_number", "account")


# The text indexed per item on PostgreSQL; the query must repeat it exactly for the index to be used.
PG_ITEM_DOCUMENT = ("to_tsvector('simple'::regconfig, coalesce(ref, '') || ' ' || coalesce(subject, '') || ' ' || "
                    "coalesce(description, '') || ' ' || coalesce(requester_name, '') || ' ' || "
                    "coalesce(requester_email, '') || ' ' || coalesce(order_number, '') || ' ' || "
                    "coalesce(account, ''))")


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
