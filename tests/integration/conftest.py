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
