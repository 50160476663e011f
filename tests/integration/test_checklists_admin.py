"""Checklist steps on the admin pages: add, edit, reorder, switch off; admins only, CSRF on every form."""
import pytest
import sqlalchemy as sa

from queue_app.models import ChecklistStep, ConfigChange
from tests.conftest import csrf_token_from


def text(response):
    return response.get_data(as_text=True)


def form_post(client, url, data, page_url=None):
    token = csrf_token_from(text(client.get(page_url or url)))
    return client.post(url, data={**data, "csrf_token": token})


@pytest.fixture
def world(session, make_team, make_user):
    returns = make_team(name="Returns", work_types=["return"])
    make_user(email="admin@example.com", role="admin")
    make_user(email="sam@example.com", role="supervisor", teams=[returns])
    session.commit()
    return type("World", (), dict(returns=returns))


def steps(session):
    session.expire_all()
    return [(s.text, s.position, s.mandatory, s.active) for s in
            session.scalars(sa.select(ChecklistStep).order_by(ChecklistStep.position))]


def add(client, world, step_text, mandatory=True):
    data = {"team": world.returns.id, "work_type": "return", "text": step_text, "active": "y"}
    if mandatory:
        data["mandatory"] = "y"
    return form_post(client, "/admin/checklists/new", data)


def test_admin_adds_steps_in_order_and_the_landing_page_links_to_them(client, auth, session, world):
    auth.login("admin@example.com")
    assert 'href="/admin/checklists"' in text(client.get("/admin/"))

    assert add(client, world, "Check the order in the shop system").status_code == 302
    assert add(client, world, "Note the return reason", mandatory=False).status_code == 302

    assert steps(session) == [("Check the order in the shop system", 1, True, True),
                              ("Note the return reason", 2, False, True)]
    listing = text(client.get("/admin/checklists"))
    assert "Returns: Return" in listing and "Optional" in listing and "Mandatory" in listing
    assert [e.action for e in session.scalars(sa.select(ConfigChange).where(
        ConfigChange.object_type == "checklist_step"))] == ["created", "created"]


def test_admin_reorders_edits_and_switches_a_step_off(client, auth, session, world):
    auth.login("admin@example.com")
    add(client, world, "First")
    add(client, world, "Second")
    second = session.scalar(sa.select(ChecklistStep).where(ChecklistStep.text == "Second"))

    response = form_post(client, f"/admin/checklists/{second.id}/move/up", {}, page_url="/admin/checklists")
    assert response.status_code == 302
    assert [s[0] for s in steps(session)] == ["Second", "First"]

    page = client.get(f"/admin/checklists/{second.id}")
    assert 'value="Second"' in text(page)
    response = form_post(client, f"/admin/checklists/{second.id}",
                         {"team": world.returns.id, "work_type": "return", "text": "Second, reworded"})
    assert response.status_code == 302
    assert steps(session) == [("Second, reworded", 1, False, False), ("First", 2, True, True)]


def test_an_empty_step_is_refused_and_nothing_is_saved(client, auth, session, world):
    auth.login("admin@example.com")

    response = add(client, world, "   ")

    assert response.status_code == 422
    assert steps(session) == []


def test_the_pages_are_for_admins_only_and_need_the_csrf_token(client, auth, session, world):
    auth.login("sam@example.com")
    assert client.get("/admin/checklists").status_code == 403
    assert client.post("/admin/checklists/new", data={"team": world.returns.id, "work_type": "return",
                                                      "text": "Sneaky"}).status_code in (400, 403)
    auth.logout()
    auth.login("admin@example.com")
    response = client.post("/admin/checklists/new", data={"team": world.returns.id, "work_type": "return",
                                                          "text": "No token"})
    assert response.status_code in (400, 422)
    assert steps(session) == []
