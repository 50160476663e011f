"""Two-step sign-in: enrolment, the code step (and what the half-signed-in browser gets: nothing),
codes used once, recovery codes, throttling, roles that require it, and an admin's reset."""
import re
from datetime import timedelta

import pyotp
import pytest
import sqlalchemy as sa

from queue_app.extensions import limiter
from queue_app.models import ConfigChange, RecoveryCode, User
from queue_app.models.base import utcnow
from queue_app.services.people import mfa, users
from tests.conftest import Auth, csrf_token_from


def text(response):
    return response.get_data(as_text=True)


def entries(session, action):
    session.expire_all()
    return session.scalars(sa.select(ConfigChange).where(ConfigChange.action == action)
                           .order_by(ConfigChange.id)).all()


def code_for(user, steps_ahead=0):
    """The user's code for the current time-step (or one ahead: the drift allowed)."""
    return pyotp.TOTP(user.mfa_secret).at(utcnow() + timedelta(seconds=30 * steps_ahead))


def with_mfa(session, user):
    """Turn two-step sign-in on for `user` (as enrolment does); returns their recovery codes."""
    mfa.start_enrolment(session, user)
    codes = mfa.confirm_enrolment(session, user, code_for(user, -1))
    session.commit()
    return codes


def post_form(client, page_url, data, post_url=None):
    csrf = csrf_token_from(text(client.get(page_url)))
    return client.post(post_url or page_url, data={**data, "csrf_token": csrf})


def send_code(client, code):
    return post_form(client, "/login/code", {"code": code})


def signed_in(client):
    return client.get("/").status_code == 200


# --- enrolment on the settings page ----------------------------------------------------------------------------

def test_enrolment_shows_qr_and_key_once_and_switches_on_only_with_a_right_code(client, auth, session, world):
    auth.login("priya@example.com")
    page = text(client.get("/settings/two-step"))
    assert "Set up two-step sign-in" in page
    assert post_form(client, "/settings/two-step", {}, "/settings/two-step/start").status_code == 302

    page = text(client.get("/settings/two-step"))
    priya = session.get(User, world.priya.id)
    session.refresh(priya)
    assert 'src="data:image/svg+xml' in page and "<script" not in page.split('id="mfa-qr"')[0][-2000:]
    assert mfa.grouped_key(priya.mfa_secret) in page and not priya.has_mfa

    wrong = post_form(client, "/settings/two-step", {"code": "000000"}, "/settings/two-step/confirm")
    assert wrong.status_code == 422 and mfa.WRONG_CODE in text(wrong)
    session.refresh(priya)
    assert not priya.has_mfa

    done = post_form(client, "/settings/two-step", {"code": code_for(priya)}, "/settings/two-step/confirm")
    assert done.status_code == 200 and done.headers["Cache-Control"] == "no-store"
    codes = re.findall(r"<li>([a-z2-9]{4}-[a-z2-9]{4}-[a-z2-9]{4})</li>", text(done))
    assert len(set(codes)) == 10
    session.refresh(priya)
    assert priya.has_mfa
    stored = {row.code_hash for row in session.scalars(sa.select(RecoveryCode).where(RecoveryCode.user_id == priya.id))}
    assert stored == {RecoveryCode.hash(c.replace("-", "")) for c in codes}  # hashed, never in clear

    after = text(client.get("/settings/two-step"))
    assert priya.mfa_secret not in after and mfa.grouped_key(priya.mfa_secret) not in after and "data:image" not in after
    [enabled] = entries(session, "mfa_enabled")
    assert enabled.after["mfa_secret"] == "[hidden]" and enabled.object_id == priya.id


# --- signing in with a code -----------------------------------------------------------------------------------

def test_sign_in_asks_for_the_code_and_the_half_way_browser_gets_nothing(app, client, auth, session, world):
    with_mfa(session, world.priya)
    token = users.issue_api_token(session, world.tom)  # someone else's token: the API answers only tokens
    session.commit()
    response = auth.login("priya@example.com")
    assert response.status_code == 302 and response.headers["Location"].endswith("/login/code")

    # Half-way: no page, no settings, no admin page, no API call counts as signed in.
    for url in ("/", "/settings", "/settings/two-step", "/supervisor", "/admin/users"):
        assert client.get(url).status_code in (302, 403), url
        assert "/login" in client.get(url).headers.get("Location", "/login")
    assert client.get("/api/v1/items").status_code == 401
    assert client.get("/api/v1/items", headers={"Authorization": f"Bearer {token}"}).status_code == 200

    assert send_code(client, code_for(world.priya)).status_code == 302
    assert signed_in(client)
    [password_ok] = entries(session, "sign_in_password")
    assert password_ok.after["second_step"] == "code"
    [sign_in] = entries(session, "sign_in")
    assert sign_in.after["second_step"] == "code"


def test_a_code_is_accepted_once(app, client, auth, session, world):
    with_mfa(session, world.priya)
    code = code_for(world.priya, 1)
    auth.login("priya@example.com")
    assert send_code(client, code).status_code == 302 and signed_in(client)
    auth.logout()

    auth.login("priya@example.com")
    replayed = send_code(client, code)
    assert replayed.status_code == 200 and mfa.WRONG_CODE in text(replayed)
    assert not signed_in(client)
    assert entries(session, "sign_in_failed")[-1].after["reason"] == "wrong code"


def test_a_recovery_code_works_once_and_its_use_is_recorded(app, client, auth, session, world):
    codes = with_mfa(session, world.priya)
    auth.login("priya@example.com")
    response = send_code(client, codes[3].upper())  # typed in capitals: still the code
    assert response.status_code == 302 and signed_in(client)
    [used] = entries(session, "recovery_code_used")
    assert used.object_id == world.priya.id and used.after["left"] == 9
    auth.logout()

    auth.login("priya@example.com")
    assert mfa.WRONG_CODE in text(send_code(client, codes[3]))
    assert not signed_in(client)


def test_new_recovery_codes_end_the_old_ones(app, client, auth, session, world):
    old = with_mfa(session, world.priya)
    auth.login("priya@example.com")
    send_code(client, code_for(world.priya))
    page = post_form(client, "/settings/two-step", {}, "/settings/two-step/recovery-codes")
    new = re.findall(r"<li>([a-z2-9]{4}-[a-z2-9]{4}-[a-z2-9]{4})</li>", text(page))
    assert len(new) == 10 and not set(new) & set(old)
    assert len(entries(session, "recovery_codes_regenerated")) == 1
    auth.logout()

    auth.login("priya@example.com")
    assert mfa.WRONG_CODE in text(send_code(client, old[0]))
    assert send_code(client, new[0]).status_code == 302 and signed_in(client)


def test_the_half_way_state_expires(app, client, auth, session, world, monkeypatch):
    with_mfa(session, world.priya)
    auth.login("priya@example.com")
    later = __import__("time").time() + 6 * 60

    class Later:
        @staticmethod
        def time():
            return later

    monkeypatch.setattr("queue_app.auth.views.time", Later)
    response = client.get("/login/code")
    assert response.status_code == 302 and response.headers["Location"].endswith("/login")
    assert "took too long" in text(client.get("/login"))
    assert client.post("/login/code", data={"code": code_for(world.priya)}).status_code in (302, 400)
    assert not signed_in(client)


@pytest.fixture
def limits(app, redis_url, monkeypatch):
    monkeypatch.setitem(app.config, "SIGN_IN_FAILURES_PER_ACCOUNT", 3)
    monkeypatch.setitem(app.config, "SIGN_IN_FAILURES_PER_ADDRESS", 5)
    limiter.reset()
    return app.config


def test_wrong_codes_count_against_the_sign_in_limits(app, client, auth, session, world, limits):
    with_mfa(session, world.priya)
    auth.login("priya@example.com", "wrong-password")  # one wrong password...
    auth.login("priya@example.com")
    for _ in range(2):  # ...and two wrong codes: three failures of the account
        assert send_code(client, "123456").status_code == 200
    refused = send_code(client, code_for(world.priya))
    assert refused.status_code == 429 and "Too many failed sign-ins" in text(refused)
    assert not signed_in(client)
    assert auth.login("priya@example.com").status_code == 429  # the password page shares the count
    assert [e.after["scope"] for e in entries(session, "sign_in_locked")] == ["account"]


# --- roles that require it ----------------------------------------------------------------------------------------

@pytest.fixture
def admin(app, session, make_user):
    make_user(email="ada@example.com", role="admin")
    session.commit()
    client = app.test_client()
    Auth(client).login("ada@example.com")
    return client


def test_admins_choose_the_roles_that_require_it(admin, app, client, auth, session, world):
    response = post_form(admin, "/admin/users/two-step", {"roles": ["supervisor", "admin"]})
    assert response.status_code == 302
    assert mfa.required_roles(session) == ["supervisor", "admin"]
    [change] = entries(session, "updated")[-1:]
    assert change.object_type == "mfa_policy" and change.after == {"roles": ["supervisor", "admin"]}
    assert post_form(admin, "/admin/users/two-step", {"roles": ["boss"]}).status_code == 422

    auth.login("priya@example.com")  # an executive: not asked
    assert client.get("/admin/users/two-step").status_code == 403


def test_a_role_that_requires_it_enrols_at_sign_in_before_any_page(app, client, auth, session, world):
    mfa.set_required_roles(session, ["supervisor"], actor=None)
    session.commit()
    response = auth.login("sam@example.com")
    assert response.headers["Location"].endswith("/login/enrol")
    assert client.get("/").status_code == 302 and client.get("/api/v1/items").status_code == 401

    page = client.get("/login/enrol")
    assert page.headers["Cache-Control"] == "no-store" and 'src="data:image/svg+xml' in text(page)
    sam = session.get(User, world.sup.id)
    session.refresh(sam)
    assert mfa.grouped_key(sam.mfa_secret) in text(page)
    wrong = post_form(client, "/login/enrol", {"code": "000000"})
    assert mfa.WRONG_CODE in text(wrong) and not signed_in(client)

    done = post_form(client, "/login/enrol", {"code": code_for(sam)})
    assert done.status_code == 200 and len(re.findall(r"<li>[a-z2-9-]{14}</li>", text(done))) == 10
    assert signed_in(client)
    session.refresh(sam)
    assert sam.has_mfa
    assert entries(session, "sign_in")[-1].after["second_step"] == "enrolment"

    auth.logout()  # next time: the code step
    assert auth.login("sam@example.com").headers["Location"].endswith("/login/code")


def test_service_accounts_are_not_affected(session, world):
    mfa.set_required_roles(session, list(mfa.ROLES), actor=None)
    service = users.create_service_account(session, name="Courier", teams=["Returns"])
    assert mfa.second_step(session, service) is None
    assert mfa.second_step(session, world.priya) == mfa.ENROL


# --- an admin's reset ------------------------------------------------------------------------------------------

def test_an_admin_resets_it_and_the_persons_sessions_end(admin, app, session, world):
    with_mfa(session, world.priya)
    priya = app.test_client()
    Auth(priya).login("priya@example.com")
    send_code(priya, code_for(world.priya))
    assert signed_in(priya)

    page = text(admin.get(f"/admin/users/{world.priya.id}"))
    assert 'id="reset-two-step"' in page
    response = post_form(admin, f"/admin/users/{world.priya.id}", {}, f"/admin/users/{world.priya.id}/two-step/reset")
    assert response.status_code == 302
    session.expire_all()
    assert not session.get(User, world.priya.id).has_mfa and session.get(User, world.priya.id).mfa_secret is None
    assert session.scalar(sa.select(sa.func.count()).select_from(RecoveryCode)) == 0
    assert not signed_in(priya)
    [reset] = entries(session, "mfa_reset")
    assert reset.actor_label == "ada@example.com" and reset.after == {"two_step": False, "mfa_secret": None}

    assert Auth(priya).login("priya@example.com").headers["Location"] == "/"  # no code asked any more


def test_cli_resets_it(runner, session, world):
    with_mfa(session, world.priya)
    result = runner.invoke(args=["users", "reset-two-step", "priya@example.com"])
    assert result.exit_code == 0, result.output
    session.expire_all()
    assert not session.get(User, world.priya.id).has_mfa
