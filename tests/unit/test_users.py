"""Accounts, sessions and tokens."""
import pytest
import sqlalchemy as sa

from queue_app.services.errors import Conflict, Invalid, NotFound
from queue_app.services.people import users


def test_passwords_are_hashed_and_checked(session, make_user):
    user = make_user(email="Alice@Example.com", password="s3cret-pass")
    assert user.email == "alice@example.com"
    assert "s3cret-pass" not in user.password_hash
    assert users.authenticate(session, "alice@example.com", "s3cret-pass") is user
    assert users.authenticate(session, "alice@example.com", "wrong-pass") is None
    assert users.authenticate(session, "nobody@example.com", "s3cret-pass") is None


def test_create_user_rules(session, make_team, make_user):
    make_team(name="Returns")
    make_user(email="bob@example.com", teams=["Returns"])
    with pytest.raises(Conflict):
        make_user(email="BOB@example.com")
    with pytest.raises(Invalid):
        make_user(email="not-an-email")
    with pytest.raises(Invalid):
        make_user(password="short")
    with pytest.raises(Invalid):
        make_user(role="owner")
    with pytest.raises(NotFound):
        make_user(teams=["Nope"])


def test_rotating_the_nonce_ends_sessions(session, make_user):
    user = make_user()
    cookie_id = user.get_id()
    assert users.user_for_session_id(session, cookie_id) is user
    users.end_all_sessions(session, user)
    assert users.user_for_session_id(session, cookie_id) is None
    assert users.user_for_session_id(session, user.get_id()) is user
    assert users.user_for_session_id(session, "garbage") is None


def test_password_change_needs_the_current_password(session, make_user):
    user = make_user(password="old-password-1")
    old_id = user.get_id()
    with pytest.raises(Invalid):
        users.change_password(session, user, "wrong", "new-password-1")
    users.change_password(session, user, "old-password-1", "new-password-1")
    assert user.check_password("new-password-1")
    assert users.user_for_session_id(session, old_id) is None


def test_api_tokens_are_stored_hashed(session, make_user):
    from queue_app.models import ApiToken

    user = make_user()
    token = users.issue_api_token(session, user)
    stored = session.scalars(sa.select(ApiToken)).one()
    assert stored.token_hash != token and token not in stored.token_hash
    assert users.user_for_token(session, token) is user
    assert users.user_for_token(session, token + "x") is None
    assert users.user_for_token(session, "") is None
