"""Batched appending of rows with one INSERT per table.

Bulk writing (`batched_rows`, used by `flask intake file`): inside the block, new rows
(events from services.items.events, outbox jobs from db.outbox, and the items and messages of a bulk import)
are not ORM objects flushed one by one but plain rows kept in order and written with one
INSERT per table, tables in foreign-key order. They are written
- before the transaction commits (so they commit with the change that made them, or not at all);
- before any statement of the session reads their table (so a query never misses one);
- before the session flushes (an ORM change may update or refer to one of them);
- when the block ends.
A rollback forgets them, as it forgets everything else of the transaction. Rows that others
refer to take their id beforehand from `new_id`. Outside the block rows are ORM objects
added to the session, as always.
"""
from contextlib import contextmanager
from functools import lru_cache

import sqlalchemy as sa
from sqlalchemy.orm import scoped_session
from sqlalchemy.sql.util import find_tables

from queue_app.models.base import db

_BATCH = "backdesk_batched_rows"
_WRITING = "backdesk_batched_rows_writing"
_IDS = "backdesk_batched_rows_ids"


# --- batched append-only rows ----------------------------------------------------------------

class _Pending:
    """Rows waiting for their INSERT, per table, in the order they were added."""

    def __init__(self):
        self.tables = {}  # table name -> (model, [values], [callback or None])

    def add(self, model, values, written):
        entry = self.tables.setdefault(model.__table__.name, (model, [], []))
        entry[1].append(values)
        entry[2].append(written)

    def mark(self):
        return {name: len(rows) for name, (_, rows, _) in self.tables.items()}

    def forget_since(self, mark):
        for name, (_, rows, callbacks) in self.tables.items():
            keep = mark.get(name, 0)
            del rows[keep:]
            del callbacks[keep:]

    def __bool__(self):
        return any(rows for _, rows, _ in self.tables.values())


@contextmanager
def batched_rows(session):
    """Write append-only rows (events, outbox jobs) with one INSERT per table and batch.

    The session's listeners that keep the rules above are attached for the block only, to this
    session: no other session pays for them.
    """
    if isinstance(session, scoped_session):
        session = session()
    session.info[_BATCH] = _Pending()
    for name, listener in _LISTENERS:
        sa.event.listen(session, name, listener)
    try:
        yield
        write_pending(session)
    finally:
        for name, listener in _LISTENERS:
            sa.event.remove(session, name, listener)
        session.info.pop(_BATCH, None)
        session.info.pop(_IDS, None)


def batching(session):
    return _BATCH in session.info


def add_row(session, model, values, written=None):
    """Queue a row for the batched INSERT; False (nothing queued) when batching is off.

    `written(id)` is called with the row's id once it is inserted."""
    pending = session.info.get(_BATCH)
    if pending is None:
        return False
    pending.add(model, values, written)
    return True


def mark(session):
    pending = session.info.get(_BATCH)
    return pending.mark() if pending is not None else None


def forget_since(session, position):
    """Drop the rows queued after `mark()` (a message whose work is being undone)."""
    pending = session.info.get(_BATCH)
    if pending is not None and position is not None:
        pending.forget_since(position)


def write_pending(session, tables=None):
    """INSERT the queued rows (of `tables`, a set of table names, or all) in the order they came."""
    pending = session.info.get(_BATCH)
    if not pending or session.info.get(_WRITING):
        return
    session.info[_WRITING] = True
    try:
        _write(session, pending, tables)
    finally:
        session.info.pop(_WRITING, None)


def _write(session, pending, tables):
    order = _table_order()
    for name, (model, rows, callbacks) in sorted(pending.tables.items(), key=lambda entry: order[entry[0]]):
        if not rows or (tables is not None and name not in tables):
            continue
        batch, notify = list(rows), list(callbacks)
        rows.clear()
        callbacks.clear()
        table = model.__table__
        _complete(table, batch)
        if any(notify):
            ids = insert_returning_ids(session, table, batch)
            for callback, row_id in zip(notify, ids):
                if callback is not None:
                    callback(row_id)
        else:
            session.execute(sa.insert(table), batch)


@lru_cache(maxsize=1)
def _table_order():
    """Table name -> position in foreign-key order (a row is written after the rows it refers to)."""
    return {table.name: position for position, table in enumerate(db.metadata.sorted_tables)}


def _complete(table, rows):
    """Give every row the same columns (one INSERT statement for all): a missing one takes the
    column's plain default, or NULL."""
    columns = set().union(*rows)
    for row in rows:
        for name in columns.difference(row):
            default = table.c[name].default
            row[name] = default.arg if default is not None and default.is_scalar else None


# --- ids of rows not yet written -------------------------------------------------------------

def new_id(session, table):
    """The id a row of `table` queued with add_row will have, so rows referring to it can be queued too.

    PostgreSQL: the next value of the table's sequence, as the INSERT would have taken it.
    SQLite: one more than the highest id written or handed out in this transaction, which is
    what SQLite gives an INTEGER PRIMARY KEY; no other connection can write meanwhile, as the
    transaction holds the write lock. The count starts again at each transaction and after
    anything else inserts into the table. Either way ids follow the order rows were made in.
    """
    if session.get_bind().dialect.name == "postgresql":
        return session.execute(sa.text("SELECT nextval(pg_get_serial_sequence(:table, 'id'))"),
                               {"table": table.name}).scalar_one()
    ids = session.info.setdefault(_IDS, {})
    last = ids.get(table.name)
    if last is None:
        last = session.execute(sa.select(sa.func.coalesce(sa.func.max(table.c.id), 0))
                               .execution_options(**READS_NO_BATCHED_ROWS)).scalar_one()
    ids[table.name] = last + 1
    return last + 1


def _forget_ids(session, names=None):
    """Read the highest id again for `names`, or every table (SQLite; see new_id)."""
    ids = session.info.get(_IDS)
    if not ids:
        return
    for name in list(ids) if names is None else names:
        ids.pop(name, None)


# Execution option for a query that needs no batched row written first (new_id's count of
# ids, which knows of them), so it skips the check below.
READS_NO_BATCHED_ROWS = {"backdesk_reads_no_batched_rows": True}


def insert_returning_ids(session, table, rows):
    """INSERT `rows`; their ids in the order of `rows`.

    SQLite would insert row by row to return ids in order, but the ids of one multi-row
    INSERT are consecutive and given in VALUES order (an INTEGER PRIMARY KEY takes max + 1
    per row, and the transaction holds the write lock), so sorting them is enough there.
    """
    if session.get_bind().dialect.name == "sqlite":
        return sorted(session.execute(sa.insert(table).returning(table.c.id), rows).scalars().all())
    return session.execute(sa.insert(table).returning(table.c.id, sort_by_parameter_order=True),
                           rows).scalars().all()


def insert_tuples(session, table, columns, rows):
    """INSERT `rows`, tuples of `columns`' values, with one executemany and no per-row parameter
    processing by SQLAlchemy: for values that need no conversion (numbers, text) and many rows."""
    connection = session.connection()
    mark = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    connection.exec_driver_sql(f"INSERT INTO {table.name} ({', '.join(columns)}) "
                               f"VALUES ({', '.join([mark] * len(columns))})", rows)


def _tables_of(statement):
    if statement.is_dml:
        table = getattr(statement, "table", None)
        return {table.name} if isinstance(table, sa.Table) else None
    return {getattr(t, "name", None) for t in find_tables(statement, check_columns=True, include_joins=True)}


def _write_before_reading(state):
    if state.session.info.get(_IDS) and state.statement.is_insert and not state.session.info.get(_WRITING):
        _forget_ids(state.session, _tables_of(state.statement) or None)
    pending = state.session.info.get(_BATCH)
    if not pending or state.execution_options.get("backdesk_reads_no_batched_rows"):
        return
    waiting = {name for name, (_, rows, _) in pending.tables.items() if rows}
    read = _tables_of(state.statement)
    if read is None or None in read or read & waiting:
        write_pending(state.session)


def _write_before_commit(session):
    if session.info.get(_BATCH):
        write_pending(session)


def _write_before_flush(session, flush_context, instances):
    if session.info.get(_BATCH):
        write_pending(session)


def _recount_after_orm_inserts(session, flush_context):
    if session.info.get(_IDS) and session.new:
        _forget_ids(session, {sa.inspect(obj).mapper.local_table.name for obj in session.new})


def _recount_after_commit(session):
    _forget_ids(session)


def _forget_on_rollback(session):
    _forget_ids(session)
    pending = session.info.get(_BATCH)
    if pending is not None:
        pending.forget_since({})


_LISTENERS = (
    ("do_orm_execute", _write_before_reading),
    ("before_commit", _write_before_commit),
    ("before_flush", _write_before_flush),
    ("after_flush", _recount_after_orm_inserts),
    ("after_commit", _recount_after_commit),
    ("after_rollback", _forget_on_rollback),
)
