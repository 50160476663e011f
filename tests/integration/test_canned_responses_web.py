"""Canned responses on the web: who may manage them, CSRF, and inserting one on an item."""
import sqlalchemy as sa

from queue_app.models import CannedResponse
from tests.conftest import Auth, csrf_token_from


def text(response):
    return response.get_data(as_text=True)


def canned(session, **kw):
    response = CannedResponse(title=kw.pop("title", "Hello"), body=kw.pop("body", "Dear {requester_name},"), **kw)
    session.add(response)
    session.commit()
    return response


def form_post(client, url, data, page_url=None):
    token = csrf_token_from(text(client.get(page_url or url)))
    return client.post(url, data={**data, "csrf_token": token})


def titles(session):
    session.expire_all()
    return sorted(session.scalars(sa.select(CannedResponse.title)))


def test_supervisor_adds_a_response_for_their_team(client, auth, session, world):
    auth.login("sam@example.com")
    page = client.get("/admin/canned/new")
    assert page.status_code == 200 and "Available to" in text(page)
    assert "All teams" not in text(page)  # only admins keep global responses
    response = form_post(client, "/admin/canned/new", {
        "title": "Refund approved", "team": world.returns.id, "body": "Dear {requester_name}, done. {executive_name}",
        "active": "y"})
    assert response.status_code == 302 and response.headers["Location"] == "/admin/canned"
    listing = text(client.get("/admin/canned"))
    assert "Refund approved" in listing and "Returns" in listing
    saved = session.scalar(sa.select(CannedResponse))
    assert (saved.team_id, saved.created_by_id, saved.active) == (world.returns.id, world.sup.id, True)


def test_unknown_placeholder_is_shown_next_to_the_text_and_nothing_is_saved(client, auth, session, world):
    auth.login("sam@example.com")
    response = form_post(client, "/admin/canned/new", {
        "title": "Typo", "team": world.returns.id, "body": "Dear {requester_nmae}, {{7*7}}"})
    assert response.status_code == 422
    page = text(response)
    assert "Unknown placeholders {requester_nmae}, {7*7}" in page and 'id="body-error"' in page
    assert titles(session) == []


def test_supervisor_cannot_make_a_global_response_or_one_for_another_team(client, auth, session, world):
    auth.login("sam@example.com")
    for team_value in (0, world.docs.id):
        response = form_post(client, "/admin/canned/new", {"title": "Sneaky", "team": team_value, "body": "Hi"})
        assert response.status_code == 422, team_value
    assert titles(session) == []


def test_supervisor_of_another_team_cannot_see_or_edit_a_response(app, client, auth, session, world, make_user):
    make_user(email="dora@example.com", role="supervisor", teams=[world.docs])
    theirs = canned(session, title="Returns only", team_id=world.returns.id)
    everyone = canned(session, title="For everyone", team_id=None)
    auth.login("dora@example.com")
    assert "Returns only" not in text(client.get("/admin/canned"))
    for response_id in (theirs.id, everyone.id):
        assert client.get(f"/admin/canned/{response_id}").status_code == 404
        token = csrf_token_from(text(client.get("/admin/canned")))
        response = client.post(f"/admin/canned/{response_id}", data={
            "title": "Hijacked", "team": world.docs.id, "body": "x", "csrf_token": token})
        assert response.status_code == 404
        assert client.post(f"/admin/canned/{response_id}/delete", data={"csrf_token": token}).status_code == 404
    assert titles(session) == ["For everyone", "Returns only"]


def test_executive_cannot_manage_responses(client, auth, session, world):
    existing = canned(session, team_id=world.returns.id)
    auth.login("priya@example.com")
    token = csrf_token_from(text(client.get("/")))
    assert client.get("/admin/canned").status_code == 403
    assert client.get("/admin/canned/new").status_code == 403
    assert client.get(f"/admin/canned/{existing.id}").status_code == 403
    response = client.post("/admin/canned/new", data={"title": "Mine", "team": world.returns.id, "body": "x",
                                                      "csrf_token": token})
    assert response.status_code == 403
    assert client.post(f"/admin/canned/{existing.id}/delete", data={"csrf_token": token}).status_code == 403
    assert titles(session) == ["Hello"]
    # The other admin pages stay admins-only for supervisors too.
    Auth(client).logout()
    auth.login("sam@example.com")
    assert client.get("/admin/users").status_code == 403


def test_admin_keeps_global_responses_and_edits_deletes(client, auth, session, world, make_user):
    make_user(email="ada@example.com", role="admin")
    session.commit()
    auth.login("ada@example.com")
    response = form_post(client, "/admin/canned/new", {"title": "Thanks", "team": 0, "body": "Thanks, {requester_name}.",
                                                       "active": "y"})
    assert response.status_code == 302
    saved = session.scalar(sa.select(CannedResponse))
    assert saved.team_id is None
    edit_page = text(client.get(f"/admin/canned/{saved.id}"))
    assert "Thanks, {requester_name}." in edit_page and "Canned responses" in edit_page
    response = form_post(client, f"/admin/canned/{saved.id}", {"title": "Thanks!", "team": world.docs.id,
                                                               "body": "Thanks."})  # unchecked: inactive
    assert response.status_code == 302
    session.expire_all()
    assert (saved.title, saved.team_id, saved.active) == ("Thanks!", world.docs.id, False)
    response = form_post(client, f"/admin/canned/{saved.id}/delete", {}, page_url=f"/admin/canned/{saved.id}")
    assert response.status_code == 302 and titles(session) == []


def test_management_posts_without_csrf_token_are_refused(client, auth, session, world):
    existing = canned(session, team_id=world.returns.id)
    auth.login("sam@example.com")
    response = client.post("/admin/canned/new", data={"title": "No token", "team": world.returns.id, "body": "x"})
    assert response.status_code == 400 and "refused" in text(response)
    assert client.post(f"/admin/canned/{existing.id}/delete").status_code == 400
    assert titles(session) == ["Hello"]


def test_item_page_offers_the_items_responses_and_renders_them(client, auth, session, world, make_item):
    item = make_item(team=world.returns, assignee=world.priya)
    item.requester_name = "Ann <b>Kowalski</b>"
    ours = canned(session, title="Refund approved", team_id=world.returns.id,
                  body="Dear {requester_name}, {reference} is done. {executive_name}")
    canned(session, title="Docs only", team_id=world.docs.id)
    canned(session, title="Switched off", team_id=None, active=False)
    auth.login("priya@example.com")
    page = text(client.get(f"/items/{item.ref}"))
    assert 'id="canned-select"' in page and "Refund approved" in page
    assert "Docs only" not in page and "Switched off" not in page
    data = client.get(f"/items/{item.ref}/canned/{ours.id}").get_json()
    assert data == {"title": "Refund approved",
                    "text": f"Dear Ann <b>Kowalski</b>, {item.ref} is done. Priya Nair"}
    # Without JavaScript: the page comes back with the text in the reply box, escaped.
    fallback = text(client.get(f"/items/{item.ref}", query_string={"canned": ours.id}))
    assert f"Dear Ann &lt;b&gt;Kowalski&lt;/b&gt;, {item.ref} is done." in fallback


def test_another_teams_response_or_item_is_not_found(client, auth, session, world, make_item):
    item = make_item(team=world.returns, assignee=world.priya)
    docs_item = make_item(team=world.docs, type="document_verification")
    docs_only = canned(session, title="Docs only", team_id=world.docs.id)
    mine = canned(session, title="Mine", team_id=world.returns.id)
    auth.login("priya@example.com")
    assert client.get(f"/items/{item.ref}/canned/{docs_only.id}").status_code == 404
    assert client.get(f"/items/{docs_item.ref}/canned/{mine.id}").status_code == 404
    page = client.get(f"/items/{item.ref}", query_string={"canned": docs_only.id})
    assert page.status_code == 200 and "not available for this item" in text(page)


def test_placeholder_help_keeps_the_reference_in_capitals(client, auth, world):
    auth.login("sam@example.com")
    page = text(client.get("/admin/canned/new"))
    assert "The item&#39;s reference, e.g. BO-000123" in page or "The item's reference, e.g. BO-000123" in page
    assert "bo-000123" not in page
