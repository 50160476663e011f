"""Optimistic locking made useful: a conflicting change shows what changed (409) and keeps the draft;
a harmless one (a note) lets the post go through. Notes and replies by htmx get fragments back."""
import re

import sqlalchemy as sa

from queue_app.models import Message, WorkItem
from queue_app.services.items import changes as items_changes
from queue_app.services.items import lifecycle, state
from tests.conftest import csrf_token_from


def text(response):
    return response.get_data(as_text=True)


def seen(page):
    """The hidden fields a form on the page carries: version, last event seen, CSRF token."""
    return {"version": re.search(r'name="version" value="(\d+)"', page).group(1),
            "seen_event": re.search(r'name="seen_event" value="(\d+)"', page).group(1),
            "csrf_token": csrf_token_from(page)}


def reload(session, item):
    session.expire_all()
    return session.get(WorkItem, item.id)


def outbound(session, item):
    session.expire_all()
    return session.scalars(sa.select(Message.body_text).where(Message.work_item_id == item.id,
                                                              Message.kind == "outbound")).all()


def open_item(client, auth, session, world, make_item, **kw):
    item = make_item(team=world.returns, assignee=world.priya, **kw)
    session.commit()
    auth.login("priya@example.com")
    page = text(client.get(f"/items/{item.ref}"))
    return item, page


def test_status_change_after_a_status_change_shows_what_changed(client, auth, session, world, make_item):
    item, page = open_item(client, auth, session, world, make_item)
    lifecycle.change_status(session, item, "open", actor=world.sup, comment="Looked at it")
    session.commit()
    response = client.post(f"/items/{item.ref}/status",
                           data={**seen(page), "status": "pending_customer", "comment": "Asked for photos"})
    assert response.status_code == 409
    page = text(response)
    panel = re.search(r'<section class="card changes-panel".*?</section>', page, re.S).group(0)
    assert "While you were looking, this changed:" in panel
    assert "Status changed" in panel and "sam@example.com" in panel and "Looked at it" in panel
    assert "<time datetime=" in panel  # when, in the viewer's zone
    assert "Pending customer" in panel  # what they wanted, kept
    assert 'value="Asked for photos"' in page  # their comment, kept
    assert reload(session, item).status == "open"  # nothing overwritten
    # Submitting again from the conflict page goes through.
    again = client.post(f"/items/{item.ref}/status",
                        data={**seen(page), "status": "pending_customer", "comment": "Asked for photos"})
    assert again.status_code == 302 and reload(session, item).status == "pending_customer"


def test_reply_after_a_reassignment_keeps_the_draft_and_sends_nothing(client, auth, session, world, make_item):
    item, page = open_item(client, auth, session, world, make_item)
    lifecycle.reclassify(session, item, actor=world.sup, priority="urgent")
    session.commit()
    response = client.post(f"/items/{item.ref}/replies",
                           data={**seen(page), "reply": "Dear customer, <b>refund</b> on its way."})
    assert response.status_code == 409
    page = text(response)
    assert "While you were looking, this changed:" in page and "Reclassified" in page
    assert "Normal → Urgent" in page
    assert "Dear customer, &lt;b&gt;refund&lt;/b&gt; on its way.</textarea>" in page
    assert outbound(session, item) == []


def test_reply_after_only_a_note_goes_through(client, auth, session, world, make_item):
    item, page = open_item(client, auth, session, world, make_item)
    lifecycle.add_note(session, item, actor=world.sup, body="FYI: customer called.")
    session.commit()
    assert reload(session, item).version != int(seen(page)["version"])
    response = client.post(f"/items/{item.ref}/replies", data={**seen(page), "reply": "We are on it."})
    assert response.status_code == 302
    assert outbound(session, item) == ["We are on it."]


def test_status_change_after_only_a_note_goes_through(client, auth, session, world, make_item):
    item, page = open_item(client, auth, session, world, make_item)
    lifecycle.add_note(session, item, actor=world.tom, body="Seen this before.")
    session.commit()
    response = client.post(f"/items/{item.ref}/status", data={**seen(page), "status": "open"})
    assert response.status_code == 302 and reload(session, item).status == "open"


def test_fields_conflict_keeps_the_typed_values(client, auth, session, world, make_item):
    item, page = open_item(client, auth, session, world, make_item)
    lifecycle.update_fields(session, item, actor=world.sup, fields={"order_number": "ORD-2002"})
    session.commit()
    response = client.post(f"/items/{item.ref}/fields",
                           data={**seen(page), "field-order_number": "ORD-3003", "field-amount": "12.50"})
    assert response.status_code == 409
    page = text(response)
    assert "Fields changed" in page and "ORD-2002" in page
    assert 'value="ORD-3003"' in page and 'value="12.50"' in page
    assert reload(session, item).order_number == "ORD-2002"


def test_classification_conflict_keeps_the_chosen_values(client, auth, session, world, make_item):
    item, page = open_item(client, auth, session, world, make_item)
    lifecycle.change_status(session, item, "open", actor=world.sup)
    session.commit()
    response = client.post(f"/items/{item.ref}/classification",
                           data={**seen(page), "type": "return", "priority": "high"})
    assert response.status_code == 409
    assert re.search(r'<option selected value="high">|<option value="high" selected>', text(response))
    assert reload(session, item).priority == "normal"


def test_events_since_lists_changes_and_judges_them(session, world, make_item):
    item = make_item(team=world.returns, assignee=world.priya)
    session.commit()
    version, last = item.version, items_changes.last_event_id(session, item)
    lifecycle.add_note(session, item, actor=world.sup, body="note")
    harmless = items_changes.since(session, item, seen_version=version, seen_event_id=last)
    assert [e.kind for e in harmless.events] == ["note_added"] and not harmless.conflict
    assert harmless.expected_version == item.version
    state.assign(session, item, world.tom, actor=world.sup)
    changed = items_changes.since(session, item, seen_version=version, seen_event_id=last)
    assert [e.kind for e in changed.events] == ["note_added", "assigned"] and changed.conflict
    assert changed.expected_version == version
    same = items_changes.since(session, item, seen_version=item.version, seen_event_id=0)
    assert same.events == [] and not same.conflict


def test_htmx_note_gets_the_thread_and_history_back(client, auth, session, world, make_item):
    item, page = open_item(client, auth, session, world, make_item)
    response = client.post(f"/items/{item.ref}/notes", headers={"HX-Request": "true"},
                           data={"note": "Checked with the warehouse.", "csrf_token": csrf_token_from(page)})
    assert response.status_code == 200
    fragment = text(response)
    assert fragment.lstrip().startswith("<div id=\"thread-list\">") and "<html" not in fragment
    assert "Checked with the warehouse." in fragment
    assert 'id="history" hx-swap-oob="true"' in fragment and "Note added" in fragment
    assert 'id="item-live"' in fragment and "flash-success" in fragment
    assert 'id="thread-count" hx-swap-oob="true">1<' in fragment


def test_htmx_empty_note_says_why(client, auth, session, world, make_item):
    item, page = open_item(client, auth, session, world, make_item)
    response = client.post(f"/items/{item.ref}/notes", headers={"HX-Request": "true"},
                           data={"note": "  ", "csrf_token": csrf_token_from(page)})
    assert response.status_code == 422
    assert response.headers["HX-Retarget"] == "#item-live"
    assert "Write the note first." in text(response)


def test_htmx_reply_conflict_swaps_in_the_conflict_page(client, auth, session, world, make_item):
    item, page = open_item(client, auth, session, world, make_item)
    lifecycle.change_status(session, item, "pending_customer", actor=world.sup)
    session.commit()
    response = client.post(f"/items/{item.ref}/replies", headers={"HX-Request": "true"},
                           data={**seen(page), "reply": "Draft text"})
    assert response.status_code == 409
    assert (response.headers["HX-Retarget"], response.headers["HX-Reselect"]) == ("#main", "#main")
    assert "While you were looking, this changed:" in text(response) and "Draft text</textarea>" in text(response)
    assert outbound(session, item) == []


def test_form_from_an_older_page_without_seen_event_is_still_refused(client, auth, session, world, make_item):
    item, page = open_item(client, auth, session, world, make_item)
    lifecycle.add_note(session, item, actor=world.sup, body="Meanwhile")
    session.commit()
    data = {**seen(page), "status": "open"}
    del data["seen_event"]
    response = client.post(f"/items/{item.ref}/status", data=data)
    assert response.status_code == 302
    assert "changed by someone else" in text(client.get(f"/items/{item.ref}"))
    assert reload(session, item).status == "new"
