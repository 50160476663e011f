"""Checklists: ticking and unticking as events, who may tick, and open mandatory steps blocking resolving
on every path (the gate, the item page, the API and the approval path)."""
from decimal import Decimal

import pytest
import sqlalchemy as sa

from queue_app.models import ChecklistStep, Event
from queue_app.services.approvals import decisions
from queue_app.services.errors import Invalid, NotFound, PermissionDenied
from queue_app.services.items import checklists, lifecycle, state
from queue_app.services.people.users import issue_api_token
from tests.conftest import csrf_token_from

API = "/api/v1"
ORDER_STEP = "Check the order in the shop system"
REFUND_STEP = "Confirm the refund amount with the receipt"
REASON_STEP = "Note the return reason"


class World:
    """Returns (with an approval limit) and Documents, their people, and the Returns checklist."""

    def __init__(self, session, make_team, make_user):
        self.returns = make_team(name="Returns", work_types=["return"], approval_threshold=Decimal("500.00"))
        self.docs = make_team(name="Documents", work_types=["document_verification"])
        self.sup = make_user(email="sam@example.com", role="supervisor", teams=[self.returns])
        self.priya = make_user(email="priya@example.com", name="Priya Nair", teams=[self.returns])
        self.lena = make_user(email="lena@example.com", teams=[self.docs])
        self.admin = make_user(email="admin@example.com", role="admin")
        self.order, self.refund, self.reason = (
            checklists.save_step(session, actor=self.admin, team_id=self.returns.id, work_type="return", text=text,
                                 mandatory=mandatory)
            for text, mandatory in ((ORDER_STEP, True), (REFUND_STEP, True), (REASON_STEP, False)))
        session.commit()

    def item(self, session, make_item, amount="49.90", **kw):
        item = make_item(team=self.returns, assignee=self.priya, actor=self.sup,
                         fields={"order_number": "ORD-1001", "purchase_date": "2026-11-01", "amount": amount,
                                 "currency": "EUR", "reason": "Wrong size"}, **kw)
        lifecycle.change_status(session, item, "open", actor=self.priya)
        session.commit()
        return item

    def tick_mandatory(self, session, item, actor=None):
        for step in (self.order, self.refund):
            checklists.tick(session, item, step.id, actor=actor or self.priya)


@pytest.fixture
def world(session, make_team, make_user):
    return World(session, make_team, make_user)


def events(session, item, *kinds):
    return session.scalars(sa.select(Event).where(Event.work_item_id == item.id, Event.kind.in_(kinds))
                           .order_by(Event.id)).all()


# --- the service and the gate -------------------------------------------------------------------

def test_open_mandatory_steps_block_resolving_and_name_the_steps(session, world, make_item):
    item = world.item(session, make_item)

    with pytest.raises(Invalid) as refused:
        lifecycle.change_status(session, item, "resolved", actor=world.priya)

    assert refused.value.message == (f"{item.ref} has open mandatory checklist steps: “{ORDER_STEP}”; "
                                     f"“{REFUND_STEP}”")
    assert refused.value.fields == {"status": "checklist incomplete"}
    session.rollback()
    assert item.status == "open"


def test_ticking_the_mandatory_steps_lets_it_resolve_and_the_optional_one_never_blocks(session, world, make_item):
    item = world.item(session, make_item)
    checklists.tick(session, item, world.order.id, actor=world.priya)
    assert [s.text for s in state.open_mandatory_steps(session, item)] == [REFUND_STEP]
    checklists.tick(session, item, world.refund.id, actor=world.priya)

    lifecycle.change_status(session, item, "resolved", actor=world.priya)

    assert item.status == "resolved"


def test_each_tick_and_untick_is_an_event_with_the_steps_text_who_and_when(session, world, make_item):
    item = world.item(session, make_item)

    checklists.tick(session, item, world.order.id, actor=world.priya)
    checklists.tick(session, item, world.order.id, actor=world.priya)  # twice: nothing new
    checklists.untick(session, item, world.order.id, actor=world.sup)
    checklists.untick(session, item, world.order.id, actor=world.sup)
    # The step is edited later: what was ticked keeps the text it had.
    checklists.save_step(session, world.order, actor=world.admin, team_id=world.returns.id, work_type="return",
                         text="Look the order up", mandatory=True)

    found = events(session, item, "checklist_ticked", "checklist_unticked")
    assert [(e.kind, e.actor_label, e.data["step"], e.data["mandatory"]) for e in found] == [
        ("checklist_ticked", "priya@example.com", ORDER_STEP, True),
        ("checklist_unticked", "sam@example.com", ORDER_STEP, True)]
    assert all(e.at is not None for e in found)
    assert [line.done for line in checklists.checklist_of(session, item)] == [False, False, False]


def test_the_checklist_shows_who_ticked_each_step(session, world, make_item):
    item = world.item(session, make_item)
    checklists.tick(session, item, world.refund.id, actor=world.sup)

    lines = checklists.checklist_of(session, item)

    assert [line.step.text for line in lines] == [ORDER_STEP, REFUND_STEP, REASON_STEP]
    assert [line.tick.ticked_by.email if line.done else None for line in lines] == [None, "sam@example.com", None]


def test_another_teams_executive_cannot_tick_and_a_colleague_not_assigned_neither(session, world, make_item,
                                                                                make_user):
    item = world.item(session, make_item)
    colleague = make_user(email="tom@example.com", teams=[world.returns])

    with pytest.raises(NotFound):
        checklists.tick(session, item, world.order.id, actor=world.lena)
    with pytest.raises(PermissionDenied):
        checklists.tick(session, item, world.order.id, actor=colleague)
    assert not checklists.may_tick(world.lena, item) and not checklists.may_tick(colleague, item)
    assert events(session, item, "checklist_ticked") == []


def test_a_step_of_another_team_or_type_is_not_on_the_item(session, world, make_item):
    item = world.item(session, make_item)
    other = checklists.save_step(session, actor=world.admin, team_id=world.docs.id,
                                 work_type="document_verification", text="Compare the name")

    for step_id in (other.id, 0, 2 ** 40):
        with pytest.raises(NotFound):
            checklists.tick(session, item, step_id, actor=world.priya)


def test_a_deactivated_step_does_not_block(session, world, make_item):
    item = world.item(session, make_item)
    checklists.tick(session, item, world.order.id, actor=world.priya)
    checklists.save_step(session, world.refund, actor=world.admin, team_id=world.returns.id, work_type="return",
                         text=REFUND_STEP, mandatory=True, active=False)

    lifecycle.change_status(session, item, "resolved", actor=world.priya)

    assert item.status == "resolved"
    assert [line.step.text for line in checklists.checklist_of(session, item)] == [ORDER_STEP, REASON_STEP]


def test_items_of_a_type_without_steps_resolve_as_before(session, world, make_item):
    item = make_item(team=world.docs, type="document_verification", assignee=world.lena)

    lifecycle.change_status(session, item, "resolved", actor=world.lena)

    assert item.status == "resolved"
    assert checklists.checklist_of(session, item) == []


def test_a_resolved_item_or_one_awaiting_approval_cannot_be_ticked(session, world, make_item):
    item = world.item(session, make_item)
    world.tick_mandatory(session, item)
    lifecycle.change_status(session, item, "resolved", actor=world.priya)

    with pytest.raises(Invalid) as refused:
        checklists.untick(session, item, world.order.id, actor=world.priya)
    assert refused.value.fields == {"status": "resolved"}

    big = world.item(session, make_item, amount="900.00")
    world.tick_mandatory(session, big)
    lifecycle.change_status(session, big, "resolved", actor=world.priya)
    assert big.status == "awaiting_approval"
    with pytest.raises(Invalid):
        checklists.untick(session, big, world.order.id, actor=world.priya)


# --- the approval path ------------------------------------------------------------------------

def test_asking_for_approval_is_refused_while_mandatory_steps_are_open(session, world, make_item):
    item = world.item(session, make_item, amount="900.00")

    with pytest.raises(Invalid) as refused:
        lifecycle.change_status(session, item, "resolved", actor=world.priya)
    assert refused.value.fields == {"status": "checklist incomplete"}
    session.rollback()
    assert item.status == "open" and decisions.pending_approval(session, item) is None

    world.tick_mandatory(session, item)
    lifecycle.change_status(session, item, "resolved", actor=world.priya)
    assert item.status == "awaiting_approval"


def test_an_approval_cannot_resolve_past_a_step_added_meanwhile(session, world, make_item):
    item = world.item(session, make_item, amount="900.00")
    world.tick_mandatory(session, item)
    lifecycle.change_status(session, item, "resolved", actor=world.priya)
    checklists.save_step(session, actor=world.admin, team_id=world.returns.id, work_type="return",
                         text="Book the refund in the ledger", mandatory=True)
    session.commit()

    with pytest.raises(Invalid) as refused:
        decisions.decide(session, item, actor=world.sup, approve=True)
    assert "Book the refund in the ledger" in refused.value.message
    session.rollback()

    decisions.decide(session, item, actor=world.sup, approve=False, comment="Book it in the ledger first.")
    assert item.status == "open"


# --- the item page ------------------------------------------------------------------------------

def page_of(client, item):
    return client.get(f"/items/{item.ref}").get_data(as_text=True)


def test_the_item_page_shows_the_checklist_and_resolving_says_what_is_open(client, auth, session, world,
                                                                           make_item):
    item = world.item(session, make_item)
    auth.login("priya@example.com")
    html = page_of(client, item)
    assert 'id="checklist"' in html and ORDER_STEP in html and "2 mandatory steps open" in html

    response = client.post(f"/items/{item.ref}/status", data={
        "csrf_token": csrf_token_from(html), "status": "resolved", "version": item.version}, follow_redirects=True)

    text = response.get_data(as_text=True)
    assert f"{item.ref} has open mandatory checklist steps: “{ORDER_STEP}”" in text
    session.expire_all()
    assert item.status == "open"


def test_the_checklist_form_ticks_only_the_boxes_changed(client, auth, session, world, make_item):
    item = world.item(session, make_item)
    checklists.tick(session, item, world.reason.id, actor=world.sup)
    session.commit()
    auth.login("priya@example.com")
    html = page_of(client, item)
    # Meanwhile the supervisor ticks the order step; Priya's page still shows it open.
    checklists.tick(session, item, world.order.id, actor=world.sup)
    session.commit()

    response = client.post(f"/items/{item.ref}/checklist", data={
        "csrf_token": csrf_token_from(html), "shown": [world.order.id, world.refund.id, world.reason.id],
        "was": [world.reason.id], "step": [world.refund.id]})

    assert response.status_code == 302
    session.expire_all()
    assert [line.done for line in checklists.checklist_of(session, item)] == [True, True, False]
    assert [e.data["step"] for e in events(session, item, "checklist_unticked")] == [REASON_STEP]
    assert "Ticked by Priya Nair" in page_of(client, item)


def test_without_the_right_the_page_shows_the_checklist_without_a_form(client, auth, session, world, make_item,
                                                                       make_user):
    item = world.item(session, make_item)
    make_user(email="tom@example.com", teams=[world.returns])
    session.commit()
    auth.login("tom@example.com")

    html = page_of(client, item)

    assert ORDER_STEP in html and 'id="checklist-form"' not in html
    response = client.post(f"/items/{item.ref}/checklist", data={
        "csrf_token": csrf_token_from(html), "shown": [world.order.id], "step": [world.order.id]},
        follow_redirects=True)
    assert "only the assignee or a supervisor" in response.get_data(as_text=True).lower()
    assert events(session, item, "checklist_ticked") == []


def test_the_checklist_form_needs_its_csrf_token(client, auth, session, world, make_item):
    item = world.item(session, make_item)
    auth.login("priya@example.com")

    client.post(f"/items/{item.ref}/checklist", data={"shown": [world.order.id], "step": [world.order.id]})

    assert events(session, item, "checklist_ticked") == []


# --- the API ------------------------------------------------------------------------------------

def test_the_api_reads_and_ticks_the_checklist_and_refuses_to_resolve_while_steps_are_open(client, session,
                                                                                           world, make_item):
    item = world.item(session, make_item)
    headers = {"Authorization": f"Bearer {issue_api_token(session, world.priya)}"}
    session.commit()

    body = client.get(f"{API}/items/{item.ref}/checklist", headers=headers).get_json()
    assert body["open_mandatory"] == 2
    assert [(s["text"], s["mandatory"], s["ticked"]) for s in body["steps"]] == [
        (ORDER_STEP, True, False), (REFUND_STEP, True, False), (REASON_STEP, False, False)]

    refused = client.post(f"{API}/items/{item.ref}/status", headers=headers, json={"status": "resolved"})
    assert refused.status_code == 422
    assert refused.get_json()["error"]["fields"] == {"status": "checklist incomplete"}

    for step in (world.order, world.refund):
        ticked = client.post(f"{API}/items/{item.ref}/checklist/{step.id}/tick", headers=headers)
        assert ticked.status_code == 200, ticked.get_data(as_text=True)
    assert ticked.get_json()["open_mandatory"] == 0
    assert ticked.get_json()["steps"][1]["ticked_by"] == "priya@example.com"

    untick = client.post(f"{API}/items/{item.ref}/checklist/{world.order.id}/untick", headers=headers)
    assert untick.get_json()["open_mandatory"] == 1
    client.post(f"{API}/items/{item.ref}/checklist/{world.order.id}/tick", headers=headers)
    resolved = client.post(f"{API}/items/{item.ref}/status", headers=headers, json={"status": "resolved"})
    assert resolved.status_code == 200 and resolved.get_json()["status"] == "resolved"


def test_the_api_hides_other_teams_items_and_steps(client, session, world, make_item):
    item = world.item(session, make_item)
    headers = {"Authorization": f"Bearer {issue_api_token(session, world.lena)}"}
    priya = {"Authorization": f"Bearer {issue_api_token(session, world.priya)}"}
    session.commit()

    assert client.post(f"{API}/items/{item.ref}/checklist/{world.order.id}/tick", headers=headers).status_code == 404
    assert client.get(f"{API}/items/{item.ref}/checklist", headers=headers).status_code == 404
    assert client.post(f"{API}/items/{item.ref}/checklist/999999/tick", headers=priya).status_code == 404
    assert client.post(f"{API}/items/{item.ref}/checklist/99999999999/tick", headers=priya).status_code == 404


def test_steps_are_kept_in_the_audit_trail(session, world):
    from queue_app.models import ConfigChange

    entries = session.scalars(sa.select(ConfigChange).where(ConfigChange.object_type == "checklist_step")).all()

    assert [e.action for e in entries] == ["created", "created", "created"]
    assert session.scalar(sa.select(sa.func.count()).select_from(ChecklistStep)) == 3
