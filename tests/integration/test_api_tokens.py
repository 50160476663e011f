"""API tokens through the real app: expiry, revocation (own, admin, CLI), deactivation, scopes,
service accounts, and the audit entries of issuing and revoking."""
from datetime import timedelta

import pytest
import sqlalchemy as sa

from queue_app.models import ApiToken, ConfigChange, WorkItem
from queue_app.models.base import utcnow
from queue_app.services.errors import Invalid, PermissionDenied
from queue_app.services.items import lifecycle
from queue_app.services.people import tokens, users
from tests.conftest import csrf_token_from
from tests.factories import PASSWORD, VALID_FIELDS

API = "/api/v1"


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def new_item(team="Returns", **overrides):
    return {"type": "return", "subject": "Parcel came back", "team": team, "requester_email": "c@example.com",
            "fields": VALID_FIELDS["return"], **overrides}


def error_of(response, status):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    return response.get_json()["error"]


def token_row(session, secret):
    return session.scalar(sa.select(ApiToken).where(ApiToken.token_hash == ApiToken.hash(secret)))


def token_entries(session, action=None):
    query = sa.select(ConfigChange).where(ConfigChange.object_type == "api_token").order_by(ConfigChange.id)
    if action:
        query = query.where(ConfigChange.action == action)
    return session.scalars(query).all()


@pytest.fixture
def people(session, make_team, make_user):
    class People:
        returns = make_team(name="Returns", work_types=["return"])
        payments = make_team(name="Payments", work_types=["discrepancy_fix"])
        exec1 = make_user(email="exec1@example.com", teams=[returns])
        admin = make_user(email="admin@example.com", role="admin")
    session.commit()
    return People


def test_a_token_expires_after_api_token_days(app, client, session, people):
    row, secret = tokens.issue(session, people.exec1, "partner")
    session.commit()
    assert row.expires_at - row.created_at == timedelta(days=app.config["API_TOKEN_DAYS"]) == timedelta(days=90)
    assert row.scope_list == ["read", "write"]
    assert row.token_hash != secret and secret not in str(token_entries(session)[0].after)
    assert client.get(f"{API}/items", headers=bearer(secret)).status_code == 200
    row.expires_at = utcnow() - timedelta(seconds=1)
    session.commit()
    response = client.get(f"{API}/items", headers=bearer(secret))
    assert "expired" in error_of(response, 401)["message"]
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_last_used_is_written_at_most_once_a_minute(session, people):
    row, secret = tokens.issue(session, people.exec1, "partner")
    start = utcnow()
    assert tokens.check(session, secret, start)[0] is row and row.last_used_at == start
    tokens.check(session, secret, start + timedelta(seconds=30))
    assert row.last_used_at == start
    tokens.check(session, secret, start + timedelta(seconds=61))
    assert row.last_used_at == start + timedelta(seconds=61)


def test_people_create_list_and_revoke_their_own_tokens_on_the_settings_page(client, auth, session, people):
    other_row, other_secret = tokens.issue(session, people.admin, "admin's")
    session.commit()
    auth.login("exec1@example.com")
    page = client.get("/settings")
    assert page.status_code == 200 and 'id="api-tokens"' in page.get_data(as_text=True)
    csrf = csrf_token_from(page.get_data(as_text=True))
    created = client.post("/settings/tokens", data={"name": "my script", "scopes": ["read"], "csrf_token": csrf})
    assert created.status_code == 201
    secret = created.get_data(as_text=True).split('id="token-secret">')[1].split("<")[0]
    row = token_row(session, secret)
    assert row.user_id == people.exec1.id and row.scope_list == ["read"] and row.name == "my script"
    assert client.get(f"{API}/items", headers=bearer(secret)).status_code == 200
    listed = client.get("/settings").get_data(as_text=True)
    assert "my script" in listed and secret not in listed and f'data-token="{other_row.id}"' not in listed

    assert client.post(f"/settings/tokens/{row.id}/revoke").status_code == 400  # no CSRF token
    assert client.post(f"/settings/tokens/{other_row.id}/revoke", data={"csrf_token": csrf}).status_code == 404
    response = client.post(f"/settings/tokens/{row.id}/revoke", data={"csrf_token": csrf})
    assert response.status_code == 302
    session.expire_all()
    assert token_row(session, secret).revoked_at is not None and token_row(session, other_secret).revoked_at is None
    assert "revoked" in error_of(client.get(f"{API}/items", headers=bearer(secret)), 401)["message"]

    created_entry, = token_entries(session, "created")[-1:]
    assert created_entry.actor_id == people.exec1.id and created_entry.after["scopes"] == ["read"]
    assert created_entry.after["token"] == "[hidden]"
    revoked, = token_entries(session, "updated")
    assert revoked.object_id == row.id and revoked.before == {"revoked_at": None} and revoked.after["revoked_at"]


def test_admins_list_issue_and_revoke_anyones_tokens(client, auth, session, people):
    row, secret = tokens.issue(session, people.exec1, "partner")
    session.commit()
    auth.login("admin@example.com")
    page = client.get(f"/admin/users/{people.exec1.id}")
    html = page.get_data(as_text=True)
    assert f'data-token="{row.id}"' in html and "partner" in html
    csrf = csrf_token_from(html)
    issued = client.post(f"/admin/users/{people.exec1.id}/tokens",
                         data={"name": "for them", "scopes": ["read", "write"], "csrf_token": csrf})
    assert issued.status_code == 201 and 'id="token-secret"' in issued.get_data(as_text=True)
    response = client.post(f"/admin/users/{people.exec1.id}/tokens/{row.id}/revoke", data={"csrf_token": csrf})
    assert response.status_code == 302
    assert error_of(client.get(f"{API}/items", headers=bearer(secret)), 401)
    entry = token_entries(session, "updated")[-1]
    assert entry.actor_id == people.admin.id and entry.object_id == row.id


def test_executives_cannot_reach_the_admin_token_pages(client, auth, session, people):
    row, _secret = tokens.issue(session, people.admin, "admin's")
    session.commit()
    auth.login("exec1@example.com")
    csrf = csrf_token_from(client.get("/settings").get_data(as_text=True))
    response = client.post(f"/admin/users/{people.admin.id}/tokens/{row.id}/revoke", data={"csrf_token": csrf})
    assert response.status_code in (403, 404)
    session.expire_all()
    assert session.get(ApiToken, row.id).revoked_at is None


def test_cli_lists_and_revokes_tokens(runner, client, session, people):
    result = runner.invoke(args=["users", "token", "exec1@example.com", "--name", "nightly", "--scope", "read"])
    assert result.exit_code == 0, result.output
    secret = result.output.strip()
    row = token_row(session, secret)
    listed = runner.invoke(args=["users", "tokens", "exec1@example.com"])
    assert listed.exit_code == 0 and "nightly" in listed.output and "active" in listed.output
    assert secret not in listed.output
    revoked = runner.invoke(args=["users", "revoke-token", str(row.id)])
    assert revoked.exit_code == 0, revoked.output
    assert "revoked" in runner.invoke(args=["users", "tokens", "exec1@example.com"]).output
    assert error_of(client.get(f"{API}/items", headers=bearer(secret)), 401)
    assert runner.invoke(args=["users", "revoke-token", "999999"]).exit_code != 0
    entry = token_entries(session, "updated")[-1]
    assert entry.actor_label.startswith("cli:") and entry.object_id == row.id


def test_deactivating_revokes_every_token_for_good(client, session, people):
    _row, secret = tokens.issue(session, people.exec1, "partner")
    session.commit()
    person = people.exec1

    def save(active):
        users.update_user(session, person, actor=people.admin, name=person.name, role=person.role,
                          team_ids=[t.id for t in person.teams], skills=person.skills, capacity=person.capacity,
                          timezone=person.timezone, active=active)
        session.commit()

    save(False)
    assert error_of(client.get(f"{API}/items", headers=bearer(secret)), 401)
    save(True)
    response = client.get(f"{API}/items", headers=bearer(secret))
    assert "revoked" in error_of(response, 401)["message"]
    assert token_entries(session, "updated")[-1].actor_id == people.admin.id


def test_each_endpoint_needs_its_scope(client, session, people, make_item):
    item = make_item(team=people.returns)
    session.commit()
    read_only = tokens.issue(session, people.exec1, "reader", scopes=["read"])[1]
    write_only = tokens.issue(session, people.exec1, "writer", scopes=["write"])[1]
    intake_only = tokens.issue(session, people.exec1, "filer", scopes=["intake"])[1]
    session.commit()
    assert client.get(f"{API}/items/{item.ref}", headers=bearer(read_only)).status_code == 200
    error = error_of(client.post(f"{API}/items/{item.ref}/notes", json={"body": "x"}, headers=bearer(read_only)), 403)
    assert "write" in error["message"] and "scope" in error["message"]
    assert "read" in error_of(client.get(f"{API}/items", headers=bearer(write_only)), 403)["message"]
    assert error_of(client.post(f"{API}/items", json=new_item(), headers=bearer(read_only)), 403)
    assert client.post(f"{API}/items", json=new_item(), headers=bearer(write_only)).status_code == 201
    assert client.post(f"{API}/items", json=new_item(), headers=bearer(intake_only)).status_code == 201
    assert error_of(client.get(f"{API}/items", headers=bearer(intake_only)), 403)
    assert client.get(f"{API}/openapi.json").status_code == 200


def test_every_api_endpoint_declares_its_scopes(app):
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("api.") and rule.endpoint != "api.openapi":
            scopes = getattr(app.view_functions[rule.endpoint], "token_scopes", ())
            assert scopes, rule.endpoint
            if rule.methods & {"GET"}:
                assert scopes == ("read",), rule.endpoint


@pytest.fixture
def partner(runner, session, people):
    result = runner.invoke(args=["users", "add-service", "Courier Partner", "--team", "Returns"])
    assert result.exit_code == 0, result.output
    account = users.get_user_by_email(session, "courier-partner@service.invalid")
    secret = runner.invoke(args=["users", "token", account.email]).output.strip()
    return account, secret


def test_a_service_account_files_items_for_its_teams_and_reads_only_those(client, session, people, partner,
                                                                         make_item):
    account, secret = partner
    assert account.is_service and account.teams == [] and [t.name for t in account.intake_teams] == ["Returns"]
    assert token_row(session, secret).scope_list == ["read", "intake"]
    created = client.post(f"{API}/items", json=new_item(), headers=bearer(secret))
    assert created.status_code == 201, created.get_data(as_text=True)
    ref = created.get_json()["ref"]
    error_of(client.post(f"{API}/items", json=new_item(team="Payments", type="discrepancy_fix",
                                                      fields=VALID_FIELDS["discrepancy_fix"]),
                         headers=bearer(secret)), 403)
    error_of(client.post(f"{API}/items", json=new_item(assignee="exec1@example.com"), headers=bearer(secret)), 403)
    someone_elses = make_item(team=people.returns)
    session.commit()
    assert client.get(f"{API}/items/{ref}", headers=bearer(secret)).status_code == 200
    assert client.get(f"{API}/items/{ref}/events", headers=bearer(secret)).status_code == 200
    error_of(client.get(f"{API}/items/{someone_elses.ref}", headers=bearer(secret)), 404)
    listed = client.get(f"{API}/items", headers=bearer(secret)).get_json()["items"]
    assert [i["ref"] for i in listed] == [ref]
    error_of(client.post(f"{API}/items/{ref}/notes", json={"body": "x"}, headers=bearer(secret)), 403)
    assert session.scalar(sa.select(sa.func.count()).select_from(WorkItem)) == 2

    # The rule holds below the API too, whatever the token.
    mine = session.scalar(sa.select(WorkItem).where(WorkItem.ref == ref))
    with pytest.raises(PermissionDenied):
        lifecycle.add_note(session, mine, actor=account, body="x")
    with pytest.raises(PermissionDenied):
        lifecycle.change_status(session, mine, "open", actor=account)
    with pytest.raises(Invalid):
        tokens.issue(session, account, "too much", scopes=["write"])


def test_a_service_account_cannot_sign_in_on_the_web(client, auth, session, people, partner):
    account, _secret = partner
    account.set_password(PASSWORD)  # even if someone knew a password
    session.commit()
    response = auth.login(account.email, PASSWORD)
    assert response.status_code != 302
    assert "Unknown email or wrong password." in response.get_data(as_text=True)
    assert client.get("/settings").status_code == 302
    entry = session.scalars(sa.select(ConfigChange).where(ConfigChange.action == "sign_in_failed")).all()[-1]
    assert entry.after["reason"] == "service account"


def test_cli_refuses_a_service_account_without_a_team(runner, people):
    result = runner.invoke(args=["users", "add-service", "Nobody"])
    assert result.exit_code != 0
    result = runner.invoke(args=["users", "add-service", "Ghost", "--team", "No such"])
    assert result.exit_code != 0 and "no team" in result.output


def test_admins_add_a_service_account_on_the_people_pages(client, auth, session, people):
    auth.login("admin@example.com")
    page = client.get("/admin/users/new-service")
    csrf = csrf_token_from(page.get_data(as_text=True))
    response = client.post("/admin/users/new-service", data={"name": "Billing Bridge", "teams": [people.payments.id],
                                                             "csrf_token": csrf})
    assert response.status_code == 302, response.get_data(as_text=True)
    account = users.get_user_by_email(session, "billing-bridge@service.invalid")
    assert account.is_service and [t.name for t in account.intake_teams] == ["Payments"] and account.teams == []
    assert "Billing Bridge" in client.get("/admin/users").get_data(as_text=True)
    refused = client.post("/admin/users/new-service", data={"name": "No Team", "csrf_token": csrf})
    assert refused.status_code == 422
    entry = session.scalars(sa.select(ConfigChange).where(ConfigChange.object_type == "user")
                            .order_by(ConfigChange.id)).all()[-1]
    assert entry.object_id == account.id and entry.after["role"] == "service"
    assert entry.after["intake_teams"] == ["Payments"]


def test_no_token_for_a_deactivated_account(session, people):
    person = people.exec1
    users.update_user(session, person, actor=people.admin, name=person.name, role=person.role, team_ids=[],
                      skills=person.skills, capacity=person.capacity, timezone=person.timezone, active=False)
    with pytest.raises(Invalid):
        tokens.issue(session, person, "later")
