"""Maker-checker approvals through the API and the web UI: above the team's limit a resolution
waits for a second person; the maker gets 403 deciding their own request (API and web); a
designated checker of the team may decide, a checker of another team may not; rejecting needs
a comment; every step is an event; supervisors work an approvals queue."""
import re
from datetime import date
from decimal import Decimal

import pytest
import sqlalchemy as sa

from queue_app.models import Approval, Event, User, WorkItem
from queue_app.services.approvals import decisions
from queue_app.services.checks import exchange_rates
from queue_app.services.items import lifecycle
from queue_app.services.people.users import issue_api_token
from tests.conftest import Auth, csrf_token_from

API = "/api/v1"


def text(response):
    return response.get_data(as_text=True)


def reload(session, item):
    session.expire_all()
    return session.get(WorkItem, item.id)


def kinds(session, item):
    return [e.kind for e in session.scalars(sa.select(Event).where(Event.work_item_id == item.id).order_by(Event.id))]


class World:
    """Refunds (limit 500 EUR) with a supervisor, a maker, a checker and a plain executive; Payments with its
    own supervisor and checker, who is also a member of Refunds."""

    def __init__(self, session, make_team, make_user):
        self.refunds = make_team(name="Refunds", work_types=["return"], approval_threshold=Decimal("500.00"))
        self.payments = make_team(name="Payments", work_types=["discrepancy_fix"],
                                  approval_threshold=Decimal("100.00"))
        self.sup = make_user(email="sup@example.com", name="Sam Supervisor", role="supervisor", teams=[self.refunds])
        self.sup2 = make_user(email="sup2@example.com", name="Sue Supervisor", role="supervisor",
                              teams=[self.refunds])
        self.maker = make_user(email="maker@example.com", name="Mia Maker", teams=[self.refunds])
        self.checker = make_user(email="checker@example.com", name="Carl Checker", teams=[self.refunds])
        self.plain = make_user(email="plain@example.com", name="Pat Plain", teams=[self.refunds])
        self.pay_sup = make_user(email="paysup@example.com", role="supervisor", teams=[self.payments])
        self.pay_checker = make_user(email="paychecker@example.com", name="Penny Payments",
                                     teams=[self.payments, self.refunds])
        self.outsider = make_user(email="outsider@example.com", teams=[self.payments])
        decisions.set_checker(session, self.refunds, self.checker, actor=self.sup, enabled=True)
        decisions.set_checker(session, self.payments, self.pay_checker, actor=self.pay_sup, enabled=True)
        decisions.set_checker(session, self.payments, self.outsider, actor=self.pay_sup, enabled=True)
        people = (self.sup, self.sup2, self.maker, self.checker, self.plain, self.pay_sup, self.pay_checker,
                  self.outsider)
        self.tokens = {u.email: issue_api_token(session, u) for u in people}
        session.commit()

    def headers(self, email):
        return {"Authorization": f"Bearer {self.tokens[email]}"}


@pytest.fixture
def world(session, make_team, make_user):
    return World(session, make_team, make_user)


def refund(session, world, amount="750.00", currency="EUR", maker=None):
    """A return worked by the maker, ready to be resolved."""
    maker = maker or world.maker
    item = lifecycle.create_item(session, actor=maker, source="api", type="return", subject="Refund",
                                  team=world.refunds, assignee=maker,
                                  fields={"order_number": "ORD-100234", "purchase_date": "2026-11-01",
                                          "amount": amount, "currency": currency})
    lifecycle.change_status(session, item, "open", actor=maker)
    session.commit()
    return item


def resolve_by_api(client, world, item, email="maker@example.com"):
    return client.post(f"{API}/items/{item.ref}/status", headers=world.headers(email), json={"status": "resolved"})


def decide_by_api(client, world, item, email, decision="approve", comment=None):
    body = {"decision": decision, **({"comment": comment} if comment is not None else {})}
    return client.post(f"{API}/items/{item.ref}/approval", headers=world.headers(email), json=body)


def test_above_the_limit_a_resolution_waits_and_the_maker_cannot_approve_it(client, session, world):
    item = refund(session, world)

    response = resolve_by_api(client, world, item)

    assert response.status_code == 200 and response.get_json()["status"] == "awaiting_approval"
    own = decide_by_api(client, world, item, "maker@example.com")
    assert own.status_code == 403
    assert own.get_json()["error"]["message"] == \
        "the person who asked for approval cannot approve their own request"
    assert reload(session, item).status == "awaiting_approval"


def test_a_designated_checker_approves_and_every_step_is_an_event(client, session, world):
    item = refund(session, world)
    resolve_by_api(client, world, item)

    response = decide_by_api(client, world, item, "checker@example.com", comment="Receipt matches")

    assert response.status_code == 200 and response.get_json()["status"] == "resolved"
    approval = session.scalar(sa.select(Approval))
    assert (approval.status, approval.decided_by_id, approval.requested_by_id) == (
        "approved", world.checker.id, world.maker.id)
    # The clock waits with the item (the policy's default): paused on asking, resumed on deciding.
    assert kinds(session, item)[-6:] == ["approval_requested", "sla_paused", "status_changed", "approval_decided",
                                         "sla_resumed", "status_changed"]
    requested = session.scalar(sa.select(Event).where(Event.kind == "approval_requested"))
    assert requested.actor_label == "maker@example.com"
    assert {k: requested.data[k] for k in ("amount", "currency", "base_amount", "threshold")} == {
        "amount": "750.00", "currency": "EUR", "base_amount": "750.00", "threshold": "500.00"}
    decided = session.scalar(sa.select(Event).where(Event.kind == "approval_decided"))
    assert decided.actor_label == "checker@example.com"
    assert decided.data["decision"] == "approved" and decided.data["comment"] == "Receipt matches"


def test_a_supervisor_who_asked_cannot_approve_their_own_request_but_another_can(client, session, world):
    item = refund(session, world, maker=world.sup)
    resolve_by_api(client, world, item, "sup@example.com")

    assert decide_by_api(client, world, item, "sup@example.com").status_code == 403
    assert decide_by_api(client, world, item, "sup2@example.com").status_code == 200
    assert reload(session, item).status == "resolved"


def test_people_without_the_right_are_refused(client, session, world):
    item = refund(session, world)
    resolve_by_api(client, world, item)

    plain = decide_by_api(client, world, item, "plain@example.com")
    other_teams_checker = decide_by_api(client, world, item, "paychecker@example.com")
    other_teams_supervisor = decide_by_api(client, world, item, "paysup@example.com")
    outsider = decide_by_api(client, world, item, "outsider@example.com")

    assert plain.status_code == 403
    assert other_teams_checker.status_code == 403  # a member of Refunds, but a checker of Payments only
    assert "only a supervisor or a designated checker of Refunds" in other_teams_checker.get_json()["error"]["message"]
    assert other_teams_supervisor.status_code == 404  # cannot even see the item
    assert outsider.status_code == 404
    assert reload(session, item).status == "awaiting_approval"
    assert session.scalar(sa.select(Approval)).status == "pending"


def test_rejecting_needs_a_comment_and_reopens_the_item(client, session, world):
    item = refund(session, world)
    resolve_by_api(client, world, item)

    silent = decide_by_api(client, world, item, "sup@example.com", decision="reject")
    assert silent.status_code == 422 and "comment" in silent.get_json()["error"]["fields"]
    bad = decide_by_api(client, world, item, "sup@example.com", decision="maybe")
    assert bad.status_code == 422 and "decision" in bad.get_json()["error"]["fields"]

    rejected = decide_by_api(client, world, item, "sup@example.com", decision="reject", comment="No receipt")

    assert rejected.status_code == 200 and rejected.get_json()["status"] == "open"
    approval = session.scalar(sa.select(Approval))
    assert approval.status == "rejected" and approval.data["decision_comment"] == "No receipt"
    again = decide_by_api(client, world, item, "sup@example.com")
    assert again.status_code == 422  # nothing pending any more


def test_within_the_limit_or_without_a_limit_no_approval_is_needed(client, session, world):
    within = refund(session, world, amount="500.00")
    assert resolve_by_api(client, world, within).get_json()["status"] == "resolved"


def test_a_foreign_amount_is_converted_and_without_a_rate_it_needs_approval(client, session, world):
    exchange_rates.set_rate(session, "USD", "EUR", "0.90", date(2026, 1, 1))
    session.commit()
    small = refund(session, world, amount="550.00", currency="USD")  # 495.00 EUR
    large = refund(session, world, amount="560.00", currency="USD")  # 504.00 EUR
    unknown = refund(session, world, amount="1.00", currency="SEK")

    assert resolve_by_api(client, world, small).get_json()["status"] == "resolved"
    assert resolve_by_api(client, world, large).get_json()["status"] == "awaiting_approval"
    assert resolve_by_api(client, world, unknown).get_json()["status"] == "awaiting_approval"


def test_a_discrepancy_fix_above_its_teams_threshold_waits_for_approval(client, session, world):
    fixer = session.get(User, world.outsider.id)  # a Payments executive
    item = lifecycle.create_item(session, actor=fixer, source="api", type="discrepancy_fix", subject="Short pay",
                                  team=world.payments, assignee=fixer,
                                  fields={"account": "ACC-9", "expected_amount": "1000.00",
                                          "actual_amount": "850.00", "currency": "EUR"})
    session.commit()

    assert resolve_by_api(client, world, item, "outsider@example.com").get_json()["status"] == "awaiting_approval"
    assert decide_by_api(client, world, item, "outsider@example.com").status_code == 403  # the maker
    assert decide_by_api(client, world, item, "paychecker@example.com").status_code == 200


def test_the_api_lists_pending_approvals_with_who_may_decide(client, session, world):
    first = refund(session, world)
    second = refund(session, world, maker=world.sup)
    resolve_by_api(client, world, first)
    resolve_by_api(client, world, second, "sup@example.com")

    as_sup = client.get(f"{API}/approvals", headers=world.headers("sup@example.com")).get_json()
    as_checker = client.get(f"{API}/approvals", query_string={"limit": 1},
                            headers=world.headers("checker@example.com")).get_json()
    as_plain = client.get(f"{API}/approvals", headers=world.headers("plain@example.com")).get_json()
    as_pay_sup = client.get(f"{API}/approvals", headers=world.headers("paysup@example.com")).get_json()

    assert [(a["ref"], a["may_decide"]) for a in as_sup["approvals"]] == [(first.ref, True), (second.ref, False)]
    assert as_sup["approvals"][0]["requested_by"] == "maker@example.com"
    assert [a["ref"] for a in as_checker["approvals"]] == [first.ref] and as_checker["next_cursor"]
    page2 = client.get(f"{API}/approvals", query_string={"cursor": as_checker["next_cursor"]},
                       headers=world.headers("checker@example.com")).get_json()
    assert [a["ref"] for a in page2["approvals"]] == [second.ref] and page2["next_cursor"] is None
    assert as_plain["approvals"] == [] and as_pay_sup["approvals"] == []
    bad = client.get(f"{API}/approvals", query_string={"team": "x"}, headers=world.headers("sup@example.com"))
    assert bad.status_code == 422


# --- web --------------------------------------------------------------------------------------------

def logged_in(app, email):
    client = app.test_client()
    Auth(client).login(email)
    return client


def test_web_self_approval_is_a_403_page(app, session, world):
    item = refund(session, world, maker=world.sup)
    maker = logged_in(app, "sup@example.com")
    page = text(maker.get(f"/items/{item.ref}"))
    maker.post(f"/items/{item.ref}/status", data={"status": "resolved", "version": item.version,
                                                  "csrf_token": csrf_token_from(page)})
    page = text(maker.get(f"/items/{item.ref}"))
    assert "You asked for this approval, so someone else must decide" in page and 'value="approve"' not in page

    response = maker.post(f"/items/{item.ref}/approval", data={"decision": "approve",
                                                               "csrf_token": csrf_token_from(page)})

    assert response.status_code == 403
    assert "cannot approve their own request" in text(response)
    assert reload(session, item).status == "awaiting_approval"

    plain = logged_in(app, "plain@example.com")
    page = text(plain.get(f"/items/{item.ref}"))
    assert 'value="approve"' not in page
    assert plain.post(f"/items/{item.ref}/approval", data={"decision": "approve",
                                                           "csrf_token": csrf_token_from(page)}).status_code == 403


def test_supervisors_work_the_approvals_queue(app, session, world):
    mine = refund(session, world)
    lifecycle.change_status(session, session.get(WorkItem, mine.id), "resolved",
                             actor=session.get(User, world.maker.id))
    payments_item = lifecycle.create_item(session, actor=world.outsider, source="api", type="discrepancy_fix",
                                           subject="Other team", team=world.payments, assignee=world.outsider,
                                           fields={"account": "A-1", "expected_amount": "500.00",
                                                   "actual_amount": "0.00", "currency": "EUR"})
    lifecycle.change_status(session, payments_item, "resolved", actor=world.outsider)
    session.commit()
    sup = logged_in(app, "sup@example.com")

    page = text(sup.get("/supervisor/approvals"))

    table = re.search(r'<table[^>]*id="approvals".*?</table>', page, re.S).group(0)
    assert re.findall(r'<tr data-ref="(BO-\d+)"', table) == [mine.ref]  # not the Payments item
    assert "750.00 EUR" in table and "limit 500.00 EUR" in table and "Mia Maker" in table

    response = sup.post(f"/items/{mine.ref}/approval", data={
        "decision": "reject", "comment": "", "next": "/supervisor/approvals", "csrf_token": csrf_token_from(page)},
        follow_redirects=True)
    assert "Say why the request is rejected" in text(response)
    response = sup.post(f"/items/{mine.ref}/approval", data={
        "decision": "approve", "comment": "ok", "next": "/supervisor/approvals", "csrf_token": csrf_token_from(page)})
    assert response.status_code == 302 and response.headers["Location"] == "/supervisor/approvals"
    assert reload(session, mine).status == "resolved"
    assert "Nothing waits for approval." in text(sup.get("/supervisor/approvals"))


def test_supervisors_designate_checkers_on_the_approvals_page(app, session, world):
    sup = logged_in(app, "sup@example.com")
    page = text(sup.get("/supervisor/approvals"))
    assert "Make checker<span class=\"visually-hidden\"> Pat Plain in Refunds" in page

    sup.post(f"/supervisor/teams/{world.refunds.id}/checkers",
             data={"user_id": world.plain.id, "enabled": "1", "csrf_token": csrf_token_from(page)})
    assert world.plain.id in decisions.checker_ids(session, world.refunds.id)
    sup.post(f"/supervisor/teams/{world.refunds.id}/checkers",
             data={"user_id": world.checker.id, "enabled": "0", "csrf_token": csrf_token_from(page)})
    assert decisions.checker_ids(session, world.refunds.id) == {world.plain.id}

    refused = sup.post(f"/supervisor/teams/{world.payments.id}/checkers",
                       data={"user_id": world.plain.id, "enabled": "1", "csrf_token": csrf_token_from(page)},
                       follow_redirects=True)
    assert "Only a supervisor of this team can do this" in text(refused)
    assert world.plain.id not in decisions.checker_ids(session, world.payments.id)


def test_a_checker_decides_on_the_item_page_and_others_see_no_approvals_page(app, session, world):
    item = refund(session, world)
    lifecycle.change_status(session, session.get(WorkItem, item.id), "resolved",
                             actor=session.get(User, world.maker.id))
    session.commit()
    checker = logged_in(app, "checker@example.com")

    page = text(checker.get(f"/items/{item.ref}"))
    assert 'value="approve"' in page and "750.00 EUR" in page
    checker.post(f"/items/{item.ref}/approval", data={"decision": "approve", "csrf_token": csrf_token_from(page)})

    assert reload(session, item).status == "resolved"
    assert checker.get("/supervisor/approvals").status_code == 200  # a checker has a queue too
    assert 'id="approvals-link"' in text(checker.get("/"))
    plain = logged_in(app, "plain@example.com")
    assert plain.get("/supervisor/approvals").status_code == 403
    assert 'id="approvals-link"' not in text(plain.get("/"))


def test_the_approvals_queue_is_oldest_request_first_not_by_id(app, session, world):
    from datetime import timedelta

    from queue_app.models.base import utcnow

    items = [refund(session, world) for _ in range(3)]
    for item in items:
        lifecycle.change_status(session, session.get(WorkItem, item.id), "resolved",
                                 actor=session.get(User, world.maker.id))
    session.commit()
    now = utcnow()
    for item, hours in zip(items, (1, 3, 2)):  # the first asked most recently
        session.scalar(sa.select(Approval).where(Approval.work_item_id == item.id)).requested_at = \
            now - timedelta(hours=hours)
    session.commit()
    oldest_first = [items[1].ref, items[2].ref, items[0].ref]

    page = text(logged_in(app, "sup@example.com").get("/supervisor/approvals"))
    table = re.search(r'<table[^>]*id="approvals".*?</table>', page, re.S).group(0)
    assert re.findall(r'<tr data-ref="(BO-\d+)"', table) == oldest_first

    sup = session.get(User, world.sup.id)
    walked, after_id = [], None
    for _ in range(4):  # one a page: the cursor carries on in the same order
        rows = decisions.pending_queue(session, sup, after_id=after_id, limit=1)
        if not rows:
            break
        walked.append(rows[0].work_item.ref)
        after_id = rows[0].id
    assert walked == oldest_first
