"""SQLite writers take turns through a file lock, so a waiting writer starts the moment the last one ends.

SQLite lets one connection write at a time. A connection that finds the write lock taken waits
in its busy handler, which sleeps and retries: 1, 2, 5, 10 ... then 100 ms between tries. With
several processes writing (the SMTP server's stores, the filer's batches, the workers' jobs, web
requests), a waiter often sleeps through the moment the lock is free, and a store that should
take a few milliseconds waits hundreds (the SMTP answer's p99 was close to a second).

So every connection to a SQLite file takes an exclusive `flock` on `<database>-writer.lock`
before its first write of a transaction (an INSERT, UPDATE, DELETE, REPLACE, DDL or BEGIN
IMMEDIATE), and lets it go when the transaction ends (commit, rollback, close). The kernel wakes
a waiter as soon as the lock is let go. Readers never take it: WAL lets them read beside the
writer.

- The file is opened for each transaction and closed to let go, so a forked process never
  shares a lock it did not take.
- A thread that already holds the lock through one connection and writes through another
  (which would wait for itself) does not take it: SQLite's own lock and busy timeout decide,
  as without this module.
- SQLite's write lock is still there underneath, so a writer that does not use this module
  (the sqlite3 shell, another program) is only slower, never unsafe.
"""
import fcntl
import os
import sqlite3
import threading

_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE", "DROP", "ALTER")
_held_here = threading.local()  # the connection through which this thread holds the lock, if any


def _writes(sql):
    head = sql.lstrip()[:16].upper()
    if head.startswith("BEGIN"):
        return "IMMEDIATE" in head or "EXCLUSIVE" in head
    return head.startswith(_WRITES)


class WriterLockConnection(sqlite3.Connection):
    """A pysqlite connection that takes the writers' file lock around each write transaction."""

    lock_path = None  # set on the subclass made for one database file (`connection_factory`)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._lock_fd = None

    def cursor(self, factory=None):
        return super().cursor(factory or WriterLockCursor)

    # sqlite3's shortcuts make their cursor in C, past cursor() above: route them through it.
    def execute(self, sql, parameters=()):
        return self.cursor().execute(sql, parameters)

    def executemany(self, sql, seq_of_parameters):
        return self.cursor().executemany(sql, seq_of_parameters)

    def before_statement(self, sql):
        if self._lock_fd is None and not self.in_transaction and _writes(sql):
            if getattr(_held_here, "connection", None) is not None:
                return  # this thread holds it through another connection: SQLite's lock decides
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except BaseException:
                os.close(fd)
                raise
            self._lock_fd = fd
            _held_here.connection = self

    def after_statement(self):
        if self._lock_fd is not None and not self.in_transaction:
            self.let_go()  # a write outside a transaction (DDL), or SQLite rolled the transaction back

    def let_go(self):
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            if getattr(_held_here, "connection", None) is self:
                _held_here.connection = None
            os.close(fd)  # closing the file lets the lock go

    def commit(self):
        try:
            super().commit()
        finally:
            if not self.in_transaction:
                self.let_go()

    def rollback(self):
        try:
            super().rollback()
        finally:
            self.let_go()

    def close(self):
        try:
            super().close()
        finally:
            self.let_go()


class WriterLockCursor(sqlite3.Cursor):
    def execute(self, sql, parameters=()):
        self.connection.before_statement(sql)
        try:
            return super().execute(sql, parameters)
        finally:
            self.connection.after_statement()

    def executemany(self, sql, seq_of_parameters):
        self.connection.before_statement(sql)
        try:
            return super().executemany(sql, seq_of_parameters)
        finally:
            self.connection.after_statement()


def connection_factory(database_path):
    """The sqlite3.connect(factory=...) class for connections to `database_path`."""
    return type("WriterLockConnection", (WriterLockConnection,), {"lock_path": f"{database_path}-writer.lock"})


def engine_options(uri, options):
    """SQLALCHEMY_ENGINE_OPTIONS with the factory added, for a SQLite file database (others unchanged)."""
    from sqlalchemy.engine import make_url

    url = make_url(uri)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:") \
            or url.database.startswith("file:"):
        return options
    connect_args = dict(options.get("connect_args", {}))
    connect_args.setdefault("factory", connection_factory(os.path.abspath(url.database)))
    return {**options, "connect_args": connect_args}
