"""Fixtures for tests that use the real Redis server `make test` starts, and for tests that start
`flask` child processes (workers, schedulers) against the test database."""
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis

ROOT = Path(__file__).resolve().parents[2]

TEST_REDIS_DB = 15  # a database of its own, flushed around each test


def use_redis(app, url):
    """Point the app at another Redis URL; the next redis_connection() reconnects."""
    app.config["REDIS_URL"] = url
    old = app.extensions.pop("backdesk_redis", None)
    if old is not None:
        old.close()


@pytest.fixture
def worker_redis_url(redis_url):
    return urlsplit(redis_url)._replace(path=f"/{TEST_REDIS_DB}").geturl()


@contextmanager
def app_on_redis(app, url):
    """The app uses this Redis database, emptied before and after; yields a connection to it."""
    saved = app.config["REDIS_URL"]
    use_redis(app, url)
    conn = redis.Redis.from_url(url)
    conn.flushdb()
    try:
        yield conn
    finally:
        conn.flushdb()
        conn.close()
        use_redis(app, saved)


@pytest.fixture
def rconn(app, worker_redis_url):
    """A connection to the test's own, empty Redis database, which the app uses too."""
    with app_on_redis(app, worker_redis_url) as conn:
        yield conn


@pytest.fixture
def deliver_on_commit(app):
    saved = app.config["OUTBOX_DELIVER_ON_COMMIT"]
    app.config["OUTBOX_DELIVER_ON_COMMIT"] = True
    yield
    app.config["OUTBOX_DELIVER_ON_COMMIT"] = saved


@pytest.fixture
def world(session, make_team, make_user):
    """Returns (supervisor Sam, executives Priya and Tom) and Documents (executive Lena), committed."""
    returns = make_team(name="Returns", work_types=["return"])
    docs = make_team(name="Documents", work_types=["document_verification"])
    sup = make_user(email="sam@example.com", name="Sam Supervisor", role="supervisor", teams=[returns])
    priya = make_user(email="priya@example.com", name="Priya Nair", teams=[returns])
    tom = make_user(email="tom@example.com", name="Tom Becker", teams=[returns])
    lena = make_user(email="lena@example.com", name="Lena Vogel", teams=[docs])
    session.commit()
    return type("World", (), dict(returns=returns, docs=docs, sup=sup, priya=priya, tom=tom, lena=lena))


# --- `flask` child processes ------------------------------------------------------------

class Proc:
    """A `flask --app wsgi ...` child in a process group of its own, logging to a file."""

    def __init__(self, name, argv, env, log_path):
        self.name = name
        self.log_path = log_path
        with open(log_path, "wb") as log:
            self.popen = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True)

    @property
    def pid(self):
        return self.popen.pid

    def alive(self):
        return self.popen.poll() is None

    def output(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signal_group(self, sig):
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            pass

    def kill(self):
        """SIGKILL the worker, its RQ scheduler process and any work horse at once."""
        self.signal_group(signal.SIGKILL)
        self.popen.wait(timeout=10)

    def stop(self, timeout=10):
        self.signal_group(signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        self.signal_group(signal.SIGKILL)  # whatever of the group is left (RQ's forked scheduler)
        self.popen.wait(timeout=10)


class Procs:
    def __init__(self, app, redis_url, tmp_path):
        self.app = app
        self.redis_url = redis_url
        self.tmp_path = tmp_path
        self.started = []

    def env(self, **settings):
        env = dict(os.environ, BACKDESK_ENV="testing", DATABASE_URL=self.app.config["SQLALCHEMY_DATABASE_URI"],
                   REDIS_URL=self.redis_url, BACKDESK_INSTANCE_DIR=str(self.tmp_path / "instance"),
                   LOG_LEVEL="INFO", PYTHONUNBUFFERED="1", OUTBOX_DELIVER_ON_COMMIT="true")
        env.update({key: str(value) for key, value in settings.items()})
        return env

    def flask(self, name, *args, **settings):
        argv = [sys.executable, "-m", "flask", "--app", "wsgi", *args]
        proc = Proc(name, argv, self.env(**settings), self.tmp_path / f"{name}-{len(self.started)}.log")
        self.started.append(proc)
        return proc

    def python(self, name, script, *args, **settings):
        proc = Proc(name, [sys.executable, "-c", script, *args], self.env(**settings),
                    self.tmp_path / f"{name}-{len(self.started)}.log")
        self.started.append(proc)
        return proc

    def outputs(self):
        return "\n".join(f"--- {p.name} (pid {p.pid}) ---\n{p.output()[-4000:]}" for p in self.started)

    def stop_all(self):
        for proc in reversed(self.started):
            proc.stop()


@pytest.fixture
def procs(app, rconn, worker_redis_url, tmp_path):
    """Starts child processes; stops them (and their process groups) before the tables are emptied."""
    (tmp_path / "instance").mkdir()
    started = Procs(app, worker_redis_url, tmp_path)
    yield started
    started.stop_all()


def wait_for(predicate, timeout, what, procs=None, watch=(), interval=0.05):
    """Poll until predicate() is truthy; fail with the children's logs on timeout or if one dies."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        for proc in watch:
            if not proc.alive():
                pytest.fail(f"{proc.name} exited with {proc.popen.returncode} while waiting for {what}\n"
                            f"{procs.outputs() if procs else proc.output()}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}\n{procs.outputs() if procs else ''}")
        time.sleep(interval)
