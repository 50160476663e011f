"""Fixtures for tests that use the real Redis server `make test` starts."""
from urllib.parse import urlsplit

import pytest
import redis

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


@pytest.fixture
def rconn(app, worker_redis_url):
    """A connection to the test's own, empty Redis database, which the app uses too."""
    saved = app.config["REDIS_URL"]
    use_redis(app, worker_redis_url)
    conn = redis.Redis.from_url(worker_redis_url)
    conn.flushdb()
    yield conn
    conn.flushdb()
    conn.close()
    use_redis(app, saved)


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
