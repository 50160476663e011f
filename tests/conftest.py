"""Shared fixtures.

The schema is built once per test session; every test runs in an app context and
every table is emptied after it, so tests may commit freely (forked workers and the
browser's live server need committed data). DATABASE_URL selects the database under
test (SQLite file by default, PostgreSQL when `make test` runs the second pass);
REDIS_URL points at the private Redis server `make test` starts.
"""
import os
import re
import shutil
import tempfile
from functools import partial

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient
from werkzeug.security import generate_password_hash

os.environ.setdefault("BACKDESK_ENV", "testing")
_TMP = tempfile.mkdtemp(prefix="backdesk-test-")
os.environ.setdefault("BACKDESK_INSTANCE_DIR", _TMP)

import workers  # noqa: E402
from config import TestingConfig  # noqa: E402
from queue_app import create_app  # noqa: E402
from queue_app.extensions import db as _db  # noqa: E402
from tests import factories  # noqa: E402


def _test_config():
    cfg = TestingConfig.load()
    cfg.SQLALCHEMY_DATABASE_URI = os.environ.get("DATABASE_URL") and cfg.SQLALCHEMY_DATABASE_URI or \
        f"sqlite:///{_TMP}/test.db"
    cfg.OUTBOX_DELIVER_ON_COMMIT = False  # worker tests switch it on
    cfg.INSTANCE_DIR = _TMP
    cfg.SMTP_HOST = None  # never send real mail from tests: the mail job writes .eml files
    return cfg


class ServerLikeClient(FlaskClient):
    """Each request runs in its own app context, as under a real server.

    The tests hold an app context of their own; without this, requests would share its `g`
    (the signed-in user, the CSRF token) and its database session with each other.
    """

    def open(self, *args, **kwargs):
        with self.application.app_context():
            return super().open(*args, **kwargs)


@pytest.fixture(scope="session")
def app():
    app = create_app(_test_config())
    workers.init_app(app)  # as wsgi.py does: jobs go to RQ on commit, and the worker commands exist
    app.test_client_class = ServerLikeClient
    with app.app_context():
        _db.drop_all()
        _db.create_all()
    yield app
    with app.app_context():
        _db.session.remove()
        _db.engine.dispose()
    shutil.rmtree(_TMP, ignore_errors=True)


def empty_all_tables():
    _db.session.rollback()
    with _db.engine.begin() as conn:
        for table in reversed(_db.metadata.sorted_tables):
            conn.execute(table.delete())


@pytest.fixture(autouse=True)
def quick_password_hashing(monkeypatch):
    """Tests make many accounts; a cheap hash keeps that fast (checking a password works the same)."""
    monkeypatch.setattr("queue_app.models.user.generate_password_hash",
                        partial(generate_password_hash, method="pbkdf2:sha256:1000"))


@pytest.fixture(autouse=True)
def app_ctx(app):
    with app.app_context():
        yield app
        _db.session.remove()
        empty_all_tables()


@pytest.fixture(autouse=True)
def fresh_sign_in_limits(app_ctx):
    """Failed sign-ins of one test do not lock out the next (the counts live in Redis)."""
    yield
    from queue_app.extensions import limiter

    try:
        limiter.reset()
    except Exception:  # no Redis in this run: the limiter counted in its in-process fallback
        pass
    fallback = getattr(limiter, "_fallback_storage", None)
    if fallback is not None:
        fallback.reset()


@pytest.fixture
def db(app_ctx):
    return _db


@pytest.fixture
def session(db):
    return db.session


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def make_team(session):
    return lambda **kw: factories.make_team(session, **kw)


@pytest.fixture
def make_user(session):
    return lambda **kw: factories.make_user(session, **kw)


@pytest.fixture
def make_item(session):
    return lambda **kw: factories.make_item(session, **kw)


def csrf_token_from(html):
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html) or \
        re.search(r'value="([^"]+)"[^>]*name="csrf_token"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


class Auth:
    """Log a test client in through the real login form (CSRF included)."""

    def __init__(self, client):
        self.client = client

    def login(self, email, password=factories.PASSWORD):
        page = self.client.get("/login")
        token = csrf_token_from(page.get_data(as_text=True))
        return self.client.post("/login", data={"email": email, "password": password, "csrf_token": token})

    def logout(self):
        page = self.client.get("/")
        token = csrf_token_from(page.get_data(as_text=True))
        return self.client.post("/logout", data={"csrf_token": token})


@pytest.fixture
def auth(client):
    return Auth(client)


@pytest.fixture
def redis_url():
    url = os.environ.get("REDIS_URL")
    if not url:
        pytest.skip("REDIS_URL not set: `make test` starts a private Redis server")
    return url


def database_is(name):
    return sa.make_url(_test_config().SQLALCHEMY_DATABASE_URI).get_backend_name() == name
