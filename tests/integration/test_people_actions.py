"""Handing an item on and watching it: hand back to the queue with a reason, pass to a colleague where
the team allows it, watchers told of status changes, the requester's replies and notes (not of what
they did themselves); through the services, the item page and the API."""
from datetime import timedelta
from decimal import Decimal
from email.message import EmailMessage

import pytest
import sqlalchemy as sa

from queue_app.models import Event, Notification, Watcher
from queue_app.models.base import utcnow
from queue_app.services.approvals import decisions
from queue_app.services.assignment import handing
from queue_app.services.errors import Invalid, NotFound, PermissionDenied
from queue_app.services.intake import filing, mailboxes
from queue_app.services.items import lifecycle, watchers
from queue_app.services.people import teams as people_teams
from queue_app.services.people.users import issue_api_token
from tests.conftest import csrf_token_from

API = "/api/v1"
DESK = "desk@backdesk.example.com"


class World:
    """Returns (which lets executives pass items) and Documents, and their people."""

    def __init__(self, session, make_team, make_user):
        self.returns = make_team(name="Returns", work_types=["return"])
        self.returns.executives_may_pass = True
        self.docs = make_team(name="Documents", work_types=["document_verification"])
        self.sup = make_user(email="sam@example.com", name="Sam Supervisor", role="supervisor", teams=[self.returns])
        self.priya = make_user(email="priya@example.com", name="Priya Nair", teams=[self.returns])
        self.omar = make_user(email="omar@example.com", name="Omar Haddad", teams=[self.returns], capacity=2)
        self.lena = make_user(email="lena@example.com", name="Lena Vogel", teams=[self.docs])
        session.commit()

    def item(self, session, make_item, assignee="priya", **kw):
        item = make_item(team=self.returns, assignee=getattr(self, assignee) if assignee else None, actor=self.sup,
                         requester_email="anna@customer.example.com", **kw)
        session.commit()
        return item


@pytest.fixture
def world(session, make_team, make_user):
    return World(session, make_team, make_user)


def events(session, item, kind):
    return session.scalars(sa.select(Event).where(Event.work_item_id == item.id, Event.kind == kind)
                           .order_by(Event.id)).all()


def notified(session, item):
    return sorted(n.to_address for n in session.scalars(sa.select(Notification)
                                                         .where(Notification.work_item_id == item.id)))


def notes_to(session, address):
    return session.scalars(sa.select(Notification).where(Notification.to_address == address)
                           .order_by(Notification.id)).all()


# --- handing back -----------------------------------------------------------------------------

def test_handing_back_needs_a_reason_and_puts_the_item_in_the_queue_with_it(session, world, make_item):
    item = world.item(session, make_item)

    with pytest.raises(Invalid) as refused:
        handing.hand_back(session, item, actor=world.priya, reason="   ")
    assert refused.value.fields == {"reason": "is required"}

    handing.hand_back(session, item, actor=world.priya, reason="Needs someone who reads German")
    session.commit()

    assert item.assignee_id is None
    [event] = events(session, item, "handed_back")
    assert event.actor_label == "priya@example.com"
    assert event.data == {"from": "priya@example.com", "to": None, "reason": "Needs someone who reads German"}


def test_only_the_assignee_or_a_supervisor_hands_back_and_only_an_open_item(session, world, make_item):
    item = world.item(session, make_item)

    with pytest.raises(PermissionDenied):
        handing.hand_back(session, item, actor=world.omar, reason="Not mine")
    with pytest.raises(NotFound):
        handing.hand_back(session, item, actor=world.lena, reason="Another team")
    handing.hand_back(session, item, actor=world.sup, reason="Priya is on leave tomorrow")
    assert events(session, item, "handed_back")[0].actor_label == "sam@example.com"

    with pytest.raises(Invalid) as unassigned:
        handing.hand_back(session, item, actor=world.sup, reason="Again")
    assert unassigned.value.fields == {"assignee": "nobody to hand it back"}

    done = world.item(session, make_item)
    lifecycle.change_status(session, done, "resolved", actor=world.priya)
    with pytest.raises(Invalid) as closed:
        handing.hand_back(session, done, actor=world.priya, reason="Too late")
    assert closed.value.fields == {"status": "resolved"}


# --- passing to a colleague -------------------------------------------------------------------

def test_the_assignee_passes_to_a_colleague_who_is_told(session, world, make_item):
    item = world.item(session, make_item)

    handing.pass_to(session, item, world.omar, actor=world.priya, note="You did their last return")
    session.commit()

    assert item.assignee_id == world.omar.id
    [event] = events(session, item, "passed")
    assert event.data == {"from": "priya@example.com", "to": "omar@example.com", "note": "You did their last return"}
    [note] = notes_to(session, "omar@example.com")
    assert note.subject == f"[{item.ref}] passed to you" and "You did their last return" in note.body


def test_passing_is_refused_where_the_team_does_not_allow_it(session, world, make_item):
    world.returns.executives_may_pass = False
    item = world.item(session, make_item)

    with pytest.raises(Invalid) as refused:
        handing.pass_to(session, item, world.omar, actor=world.priya)

    assert refused.value.fields == {"team": "does not allow passing"}
    assert item.assignee_id == world.priya.id


def test_passing_is_refused_to_a_non_member_someone_away_or_full_and_by_anyone_but_the_assignee(
        session, world, make_item):
    item = world.item(session, make_item)

    with pytest.raises(Invalid) as outsider:
        handing.pass_to(session, item, world.lena, actor=world.priya)
    assert outsider.value.fields == {"to": "not a member of the item's team"}
    with pytest.raises(PermissionDenied):
        handing.pass_to(session, item, world.priya, actor=world.sup)

    world.omar.out_of_office_from = utcnow() - timedelta(hours=1)
    with pytest.raises(Invalid) as away:
        handing.pass_to(session, item, world.omar, actor=world.priya)
    assert away.value.fields == {"to": "out of office"}
    world.omar.out_of_office_from = None

    world.item(session, make_item, assignee="omar")
    world.item(session, make_item, assignee="omar")  # capacity 2: full
    with pytest.raises(Invalid) as full:
        handing.pass_to(session, item, world.omar, actor=world.priya)
    assert full.value.fields == {"to": "over capacity"}
    assert item.assignee_id == world.priya.id and not events(session, item, "passed")


def test_an_admin_lets_a_teams_executives_pass_items_on_its_page(client, auth, session, world, make_user):
    make_user(email="admin@example.com", role="admin")
    session.commit()
    auth.login("admin@example.com")
    page = client.get(f"/admin/teams/{world.docs.id}").get_data(as_text=True)
    assert "Executives may pass items to a colleague" in page

    saved = client.post(f"/admin/teams/{world.docs.id}", data={
        "csrf_token": csrf_token_from(page), "name": "Documents", "work_types": ["document_verification"],
        "auto_assign": "manual", "calendar": "0", "executives_may_pass": "y"})

    assert saved.status_code == 302
    session.expire_all()
    assert world.docs.executives_may_pass is True
    people_teams.save_team(session, world.docs, name="Documents", work_types=["document_verification"],
                           actor=world.sup)
    assert world.docs.executives_may_pass is False  # not given: off, the default


# --- watching ---------------------------------------------------------------------------------

def test_watchers_hear_of_status_changes_and_notes_but_not_of_their_own(session, world, make_item):
    item = world.item(session, make_item)
    watchers.watch(session, item, actor=world.sup)
    watchers.watch(session, item, actor=world.omar)
    watchers.watch(session, item, actor=world.omar)  # twice: one row
    session.commit()
    assert watchers.count(session, item) == 2

    lifecycle.change_status(session, item, "open", actor=world.priya)
    lifecycle.add_note(session, item, actor=world.omar, body="The courier has it.")
    session.commit()

    sam = [n.subject for n in notes_to(session, "sam@example.com")]
    omar = [n.subject for n in notes_to(session, "omar@example.com")]
    assert sam == [f"[{item.ref}] its status changed", f"[{item.ref}] a note was added"]
    assert omar == [f"[{item.ref}] its status changed"]  # not told of his own note
    assert "Now open, was new." in notes_to(session, "sam@example.com")[0].body


def test_watchers_hear_when_an_approval_decides_the_status(session, world, make_item):
    world.returns.approval_threshold = Decimal("10.00")
    item = world.item(session, make_item)
    lifecycle.change_status(session, item, "resolved", actor=world.priya)  # above the threshold: approval
    assert item.status == "awaiting_approval"
    watchers.watch(session, item, actor=world.omar)

    decisions.decide(session, item, actor=world.sup, approve=True)
    session.commit()

    [note] = notes_to(session, "omar@example.com")
    assert note.subject == f"[{item.ref}] its status changed" and "Now resolved: the approval was approved." in note.body


def test_watchers_hear_when_the_requester_writes_again(session, world, make_item, app, tmp_path, monkeypatch):
    monkeypatch.setitem(app.config, "INSTANCE_DIR", str(tmp_path))
    mailboxes.create_mailbox(session, address=DESK, type="return", team_name="Returns", priority="normal")
    item = world.item(session, make_item)
    watchers.watch(session, item, actor=world.sup)
    session.commit()
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "anna@customer.example.com", DESK, f"Re: [{item.ref}] My return"
    msg["Message-ID"] = "<follow-up-1@customer.example.com>"
    msg.set_content("Any news?")

    outcome = filing.process(session, filing.receive(session, bytes(msg), source="smtp"))
    session.commit()

    assert outcome.status == "followup"
    assert [n.subject for n in notes_to(session, "sam@example.com")] == [f"[{item.ref}] the requester wrote again"]


def test_unwatching_stops_the_notices_and_another_team_cannot_watch(session, world, make_item):
    item = world.item(session, make_item)
    watchers.watch(session, item, actor=world.sup)
    watchers.unwatch(session, item, actor=world.sup)
    watchers.unwatch(session, item, actor=world.sup)  # not watching: no error
    lifecycle.add_note(session, item, actor=world.priya, body="Called the customer.")

    with pytest.raises(NotFound):
        watchers.watch(session, item, actor=world.lena)
    assert notified(session, item) == [] and session.scalar(sa.select(sa.func.count()).select_from(Watcher)) == 0


# --- the item page ----------------------------------------------------------------------------

def test_the_item_page_hands_back_passes_and_watches(client, auth, session, world, make_item):
    item = world.item(session, make_item)
    auth.login("priya@example.com")
    page = client.get(f"/items/{item.ref}").get_data(as_text=True)
    assert 'id="hand-back-form"' in page and 'id="pass-form"' in page and "0 watchers." in page
    token = csrf_token_from(page)

    watched = client.post(f"/items/{item.ref}/watch", data={"csrf_token": token}, follow_redirects=True)
    assert "You are watching this item." in watched.get_data(as_text=True)
    assert "1 watcher." in watched.get_data(as_text=True)

    no_reason = client.post(f"/items/{item.ref}/hand-back", data={"csrf_token": token, "version": item.version,
                                                                  "reason": ""}, follow_redirects=True)
    assert "Say why you hand it back." in no_reason.get_data(as_text=True)
    passed = client.post(f"/items/{item.ref}/pass", data={"csrf_token": token, "version": item.version,
                                                           "to": world.omar.id, "note": "Yours"})
    assert passed.status_code == 302
    session.expire_all()
    assert item.assignee_id == world.omar.id and events(session, item, "passed")


def test_the_item_page_without_passing_shows_no_pass_form_and_refuses_a_forged_post(client, auth, session, world,
                                                                                     make_item):
    world.returns.executives_may_pass = False
    item = world.item(session, make_item)
    auth.login("priya@example.com")
    page = client.get(f"/items/{item.ref}").get_data(as_text=True)
    assert 'id="pass-form"' not in page and 'id="hand-back-form"' in page

    forged = client.post(f"/items/{item.ref}/pass", data={"csrf_token": csrf_token_from(page),
                                                           "version": item.version, "to": world.omar.id},
                         follow_redirects=True)
    assert "does not let executives pass items" in forged.get_data(as_text=True)
    session.expire_all()
    assert item.assignee_id == world.priya.id


def test_a_form_without_the_csrf_token_changes_nothing(client, auth, session, world, make_item):
    item = world.item(session, make_item)
    auth.login("priya@example.com")
    client.post(f"/items/{item.ref}/hand-back", data={"version": item.version, "reason": "No token"})
    client.post(f"/items/{item.ref}/watch", data={})
    session.expire_all()
    assert item.assignee_id == world.priya.id and watchers.count(session, item) == 0


def test_another_teams_user_gets_a_404_for_the_watch_button(client, auth, session, world, make_item):
    item = world.item(session, make_item)
    auth.login("lena@example.com")
    token = csrf_token_from(client.get("/").get_data(as_text=True))
    assert client.post(f"/items/{item.ref}/watch", data={"csrf_token": token}).status_code == 404


def test_the_watching_page_lists_what_i_watch_and_can_see(client, auth, session, world, make_item):
    mine = world.item(session, make_item, subject="Watched return")
    world.item(session, make_item, subject="Not watched")
    moved = world.item(session, make_item, subject="Moved away")
    for item in (mine, moved):
        watchers.watch(session, item, actor=world.omar)
    lifecycle.reclassify(session, moved, actor=world.sup, team=world.docs)  # Omar cannot see it any more
    session.commit()
    auth.login("omar@example.com")

    page = client.get("/watching").get_data(as_text=True)

    assert "Watched return" in page and "Not watched" not in page and "Moved away" not in page
    assert client.get("/watching?before=x").status_code == 400


# --- the API ----------------------------------------------------------------------------------

def test_the_api_hands_back_passes_and_watches(client, session, world, make_item):
    item = world.item(session, make_item)
    priya = {"Authorization": f"Bearer {issue_api_token(session, world.priya)}"}
    lena = {"Authorization": f"Bearer {issue_api_token(session, world.lena)}"}
    session.commit()

    passed = client.post(f"{API}/items/{item.ref}/pass", headers=priya, json={"to": "omar@example.com",
                                                                                "note": "Yours"})
    assert passed.status_code == 200 and passed.json["assignee"] == "omar@example.com"
    again = client.post(f"{API}/items/{item.ref}/pass", headers=priya, json={"to": "omar@example.com"})
    assert again.status_code == 403

    other = world.item(session, make_item)
    missing = client.post(f"{API}/items/{other.ref}/hand-back", headers=priya, json={})
    assert missing.status_code == 422 and missing.json["error"]["fields"] == {"reason": "is required"}
    nobody = client.post(f"{API}/items/{other.ref}/pass", headers=priya, json={"to": "nobody@example.com"})
    assert nobody.status_code == 422 and nobody.json["error"]["fields"] == {"to": "no such user"}
    back = client.post(f"{API}/items/{other.ref}/hand-back", headers=priya, json={"reason": "Wrong team"})
    assert back.status_code == 200 and back.json["assignee"] is None

    watch = client.post(f"{API}/items/{other.ref}/watch", headers=priya)
    assert watch.status_code == 200 and watch.json == {"ref": other.ref, "watching": True, "watchers": 1}
    assert client.post(f"{API}/items/{other.ref}/watch", headers=lena).status_code == 404
    unwatch = client.delete(f"{API}/items/{other.ref}/watch", headers=priya)
    assert unwatch.json == {"ref": other.ref, "watching": False, "watchers": 0}


def test_the_openapi_document_lists_the_new_operations(client):
    spec = client.get(f"{API}/openapi.json").json
    assert spec["paths"]["/items/{ref}/hand-back"]["post"]["operationId"] == "handBackItem"
    assert spec["paths"]["/items/{ref}/pass"]["post"]["operationId"] == "passItem"
    assert set(spec["paths"]["/items/{ref}/watch"]) == {"post", "delete"}
