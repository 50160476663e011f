"""Reply and note drafts kept on the server: saved as typed, drawn in the boxes on every load of the
item page, seen only by the person who typed them, and removed when that reply or note is sent."""
import re

import pytest
import sqlalchemy as sa

from queue_app.models import Draft, User, WorkItem
from queue_app.services.items import drafts, lifecycle
from tests.conftest import Auth, csrf_token_from


def text(response):
    return response.get_data(as_text=True)


def signed_in(app, email):
    client = app.test_client()
    Auth(client).login(email)
    return client


@pytest.fixture
def item(session, world, make_item):
    item = make_item(team=world.returns, assignee=world.priya, subject="Refund for order ORD-1001")
    session.commit()
    return item


def save(client, item, box, body, token=None):
    token = token or csrf_token_from(text(client.get(f"/items/{item.ref}")))
    return client.post(f"/items/{item.ref}/drafts/{box}", data={"body": body, "csrf_token": token})


def box_text(page, box):
    return re.search(rf'<textarea[^>]*id="{box}"[^>]*>(.*?)</textarea>', page, re.S).group(1).strip()


def test_a_draft_is_drawn_in_its_box_for_its_author_only(app, session, world, item):
    priya = signed_in(app, "priya@example.com")
    assert save(priya, item, "reply", "Your refund is on its way.").status_code == 204
    assert save(priya, item, "note", "Courier asked for tracking.").status_code == 204
    page = text(priya.get(f"/items/{item.ref}"))
    assert box_text(page, "reply") == "Your refund is on its way."
    assert box_text(page, "note") == "Courier asked for tracking."

    assert save(priya, item, "reply", "Your refund is on its way, today.").status_code == 204  # kept up to date
    assert box_text(text(priya.get(f"/items/{item.ref}")), "reply") == "Your refund is on its way, today."
    assert session.scalar(sa.select(sa.func.count()).select_from(Draft)) == 2

    sam = text(signed_in(app, "sam@example.com").get(f"/items/{item.ref}"))  # her supervisor sees the item...
    assert box_text(sam, "reply") == "" and box_text(sam, "note") == ""  # ...not her drafts


def test_sending_removes_the_draft_and_emptying_the_box_too(app, session, world, item):
    priya = signed_in(app, "priya@example.com")
    save(priya, item, "reply", "Your refund is on its way.")
    save(priya, item, "note", "Courier asked for tracking.")
    token = csrf_token_from(text(priya.get(f"/items/{item.ref}")))
    response = priya.post(f"/items/{item.ref}/replies", data={"reply": "Your refund is on its way.",
                                                                "csrf_token": token})
    assert response.status_code == 302
    page = text(priya.get(f"/items/{item.ref}"))
    assert box_text(page, "reply") == "" and box_text(page, "note") == "Courier asked for tracking."

    assert priya.post(f"/items/{item.ref}/notes", data={"note": "Courier asked for tracking.",
                                                         "csrf_token": token}).status_code == 302
    assert session.scalar(sa.select(sa.func.count()).select_from(Draft)) == 0

    save(priya, item, "note", "Something")
    assert save(priya, item, "note", "   ").status_code == 204  # an emptied box keeps nothing
    assert session.scalar(sa.select(sa.func.count()).select_from(Draft)) == 0


def test_the_api_sending_a_reply_removes_the_web_draft_too(session, world, item):
    priya = session.get(User, world.priya.id)
    item = session.get(WorkItem, item.id)
    drafts.save(session, priya, item, "reply", "Typed on the web")
    lifecycle.add_reply(session, item, actor=priya, body="Sent from elsewhere")
    session.commit()
    assert drafts.for_item(session, priya, item) == {}


@pytest.mark.parametrize("box, body, status", [
    ("subject", "x", 422), ("reply", "x" * 100_001, 422), ("reply%00", "x", 404), ("../notes", "x", 404),
])
def test_bad_drafts_are_refused_never_a_500(app, session, world, item, box, body, status):
    priya = signed_in(app, "priya@example.com")
    response = save(priya, item, box, body)
    assert response.status_code in (status, 400, 404, 422), response.status_code
    assert session.scalar(sa.select(sa.func.count()).select_from(Draft)) == 0


def test_a_draft_needs_the_csrf_token_and_an_item_one_may_see(app, session, world, item, make_item):
    priya = signed_in(app, "priya@example.com")
    assert priya.post(f"/items/{item.ref}/drafts/reply", data={"body": "x"}).status_code == 400
    other = make_item(team=world.docs, subject="Passport check")
    session.commit()
    token = csrf_token_from(text(priya.get(f"/items/{item.ref}")))
    assert priya.post(f"/items/{other.ref}/drafts/reply", data={"body": "x", "csrf_token": token}).status_code == 404
    assert app.test_client().post(f"/items/{item.ref}/drafts/reply", data={"body": "x"}).status_code in (302, 400, 401)
    assert session.scalar(sa.select(sa.func.count()).select_from(Draft)) == 0
