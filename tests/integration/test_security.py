"""Security headers and refused input (queue_app/web/security.py, the base form, the API's body
parsing): a clear 4xx for what no person sends, never a 500, and nothing stored."""
import base64
import json
import re

import pytest
import sqlalchemy as sa

from queue_app.models import Message, WorkItem
from queue_app.services.items.work_types import fields_of
from queue_app.services.people.users import issue_api_token
from tests.conftest import Auth, csrf_token_from

API = "/api/v1"
HUGE = 2 ** 70
TOO_BIG = [2 ** 31, 2 ** 40, HUGE]  # above an INTEGER column on PostgreSQL, above BIGINT too
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
       "base-uri 'self'; form-action 'self'; frame-ancestors 'none'")


def text(response):
    return response.get_data(as_text=True)


@pytest.fixture
def world(session, make_team, make_user, make_item):
    team = make_team(name="Returns", work_types=["return"])
    admin = make_user(email="admin@example.com", role="admin", teams=[team])
    item = make_item(team=team, assignee=admin, subject="Parcel never arrived")
    token = issue_api_token(session, admin)
    session.commit()
    return type("World", (), dict(team=team, admin=admin, item=item, token=token,
                                  api={"Authorization": f"Bearer {token}"}))


@pytest.fixture
def admin(client, world):
    Auth(client).login("admin@example.com")
    return client


def messages_of(session, item):
    session.expire_all()
    return session.scalars(sa.select(Message).where(Message.work_item_id == item.id)).all()


def assert_common_headers(response):
    assert response.headers["Content-Security-Policy"] == CSP
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"


# --- headers ----------------------------------------------------------------------------------

def test_a_signed_in_page_carries_the_headers_and_is_not_cached(admin):
    response = admin.get("/")
    assert response.status_code == 200
    assert_common_headers(response)
    assert response.headers["Cache-Control"] == "no-store"
    assert "Strict-Transport-Security" not in response.headers  # production only


def test_the_login_page_carries_the_headers(client):
    response = client.get("/login")
    assert_common_headers(response)


def test_an_api_response_carries_the_headers_and_is_not_cached(client, world):
    response = client.get(f"{API}/items/{world.item.ref}", headers=world.api)
    assert response.status_code == 200
    assert_common_headers(response)
    assert response.headers["Cache-Control"] == "no-store"


def test_a_static_file_carries_the_headers_and_stays_cacheable(admin):
    response = admin.get("/static/backdesk.css")
    assert response.status_code == 200
    assert_common_headers(response)
    assert "no-store" not in response.headers.get("Cache-Control", "")
    response.close()


def test_hsts_only_in_production(app, client):
    app.config["SEND_HSTS"] = True
    try:
        assert client.get("/login").headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    finally:
        app.config["SEND_HSTS"] = False
    from config import ProductionConfig, TestingConfig
    assert ProductionConfig.SEND_HSTS and not TestingConfig.SEND_HSTS


def test_an_attachment_keeps_its_own_stricter_policy(admin, session, world):
    from queue_app.services.items import attachments
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
    attachment = attachments.attach_file(session, world.item, actor=world.admin, filename="photo.png", data=png,
                                         declared_type="image/png")
    session.commit()
    response = admin.get(f"/items/{world.item.ref}/attachments/{attachment.id}")
    assert response.status_code == 200
    assert response.headers["Content-Security-Policy"] == "default-src 'none'"
    assert response.headers["X-Frame-Options"] == "DENY"


# --- no inline script -------------------------------------------------------------------------

PAGES = ["/", "/search?q=parcel", "/submit", "/settings", "/supervisor", "/supervisor/approvals",
         "/supervisor/reports", "/supervisor/people", "/admin/quarantine", "/admin/teams", "/admin/users",
         "/admin/sla", "/admin/routing", "/admin/mailboxes", "/admin/mail-fields", "/admin/canned",
         "/admin/audit"]


def assert_no_inline_code(html, url):
    scripts = re.findall(r"<script\b[^>]*>", html, re.I)
    assert all("src=" in tag for tag in scripts), (url, scripts)
    assert not re.search(r"<style\b", html, re.I), url
    assert not re.search(r"\son[a-z]+\s*=", html, re.I), url
    assert not re.search(r"\sstyle\s*=", html, re.I), url
    assert "javascript:" not in html.lower(), url


def test_no_page_has_inline_script_or_style(admin, client, world):
    for url in PAGES + [f"/items/{world.item.ref}", f"/supervisor/people/{world.admin.id}/items",
                        f"/supervisor/people/{world.admin.id}/absence", f"/admin/users/{world.admin.id}",
                        f"/admin/teams/{world.team.id}"]:
        response = admin.get(url)
        assert response.status_code == 200, url
        assert_no_inline_code(text(response), url)
    Auth(admin).logout()
    assert_no_inline_code(text(client.get("/login")), "/login")


# --- control characters -----------------------------------------------------------------------

def test_nul_in_the_login_email_is_a_form_error(client, world):
    page = client.get("/login")
    response = client.post("/login", data={"email": "admin\x00@example.com", "password": "x",
                                           "csrf_token": csrf_token_from(text(page))})
    assert response.status_code in (200, 400), response.status_code
    assert "not allowed" in text(response)


def test_nul_in_an_api_subject_is_a_422_naming_the_field(client, session, world):
    before = session.scalar(sa.select(sa.func.count()).select_from(WorkItem))
    response = client.post(f"{API}/items", headers=world.api, json={
        "type": "general", "subject": "Refund\x00please", "team": "Returns"})
    assert response.status_code == 422, text(response)
    assert "subject" in response.get_json()["error"]["fields"]
    assert session.scalar(sa.select(sa.func.count()).select_from(WorkItem)) == before


def test_control_characters_nested_in_api_fields_are_refused(client, world):
    response = client.patch(f"{API}/items/{world.item.ref}/fields", headers=world.api,
                            json={"fields": {"reason": "bad\x1bsize"}})
    assert response.status_code == 422
    assert "fields" in response.get_json()["error"]["fields"]


def test_nul_in_an_api_note_is_refused_and_a_newline_is_not(client, session, world):
    response = client.post(f"{API}/items/{world.item.ref}/notes", headers=world.api, json={"body": "a\x00b"})
    assert response.status_code == 422
    assert messages_of(session, world.item) == []
    response = client.post(f"{API}/items/{world.item.ref}/notes", headers=world.api,
                           json={"body": "line one\r\n\tline two"})
    assert response.status_code == 201


def test_nul_in_a_note_form_is_a_form_error_and_nothing_is_stored(admin, session, world):
    csrf = csrf_token_from(text(admin.get(f"/items/{world.item.ref}")))
    response = admin.post(f"/items/{world.item.ref}/notes", data={"note": "hello\x00", "csrf_token": csrf},
                          follow_redirects=True)
    assert response.status_code < 500
    assert "not allowed" in text(response)
    assert messages_of(session, world.item) == []


def test_nul_in_the_intake_form_is_a_form_error_and_nothing_is_stored(admin, session, world):
    before = session.scalar(sa.select(sa.func.count()).select_from(WorkItem))
    csrf = csrf_token_from(text(admin.get("/submit")))
    response = admin.post("/submit", data={"type": "general", "subject": "Help\x00", "description": "x",
                                           "requester_email": "c@example.com", "csrf_token": csrf})
    assert response.status_code < 500
    assert "not allowed" in text(response)
    assert session.scalar(sa.select(sa.func.count()).select_from(WorkItem)) == before


@pytest.mark.parametrize("url", ["/search?q=a%00b", "/?status=open%00", "/search?q=%1b[2J",
                                 "/admin/audit?who=a%00", f"{API}/items?status=%00"])
def test_control_characters_in_a_query_string_are_a_400(admin, world, url):
    response = admin.get(url, headers=world.api if url.startswith(API) else {})
    assert response.status_code == 400, url


# --- bounded integers -------------------------------------------------------------------------

ROUTES = ["/admin/users/{n}", "/admin/teams/{n}", "/admin/quarantine/{n}", "/supervisor/people/{n}/items",
          "/items/BO-{n}", "/items/BO-000001/attachments/{n}", "/admin/sla/policies/{n}"]


@pytest.mark.parametrize("number", TOO_BIG)
def test_a_huge_id_in_a_route_is_a_404(admin, number):
    for url in ROUTES:
        assert admin.get(url.format(n=number)).status_code == 404, url


QUERIES = ["/supervisor?after=none_{n}", "/supervisor/approvals?after={n}",
           "/admin/quarantine?after=20260101T000000.000000Z_{n}", "/?assignee={n}", "/supervisor?team={n}",
           "/admin/mail-fields?team={n}", "/admin/audit?before={n}", "/search?q=x&before={n}",
           "/items/BO-000001?canned={n}", "/?team_after=none_{n}", "/?after=a0_none_{n}"]


@pytest.mark.parametrize("number", TOO_BIG)
def test_a_huge_number_in_a_query_string_is_a_400(admin, number):
    for url in QUERIES:
        assert admin.get(url.format(n=number)).status_code == 400, url


def test_the_queue_refresh_stamp_is_not_taken_for_an_id(admin):
    assert admin.get(f"/queue/refresh?stamp=1.{HUGE}.3.1764633600000-29410560").status_code in (200, 204)


def test_a_long_number_can_still_be_searched_for(admin):
    assert admin.get(f"/search?q={HUGE}").status_code == 200


def test_a_huge_version_in_a_form_is_a_form_error(admin, session, world):
    csrf = csrf_token_from(text(admin.get(f"/items/{world.item.ref}")))
    response = admin.post(f"/items/{world.item.ref}/status", data={
        "status": "open", "version": str(2 ** 40), "csrf_token": csrf}, follow_redirects=True)
    assert response.status_code < 500
    assert "out of range" in text(response)
    session.expire_all()
    assert session.get(WorkItem, world.item.id).status == "new"


def test_a_huge_id_in_the_bulk_selection_is_refused(admin, world):
    csrf = csrf_token_from(text(admin.get("/supervisor")))
    for number in TOO_BIG:
        response = admin.post("/supervisor/assign", data={"item": [f"{number}:"],
                                                          "assignee_id": str(world.admin.id), "csrf_token": csrf})
        assert response.status_code < 500


@pytest.mark.parametrize("number", TOO_BIG)
def test_huge_numbers_in_the_api_are_422(client, world, number):
    cursor = base64.urlsafe_b64encode(json.dumps({"id": number}).encode()).decode().rstrip("=")
    for path in (f"/items?cursor={cursor}", f"/approvals?cursor={cursor}", f"/items?limit={number}"):
        response = client.get(f"{API}{path}", headers=world.api)
        assert response.status_code in (400, 422), path
        assert response.get_json()["error"]["code"]
    response = client.post(f"{API}/items/{world.item.ref}/status", headers=world.api,
                           json={"status": "open", "version": number})
    assert response.status_code == 422
    assert "version" in response.get_json()["error"]["fields"]


def test_nul_in_an_item_detail_is_refused_and_nothing_is_stored(admin, session, world):
    csrf = csrf_token_from(text(admin.get(f"/items/{world.item.ref}")))
    response = admin.post(f"/items/{world.item.ref}/fields", data={
        "field-reason": "Wrong\x00size", "field-order_number": "ORD-1001", "field-purchase_date": "2026-11-01",
        "field-amount": "49.90", "field-currency": "EUR", "version": str(world.item.version), "csrf_token": csrf},
        follow_redirects=True)
    assert response.status_code < 500
    assert "not allowed" in text(response)
    session.expire_all()
    assert fields_of(session.get(WorkItem, world.item.id))["reason"] == "Wrong size"
