"""Two-step sign-in's rules: which codes are accepted (drift, never twice, never older), recovery
codes, the roles that require it; and the password links' tokens."""
from datetime import timedelta

import pyotp
import pytest
import sqlalchemy as sa

from queue_app.models import AccountLink, RecoveryCode
from queue_app.models.base import utcnow
from queue_app.services.errors import Conflict, Invalid
from queue_app.services.people import account_links, mfa, users


def at(user, when):
    return pyotp.TOTP(user.mfa_secret).at(when)


@pytest.fixture
def enrolled(session, make_user):
    """A user with two-step sign-in on (confirmed with a code a minute old) and their recovery codes."""
    user = make_user(email="ana@example.com")
    mfa.start_enrolment(session, user)
    start = utcnow() - timedelta(minutes=1)
    codes = mfa.confirm_enrolment(session, user, at(user, start), now=start)
    return user, codes


def test_enrolment_needs_a_right_code_and_happens_once(session, make_user):
    user = make_user()
    secret = mfa.start_enrolment(session, user)
    assert mfa.start_enrolment(session, user) == secret  # the page reloaded: the same secret
    assert "secret=" + secret in mfa.enrolment_uri(user) and "issuer=Backdesk" in mfa.enrolment_uri(user)
    with pytest.raises(Invalid):
        mfa.confirm_enrolment(session, user, "12345x")
    assert not user.has_mfa
    codes = mfa.confirm_enrolment(session, user, at(user, utcnow()))
    assert user.has_mfa and len(set(codes)) == 10
    with pytest.raises(Conflict):
        mfa.start_enrolment(session, user)


def test_codes_of_the_step_or_one_either_side_only_and_never_twice(session, enrolled):
    user, _codes = enrolled
    now = utcnow()
    assert mfa.complete_sign_in(session, user, at(user, now - timedelta(seconds=90)), now=now) is None  # too old
    assert mfa.complete_sign_in(session, user, at(user, now + timedelta(seconds=90)), now=now) is None  # too new
    ahead = at(user, now + timedelta(seconds=30))
    assert mfa.complete_sign_in(session, user, ahead[:3] + " " + ahead[3:], now=now) == "code"  # spaces are fine
    assert mfa.complete_sign_in(session, user, ahead, now=now) is None  # used
    assert mfa.complete_sign_in(session, user, at(user, now), now=now) is None  # a step before the last used


def test_recovery_codes_work_once_and_new_ones_end_the_old(session, enrolled):
    user, codes = enrolled
    assert mfa.complete_sign_in(session, user, codes[0].replace("-", " ").upper()) == "recovery_code"
    assert mfa.complete_sign_in(session, user, codes[0]) is None
    assert mfa.recovery_codes_left(session, user) == 9
    new = mfa.regenerate_recovery_codes(session, user)
    assert mfa.complete_sign_in(session, user, codes[1]) is None
    assert mfa.complete_sign_in(session, user, new[1]) == "recovery_code"
    stored = session.scalars(sa.select(RecoveryCode.code_hash)).all()
    assert not any(code.replace("-", "") in stored for code in new)


def test_turning_off_forgets_secret_and_codes(session, enrolled):
    user, _codes = enrolled
    users.reset_mfa(session, user, actor=None)
    assert not user.has_mfa and user.mfa_secret is None and user.mfa_last_step is None
    assert mfa.recovery_codes_left(session, user) == 0
    assert mfa.complete_sign_in(session, user, "123456") is None


def test_required_roles(session, make_user):
    assert mfa.set_required_roles(session, ["admin", "supervisor", "admin"], actor=None) == ["supervisor", "admin"]
    boss = make_user(role="supervisor")
    assert mfa.second_step(session, boss) == mfa.ENROL
    assert mfa.second_step(session, make_user()) is None
    with pytest.raises(Invalid):
        mfa.set_required_roles(session, ["service"], actor=None)
    assert mfa.set_required_roles(session, [], actor=None) == []
    assert mfa.second_step(session, boss) is None


def test_a_link_token_is_derived_not_stored(app, session, make_user):
    user = make_user(email="ben@example.com")
    account_links.request_reset(session, "BEN@example.com ")
    link = session.scalar(sa.select(AccountLink))
    _to, _subject, body = account_links.mail_for(link)
    token = body.split("/password/reset/")[1].split()[0]
    assert account_links.link_for(session, "password_reset", token) is link
    with pytest.raises(account_links.LinkUnusable):
        account_links.link_for(session, "invitation", token)  # a reset link is no invitation
    app.config["SECRET_KEY"], key = "another-key", app.config["SECRET_KEY"]
    try:
        assert account_links.mail_for(link)[2] != body  # the key is part of it
    finally:
        app.config["SECRET_KEY"] = key
    assert user.id == link.user_id and token not in (link.salt, link.token_hash)
