"""SQLite writers take turns through the file lock: a waiting writer starts as soon as the holder ends."""
import sqlite3
import threading
import time

import pytest

from queue_app.db.sqlite_writers import connection_factory, engine_options


@pytest.fixture
def connect(tmp_path):
    path = tmp_path / "db.sqlite"
    factory = connection_factory(str(path))
    opened = []

    def connect(timeout=15):
        conn = sqlite3.connect(str(path), factory=factory, check_same_thread=False, timeout=timeout)
        conn.execute("PRAGMA journal_mode=WAL")
        opened.append(conn)
        return conn

    first = connect()
    first.execute("CREATE TABLE t (v INTEGER)")
    first.commit()
    yield connect
    for conn in opened:
        conn.close()


def test_a_waiting_writer_waits_on_the_lock_not_in_sqlites_busy_handler(connect):
    """The waiter has no busy timeout at all: had it reached SQLite's write lock while the holder
    wrote, it would fail at once with "database is locked". It waits on the file lock instead, which
    the kernel hands over the moment the holder commits, and then writes."""
    holder, waiter = connect(), connect(timeout=0)
    holder.execute("INSERT INTO t VALUES (1)")  # holds the lock until it commits
    wrote, failed = [], []

    def write():
        try:
            waiter.execute("INSERT INTO t VALUES (2)")
            waiter.commit()
            wrote.append(True)
        except sqlite3.OperationalError as exc:
            failed.append(str(exc))

    thread = threading.Thread(target=write)
    thread.start()
    time.sleep(0.3)
    assert not wrote and not failed  # waiting for the holder
    holder.commit()
    thread.join(5)
    assert (wrote, failed) == ([True], [])
    assert sorted(v for (v,) in connect().execute("SELECT v FROM t")) == [1, 2]


def test_readers_do_not_wait_for_the_writer(connect):
    writer, reader = connect(), connect()
    writer.execute("INSERT INTO t VALUES (1)")
    started = time.monotonic()
    assert reader.execute("SELECT count(*) FROM t").fetchone() == (0,)  # WAL: the committed state
    assert time.monotonic() - started < 0.1
    writer.rollback()


def test_the_lock_is_let_go_on_rollback_and_close(connect):
    first, second = connect(), connect()
    first.execute("INSERT INTO t VALUES (1)")
    first.rollback()
    second.execute("INSERT INTO t VALUES (2)")
    second.close()
    third = connect()
    third.execute("INSERT INTO t VALUES (3)")
    third.commit()
    assert [v for (v,) in connect().execute("SELECT v FROM t")] == [3]


def test_a_thread_writing_through_a_second_connection_is_not_stuck_behind_itself(connect):
    first, second = connect(), connect()
    second.execute("PRAGMA busy_timeout=200")
    first.execute("INSERT INTO t VALUES (1)")
    started = time.monotonic()
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        second.execute("INSERT INTO t VALUES (2)")  # SQLite's own lock decides, as without the file lock
    assert time.monotonic() - started < 2
    first.commit()


def test_only_sqlite_files_get_the_lock():
    assert "factory" in engine_options("sqlite:////tmp/x.db", {})["connect_args"]
    assert engine_options("sqlite://", {"pool_pre_ping": True}) == {"pool_pre_ping": True}
    assert engine_options("postgresql://u@h/db", {}) == {}
