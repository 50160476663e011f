"""Sign-in throttling (Flask-Limiter on the real Redis), constant-cost checks, and browser sessions."""
import logging
import statistics
import time
from datetime import timedelta
from functools import partial

import pytest
import sqlalchemy as sa
from werkzeug.security import generate_password_hash

from queue_app.extensions import limiter
from queue_app.models import ConfigChange, User, UserSession
from queue_app.models.base import utcnow
from queue_app.services.people import users
from tests.conftest import Auth, csrf_token_from
from tests.factories import PASSWORD

LOGIN_FAILED = "Unknown email or wrong password."


def text(response):
    return response.get_data(as_text=True)


def entries(session, action):
    session.expire_all()
    return session.scalars(sa.select(ConfigChange).where(ConfigChange.action == action)
                           .order_by(ConfigChange.id)).all()


@pytest.fixture
def limits(app, redis_url, monkeypatch):
    """Small limits, so a test reaches them quickly; counted in the real Redis."""
    monkeypatch.setitem(app.config, "SIGN_IN_FAILURES_PER_ACCOUNT", 3)
    monkeypatch.setitem(app.config, "SIGN_IN_FAILURES_PER_ADDRESS", 5)
    limiter.reset()
    assert not limiter._storage_dead
    return app.config


def from_address(app, address):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


# --- throttling -----------------------------------------------------------------------------------------------

def test_lockout_after_failures_refuses_even_the_right_password(app, client, auth, session, world, limits):
    for _ in range(3):
        response = auth.login("priya@example.com", "wrong-password")
        assert response.status_code == 200 and LOGIN_FAILED in text(response)
    refused = auth.login("priya@example.com", PASSWORD)
    assert refused.status_code == 429
    assert "Too many failed sign-ins. Try again in 15 minutes" in text(refused)
    assert 14 * 60 <= int(refused.headers["Retry-After"]) <= 15 * 60
    assert client.get("/").status_code == 302  # not signed in
    # The lockout is per account: another account from elsewhere signs in.
    assert Auth(from_address(app, "10.0.0.9")).login("tom@example.com").status_code == 302
    # ... and the email is normalised: the same account in capitals from elsewhere is locked too.
    assert Auth(from_address(app, "10.0.0.8")).login("PRIYA@Example.com ").status_code == 429

    locked = entries(session, "sign_in_locked")
    assert len(locked) == 1 and locked[0].object_id == world.priya.id
    assert locked[0].after["scope"] == "account" and locked[0].after["remote_addr"] == "127.0.0.1"
    assert len(entries(session, "sign_in_failed")) == 3  # refused attempts check no password and count nothing


def test_per_address_limit_spans_accounts_and_a_success_resets_nothing(app, client, auth, session, world, limits):
    for email in ("nobody@example.com", "tom@example.com", "lena@example.com"):
        assert auth.login(email, "wrong-password").status_code == 200
    assert auth.login("priya@example.com").status_code == 302  # a success in between...
    auth.logout()
    for email in ("sam@example.com", "someone@example.com"):
        assert auth.login(email, "wrong-password").status_code == 200
    refused = auth.login("tom@example.com")  # ...did not reset the address's count: 5 failures
    assert refused.status_code == 429 and "Try again in" in text(refused)
    assert Auth(from_address(app, "10.0.0.7")).login("tom@example.com").status_code == 302  # per address
    assert [e.after["scope"] for e in entries(session, "sign_in_locked")] == ["address"]


def test_the_retry_time_follows_the_window_setting(app, auth, world, limits, monkeypatch):
    monkeypatch.setitem(app.config, "SIGN_IN_WINDOW_MINUTES", 1)
    for _ in range(3):
        auth.login("priya@example.com", "wrong-password")
    assert auth.login("priya@example.com").status_code == 429
    assert int(auth.login("priya@example.com").headers["Retry-After"]) <= 60


def test_get_and_a_form_without_password_are_not_counted(client, auth, world, limits):
    for _ in range(5):
        assert client.get("/login").status_code == 200
        page = client.get("/login")
        client.post("/login", data={"email": "priya@example.com", "password": "",
                                    "csrf_token": csrf_token_from(text(page))})
    assert auth.login("priya@example.com").status_code == 302


@pytest.fixture
def redis_down(app, limits, caplog):
    """The limiter pointed at a Redis that is not there (nothing listens on port 1)."""
    app.config["RATELIMIT_STORAGE_URI"] = "redis://127.0.0.1:1/0"
    limiter.init_app(app)
    caplog.set_level(logging.WARNING, logger="flask-limiter")
    yield
    app.config["RATELIMIT_STORAGE_URI"] = app.config["REDIS_URL"]
    limiter.init_app(app)
    limiter._storage_dead = False  # back on the real Redis at once, not after the fallback's back-off


def test_redis_down_falls_back_to_an_in_process_limiter(client, auth, world, redis_down, caplog):
    assert auth.login("priya@example.com").status_code == 302  # sign-in keeps working
    auth.logout()
    assert "Rate limit storage unreachable - falling back to in-memory storage" in caplog.text
    for _ in range(3):
        assert auth.login("tom@example.com", "wrong-password").status_code == 200
    refused = auth.login("tom@example.com")  # the limits still hold, in this process
    assert refused.status_code == 429 and "Try again in" in text(refused) and refused.headers["Retry-After"]


# --- the same answer, at the same cost ----------------------------------------------------------------------

def test_no_account_inactive_and_wrong_password_get_the_same_answer(client, auth, session, world, make_user, limits):
    inactive = make_user(email="gone@example.com")
    inactive.is_active_user = False
    session.commit()
    answers = [auth.login("nobody@example.com", PASSWORD), auth.login("gone@example.com", PASSWORD),
               auth.login("priya@example.com", "wrong-password")]
    assert {a.status_code for a in answers} == {200}
    assert all(LOGIN_FAILED in text(a) for a in answers)
    assert [e.after["reason"] for e in entries(session, "sign_in_failed")] == [
        "no such account", "account inactive", "wrong password"]


def test_the_password_check_costs_the_same_whatever_the_account(session, world, make_user, monkeypatch):
    """Medians of the three failures within a factor of 2, with a hash costly enough to dominate."""
    monkeypatch.setattr("queue_app.models.user.generate_password_hash",
                        partial(generate_password_hash, method="pbkdf2:sha256:60000"))
    users._dummy_hash.cache_clear()
    try:
        inactive = make_user(email="gone@example.com")
        inactive.is_active_user = False
        active = make_user(email="here@example.com")
        session.commit()

        def median(email, password):
            times = []
            for _ in range(9):
                start = time.perf_counter()
                assert users.sign_in(session, email, password) is None
                times.append(time.perf_counter() - start)
                session.rollback()
            return statistics.median(times)

        medians = [median("nobody@example.com", PASSWORD), median(inactive.email, PASSWORD),
                   median(active.email, "wrong-password")]
    finally:
        users._dummy_hash.cache_clear()  # the next tests hash cheaply again
    assert max(medians) < 2 * min(medians), medians


# --- browser sessions ---------------------------------------------------------------------------------------

class Clock:
    """The time the sessions see (services.people.users.utcnow), moved by hand."""

    def __init__(self):
        self.now = utcnow()

    def __call__(self):
        return self.now

    def move(self, **delta):
        self.now += timedelta(**delta)


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr("queue_app.services.people.users.utcnow", clock)
    return clock


def test_idle_timeout_signs_out_with_a_message(app, client, auth, session, world, clock):
    auth.login("priya@example.com")
    row = session.scalars(sa.select(UserSession)).one()
    clock.move(seconds=30)
    assert client.get("/").status_code == 200
    session.expire_all()
    assert session.get(UserSession, row.id).last_seen_at == row.last_seen_at  # written at most once a minute
    clock.move(minutes=29, seconds=29)
    assert client.get("/").status_code == 200  # 29:59 since last seen: still in, and seen now
    clock.move(minutes=30)
    response = client.get("/settings")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login?next=")
    page = text(client.get(response.headers["Location"]))
    assert "signed out after 30 minutes without activity" in page
    assert "Please sign in to see this page." not in page
    session.expire_all()
    assert session.get(UserSession, row.id).ended_at == clock.now
    assert client.get("/").status_code == 302


def test_absolute_lifetime_ends_even_a_busy_session(app, client, auth, world, clock):
    auth.login("priya@example.com")
    for _ in range(11 * 3 + 2):  # a request every 20 minutes, for 11h40
        clock.move(minutes=20)
        assert client.get("/").status_code == 200
    clock.move(minutes=20)  # 12 hours since signing in
    response = client.get("/")
    assert response.status_code == 302
    assert "a session lasts at most 12 hours" in text(client.get("/login"))


def test_sign_out_here_and_sign_out_everywhere(app, client, auth, session, world):
    other = app.test_client()
    third = app.test_client()
    for browser in (client, other, third):
        Auth(browser).login("priya@example.com")
    page = text(client.get("/settings"))
    assert page.count('data-session="') == 3 and page.count("(this browser)") == 1
    Auth(third).logout()  # this browser only
    assert third.get("/").status_code == 302
    assert client.get("/").status_code == other.get("/").status_code == 200
    assert text(client.get("/settings")).count('data-session="') == 2

    assert client.post("/logout/everywhere").status_code == 400  # CSRF-protected
    token = csrf_token_from(text(client.get("/settings")))
    response = client.post("/logout/everywhere", data={"csrf_token": token})
    assert response.status_code == 302 and response.headers["Location"] == "/login"
    assert "You are signed out on every device." in text(client.get("/login"))
    assert client.get("/").status_code == 302
    response = other.get("/")
    assert response.status_code == 302
    assert "This session has ended" in text(other.get("/login"))
    session.expire_all()
    assert session.scalar(sa.select(sa.func.count()).select_from(UserSession)
                          .where(UserSession.ended_at.is_(None))) == 0
    outs = entries(session, "sign_out")
    assert [e.after.get("everywhere") for e in outs] == [None, True]


def test_password_change_keeps_this_session_only(app, client, auth, session, world):
    other = app.test_client()
    Auth(other).login("priya@example.com")
    auth.login("priya@example.com")
    token = csrf_token_from(text(client.get("/settings")))
    client.post("/settings", data={"current_password": PASSWORD, "new_password": "a-new-password-1",
                                   "confirm": "a-new-password-1", "change_password": "Change password",
                                   "csrf_token": token})
    assert client.get("/").status_code == 200
    assert other.get("/").status_code == 302
    assert text(client.get("/settings")).count('data-session="') == 1


def test_deactivating_a_person_ends_their_sessions(app, client, auth, session, world, make_user):
    admin = make_user(email="admin@example.com", role="admin")
    session.commit()
    auth.login("priya@example.com")
    assert client.get("/").status_code == 200
    priya = session.get(User, world.priya.id)
    users.update_user(session, priya, actor=admin, name=priya.name, role=priya.role, team_ids=priya.team_ids,
                      skills=priya.skills, capacity=priya.capacity, timezone=priya.timezone, active=False)
    session.commit()
    assert client.get("/").status_code == 302
    assert session.scalars(sa.select(UserSession.ended_at)).one() is not None


def test_sign_in_records_the_browser_and_the_audit_entry(client, auth, session, world):
    client.environ_base["HTTP_USER_AGENT"] = "Firefox on the test bench"
    auth.login("priya@example.com")
    row = session.scalars(sa.select(UserSession)).one()
    assert (row.user_id, row.user_agent, row.remote_addr, row.ended_at) == (
        world.priya.id, "Firefox on the test bench", "127.0.0.1", None)
    with client.session_transaction() as browser:
        key = browser["browser_session_key"]
    assert row.key_hash == UserSession.hash(key) and key not in row.key_hash
    assert [e.object_id for e in entries(session, "sign_in")] == [world.priya.id]


def test_behind_a_trusted_proxy_the_client_address_is_counted(session, world, limits):
    from queue_app import create_app
    from tests.conftest import _test_config

    cfg = _test_config()
    cfg.TRUSTED_PROXIES = 1
    proxied = create_app(cfg)
    try:
        client = proxied.test_client()
        page = client.get("/login")
        client.post("/login", headers={"X-Forwarded-For": "203.0.113.5"}, data={
            "email": "priya@example.com", "password": "wrong-password", "csrf_token": csrf_token_from(text(page))})
    finally:
        with proxied.app_context():  # close its connections now, not when it is garbage-collected
            from queue_app.extensions import db

            db.session.remove()
            db.engine.dispose()
    assert [e.after["remote_addr"] for e in entries(session, "sign_in_failed")] == ["203.0.113.5"]
