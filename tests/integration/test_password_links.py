"""Password reset and invitations: the same answer for any address, links mailed once through the
outbox, single use and expiry, sessions and API tokens ended by a reset, and invitations end to end."""
import email
import email.policy
import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from queue_app.extensions import limiter
from queue_app.models import AccountLink, ApiToken, ConfigChange, OutboxJob, User
from queue_app.models.base import utcnow
from queue_app.services.errors import Invalid
from queue_app.services.people import account_links, users
from tests.conftest import Auth, csrf_token_from
from tests.factories import PASSWORD
from workers.mail_out import send_account_link

NEW_PASSWORD = "a-brand-new-secret"


def text(response):
    return response.get_data(as_text=True)


@pytest.fixture
def outbox_dir(app, tmp_path, monkeypatch):
    monkeypatch.setitem(app.config, "INSTANCE_DIR", str(tmp_path))
    return tmp_path / "outbox"


def post_form(client, page_url, data, post_url=None):
    csrf = csrf_token_from(text(client.get(page_url)))
    return client.post(post_url or page_url, data={**data, "csrf_token": csrf})


def ask_reset(client, address):
    return post_form(client, "/password/forgot", {"email": address})


def links(session, purpose=None):
    session.expire_all()
    query = sa.select(AccountLink).order_by(AccountLink.id)
    if purpose:
        query = query.where(AccountLink.purpose == purpose)
    return session.scalars(query).all()


def send_jobs(session):
    return session.scalars(sa.select(OutboxJob).where(OutboxJob.job_path == account_links.SEND_JOB)).all()


def mailed_link(outbox_dir, link):
    """Run the mail job for `link` and return (the mail, the path of the link in it). The job ends
    the test's database session as it ends its own: rows read before are detached after."""
    link_id = link.id
    assert send_account_link(link_id) == "sent"
    mail = email.message_from_bytes((outbox_dir / f"account-link-{link_id}.eml").read_bytes(),
                                    policy=email.policy.default)
    url = re.search(r"http://127\.0\.0\.1:5000(/\S+)", mail.get_content()).group(1)
    return mail, url


def entries(session, action):
    session.expire_all()
    return session.scalars(sa.select(ConfigChange).where(ConfigChange.action == action)
                           .order_by(ConfigChange.id)).all()


# --- asking for a reset -------------------------------------------------------------------------------------------

def test_the_answer_is_the_same_for_any_address_and_only_an_active_account_gets_a_link(app, client, session, world):
    world.tom.is_active_user = False
    session.commit()
    answers = []
    for address in ("priya@example.com", "nobody@example.com", "tom@example.com"):
        response = ask_reset(app.test_client(), address)
        answers.append((response.status_code, response.headers["Location"]))
    assert len(set(answers)) == 1 and answers[0] == (302, "/login")
    [link] = links(session)
    assert link.user_id == world.priya.id and link.purpose == "password_reset" and link.to_address == "priya@example.com"
    assert [job.args for job in send_jobs(session)] == [[link.id]]
    requested = entries(session, "password_reset_requested")
    assert [(e.after["email"], e.after["link_sent"]) for e in requested] == [
        ("priya@example.com", True), ("nobody@example.com", False), ("tom@example.com", False)]


def test_the_flash_message_is_the_same_too(app, session, world):
    pages = []
    for address in ("priya@example.com", "nobody@example.com"):
        client = app.test_client()
        ask_reset(client, address)
        pages.append(re.search(r'<div class="flashes">.*?</div>\s*</div>', text(client.get("/login")), re.S).group(0))
    assert pages[0] == pages[1] and "If that address belongs to an account" in pages[0]


def test_the_token_is_not_stored_and_the_mail_goes_out_once(client, session, world, outbox_dir):
    ask_reset(client, "priya@example.com")
    [link] = links(session)
    link_id, token_hash = link.id, link.token_hash
    mail, url = mailed_link(outbox_dir, link)
    token = url.rsplit("/", 1)[1]
    assert mail["To"] == "priya@example.com" and url.startswith("/password/reset/")
    stored = " ".join(str(v) for row in session.execute(sa.select(AccountLink.__table__)).all() for v in row)
    stored += " ".join(str(job.args) for job in session.scalars(sa.select(OutboxJob)))
    assert token not in stored and token_hash in stored
    assert send_account_link(link_id) == "skipped"  # a re-run sends nothing
    assert sorted(p.name for p in outbox_dir.iterdir()) == [f"account-link-{link_id}.eml"]


# --- following the link -------------------------------------------------------------------------------------------

def test_a_reset_ends_every_session_and_api_token_and_the_link_works_once(app, client, session, world, outbox_dir):
    elsewhere = app.test_client()
    Auth(elsewhere).login("priya@example.com")
    assert elsewhere.get("/").status_code == 200
    token = users.issue_api_token(session, world.priya)
    priya_id = world.priya.id  # the mail job ends the test's session: world's rows are detached after it
    session.commit()
    ask_reset(client, "priya@example.com")
    _mail, url = mailed_link(outbox_dir, links(session)[0])

    page = client.get(url)
    assert page.status_code == 200 and "priya@example.com" in text(page) and page.headers["Cache-Control"] == "no-store"
    short = post_form(client, url, {"new_password": "short", "confirm": "short"})
    assert short.status_code == 422
    response = post_form(client, url, {"new_password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert response.status_code == 302 and response.headers["Location"] == "/login"

    assert elsewhere.get("/").status_code == 302  # signed out
    assert client.get("/api/v1/items", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    session.expire_all()
    assert session.scalar(sa.select(ApiToken).where(ApiToken.user_id == priya_id)).revoked_at is not None
    assert Auth(app.test_client()).login("priya@example.com", PASSWORD).status_code == 200  # old: refused
    assert Auth(app.test_client()).login("priya@example.com", NEW_PASSWORD).status_code == 302

    again = client.get(url)
    assert again.status_code == 410 and "already been used" in text(again)
    [reset] = entries(session, "password_reset")
    assert reset.after == {"password": "[hidden, changed]"} and NEW_PASSWORD not in str(reset.after)


def test_expired_and_unknown_links_say_so(client, session, world, outbox_dir):
    priya_id = world.priya.id
    ask_reset(client, "priya@example.com")
    _mail, url = mailed_link(outbox_dir, links(session)[0])
    [link] = links(session)
    link.expires_at = utcnow() - timedelta(seconds=1)
    session.commit()
    expired = client.get(url)
    assert expired.status_code == 410 and "This link has expired." in text(expired)
    assert client.post(url, data={"new_password": NEW_PASSWORD, "confirm": NEW_PASSWORD}).status_code in (400, 410)
    unknown = client.get("/password/reset/not-a-token")
    assert unknown.status_code == 404 and "This link is not valid." in text(unknown)
    assert client.get("/password/reset/" + "x" * 5000).status_code == 404
    session.expire_all()
    assert session.get(User, priya_id).check_password(PASSWORD)


def test_a_link_not_sent_before_it_died_is_not_sent(client, session, world, outbox_dir):
    ask_reset(client, "priya@example.com")
    [link] = links(session)
    link.expires_at = utcnow() - timedelta(seconds=1)
    session.commit()
    assert send_account_link(link.id) == "skipped" and not outbox_dir.exists()


@pytest.fixture
def reset_limits(app, redis_url, monkeypatch):
    monkeypatch.setitem(app.config, "PASSWORD_RESET_REQUESTS_PER_ACCOUNT", 2)
    monkeypatch.setitem(app.config, "PASSWORD_RESET_REQUESTS_PER_ADDRESS", 4)
    limiter.reset()


def from_address(app, address):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def test_reset_requests_are_limited_per_address_asked_for_and_per_client(app, session, world, reset_limits):
    for n, address in enumerate(("priya@example.com", "nobody@example.com")):
        for i in range(2):
            assert ask_reset(from_address(app, f"10.0.{n}.{i}"), address).status_code == 302
        refused = ask_reset(from_address(app, f"10.0.{n}.9"), address)  # the same for an address nobody has
        assert refused.status_code == 429 and "Too many password reset requests" in text(refused)
        assert refused.headers["Retry-After"]
    client = from_address(app, "10.0.5.5")
    for address in ("tom@example.com", "lena@example.com", "sam@example.com", "x@example.com"):
        assert ask_reset(client, address).status_code == 302
    assert ask_reset(client, "y@example.com").status_code == 429  # five from one client
    assert len(links(session)) == 5  # priya twice, tom, lena, sam


# --- invitations --------------------------------------------------------------------------------------------------

@pytest.fixture
def admin(app, session, make_user):
    make_user(email="ada@example.com", role="admin")
    session.commit()
    client = app.test_client()
    Auth(client).login("ada@example.com")
    return client


def new_person(admin, world, **changes):
    data = {"email": "nina@example.com", "name": "Nina Park", "role": "executive", "timezone": "UTC",
            "capacity": "7", "skills": ["return"], "teams": [str(world.returns.id)], "active": "y", **changes}
    return post_form(admin, "/admin/users/new", data)


def test_an_invitation_end_to_end(app, admin, session, world, outbox_dir):
    assert 'name="password"' not in text(admin.get("/admin/users/new"))
    assert new_person(admin, world).status_code == 302
    nina_id = users.get_user_by_email(session, "nina@example.com").id
    [link] = links(session, "invitation")
    assert [job.args for job in send_jobs(session)] == [[link.id]]
    assert link.expires_at - link.created_at == timedelta(days=7)
    assert entries(session, "created")[-1].object_type == "account_link"

    link_id = link.id
    mail, url = mailed_link(outbox_dir, link)
    assert send_account_link(link_id) == "skipped"
    assert mail["Subject"] == "You are invited to Backdesk" and url.startswith("/invitation/")
    assert len(list(outbox_dir.iterdir())) == 1  # the mail went out once
    assert "Not accepted yet" in text(admin.get(f"/admin/users/{nina_id}"))

    nina_client = app.test_client()
    page = nina_client.get(url)
    assert page.status_code == 200 and "Welcome to Backdesk" in text(page)
    assert post_form(nina_client, url, {"new_password": NEW_PASSWORD, "confirm": NEW_PASSWORD}).status_code == 302
    assert Auth(nina_client).login("nina@example.com", NEW_PASSWORD).status_code == 302
    assert nina_client.get("/").status_code == 200
    assert nina_client.get(url).status_code == 410
    assert len(entries(session, "invitation_accepted")) == 1
    assert "Accepted." in text(admin.get(f"/admin/users/{nina_id}"))
    assert 'id="resend-invitation"' not in text(admin.get(f"/admin/users/{nina_id}"))


def test_a_resent_invitation_ends_the_first_link(app, admin, session, world, outbox_dir):
    new_person(admin, world)
    nina_id = users.get_user_by_email(session, "nina@example.com").id
    [first] = links(session, "invitation")
    first_hash = first.token_hash
    _mail, first_url = mailed_link(outbox_dir, first)

    page = f"/admin/users/{nina_id}"
    assert 'id="resend-invitation"' in text(admin.get(page))
    assert post_form(admin, page, {}, f"/admin/users/{nina_id}/invitation").status_code == 302
    [second] = links(session, "invitation")
    assert second.token_hash != first_hash and len(send_jobs(session)) == 2
    _mail, second_url = mailed_link(outbox_dir, second)

    assert app.test_client().get(first_url).status_code == 404
    client = app.test_client()
    assert post_form(client, second_url, {"new_password": NEW_PASSWORD, "confirm": NEW_PASSWORD}).status_code == 302
    with pytest.raises(Invalid):
        account_links.resend_invitation(session, session.get(User, nina_id), actor=None)


def test_an_inactive_person_gets_no_invitation_until_resent(admin, session, world):
    new_person(admin, world, active="")
    nina = users.get_user_by_email(session, "nina@example.com")
    assert links(session) == [] and not account_links.invitation_pending(session, nina)


def test_cli_invites_or_sets_a_password(runner, session, outbox_dir):
    result = runner.invoke(args=["users", "create", "mei@example.com", "--invite"])
    assert result.exit_code == 0 and "invitation mailed" in result.output
    [link] = links(session, "invitation")
    assert link.to_address == "mei@example.com"
    first_hash = link.token_hash
    result = runner.invoke(args=["users", "invite", "mei@example.com"])
    assert result.exit_code == 0, result.output
    [again] = links(session, "invitation")
    assert again.token_hash != first_hash
    result = runner.invoke(args=["users", "create", "kai@example.com", "--password", PASSWORD])
    assert result.exit_code == 0 and users.get_user_by_email(session, "kai@example.com").check_password(PASSWORD)
