"""The SLA on the web pages (panel, ladder steps, queue countdowns) and the classification form."""
import re
from datetime import timedelta

import sqlalchemy as sa

from queue_app.models import Event, WorkItem
from queue_app.models.base import utcnow
from queue_app.services.items import lifecycle
from queue_app.services.sla import ladder as sla_ladder
from queue_app.web.templating import business_span
from tests.conftest import Auth, csrf_token_from
from tests.factories import make_policy
from tests.integration.test_web import text


def section(html, pattern):
    match = re.search(pattern, html, re.S)
    assert match, pattern
    return match.group(0)


def sla_panel(html):
    return section(html, r'<section class="card sla-card".*?</section>')


def history(html):
    return section(html, r'<ol class="history" id="history">.*?</ol>')


def row(html, ref):
    return section(html, rf'<tr data-ref="{ref}".*?</tr>')


def reload(session, item):
    session.expire_all()
    return session.get(WorkItem, item.id)


def breached_item(session, world, make_item, hours_ago=3):
    """An item whose first response was due an hour after creation; the ladder has run up to now."""
    make_policy(session, name="Fast", first_response_minutes=60, resolution_minutes=6000)
    item = make_item(team=world.returns, actor=world.sup, assignee=world.priya, subject="Late refund",
                     now=utcnow() - timedelta(hours=hours_ago))
    sla_ladder.process_due(session, item, utcnow())
    session.commit()
    return item


def test_business_span_words():
    assert business_span(135) == "2 h 15 min left"
    assert business_span(-35) == "35 min overdue"
    assert business_span(120.2) == "2 h left"
    assert business_span(0.2) == "under 1 min left"
    assert business_span(0, overdue=True) == "under 1 min overdue"
    assert business_span(None) == ""


def test_item_page_shows_remaining_time_and_no_steps_yet(client, auth, session, world, make_item):
    make_policy(session, name="Returns SLA", first_response_minutes=240, resolution_minutes=2880)
    item = make_item(team=world.returns, assignee=world.priya, now=utcnow() - timedelta(minutes=105))
    session.commit()
    auth.login("priya@example.com")
    panel = sla_panel(text(client.get(f"/items/{item.ref}")))
    assert "On track" in panel and "Returns SLA" in panel
    remaining = re.search(r'id="sla-remaining">([^<]+)<', panel).group(1)
    assert remaining in ("2 h 15 min left", "2 h 14 min left")
    assert "No warning, breach or escalation yet." in panel
    assert "escalation-level" not in panel


def test_item_page_shows_overdue_time_and_the_ladder_steps(client, auth, session, world, make_item):
    item = breached_item(session, world, make_item)
    auth.login("priya@example.com")
    page = text(client.get(f"/items/{item.ref}"))
    panel = sla_panel(page)
    assert "Breached" in panel
    overdue = re.search(r'class="sla-remaining overdue" id="sla-remaining">([^<]+)<', panel).group(1)
    assert overdue in ("2 h overdue", "2 h 1 min overdue", "1 h 59 min overdue")
    assert re.search(r'id="sla-level">1<', panel)
    assert "Escalation level </span>" in page  # the marker in the header, readable by screen readers

    steps = section(panel, r'<ol class="ladder" id="sla-ladder".*?</ol>')
    kinds = re.findall(r'<span class="ladder-kind">([^<]+)</span>', steps)
    assert kinds == ["SLA warning", "SLA breached"]
    assert steps.count("First response") == 2 and "Level 1" in steps
    assert "Notified priya@example.com, sam@example.com" in steps and "Priority raised to High" in steps
    assert len(re.findall(r"<time datetime=", steps)) == 2

    events = history(page)
    assert "SLA warning" in events and "SLA breached" in events
    assert re.search(r'<span class="k">Target</span> First response', events)
    assert re.search(r'<span class="k">Notified</span> priya@example.com, sam@example.com', events)


def test_due_times_are_shown_in_the_viewers_time_zone(client, auth, session, world, make_item):
    world.priya.timezone = "Asia/Tokyo"
    item = breached_item(session, world, make_item)
    auth.login("priya@example.com")
    panel = sla_panel(text(client.get(f"/items/{item.ref}")))
    assert "JST" in panel and "UTC</time>" not in panel


def test_escalation_with_reassignment_is_readable_in_history(client, auth, session, world, make_item):
    escalations = world.docs
    make_policy(session, name="Laddered", first_response_minutes=60, resolution_minutes=6000, escalation=[
        {"after_breach_minutes": 0, "notify": ["assignee"], "raise_priority": True},
        {"after_breach_minutes": 30, "notify": ["supervisors"], "reassign_to_team": escalations.name},
    ])
    item = make_item(team=world.returns, actor=world.sup, assignee=world.priya, now=utcnow() - timedelta(hours=2))
    sla_ladder.process_due(session, item, utcnow())
    session.commit()
    auth.login("lena@example.com")  # the item is Documents' now
    page = text(client.get(f"/items/{item.ref}"))
    steps = section(sla_panel(page), r'<ol class="ladder".*?</ol>')
    assert re.findall(r'<span class="ladder-kind">([^<]+)</span>', steps) == ["SLA warning", "SLA breached",
                                                                              "Escalated"]
    assert "Level 2" in steps and "Moved to Documents" in steps
    events = history(page)
    assert "Escalated" in events and re.search(r'<span class="k">Reassigned to</span> Documents', events)
    assert re.search(r'<span class="k">Level</span> 2', events)


def test_history_shows_reclassification_and_recalculation(client, auth, session, world, make_item):
    make_policy(session, name="Urgent", match_priority="urgent", first_response_minutes=30)
    item = make_item(team=world.returns, assignee=world.priya)
    lifecycle.reclassify(session, item, actor=world.sup, priority="urgent")
    session.commit()
    auth.login("priya@example.com")
    events = history(text(client.get(f"/items/{item.ref}")))
    assert "Reclassified" in events and "SLA recalculated" in events
    assert re.search(r'<span class="k">Priority</span> Normal → Urgent', events)
    assert re.search(r'<span class="k">Policy</span> Urgent', events)


def test_classification_form_changes_priority_and_says_so(client, auth, session, world, make_item):
    make_policy(session, name="Urgent", match_priority="urgent", first_response_minutes=30)
    item = make_item(team=world.returns, assignee=world.priya)
    session.commit()
    old_due = item.first_response_due
    auth.login("priya@example.com")
    page = text(client.get(f"/items/{item.ref}"))
    form = section(page, r'<form[^>]*action="/items/[^"]+/classification".*?</form>')
    assert '<label for="classify-type">Type</label>' in form and '<label for="classify-priority">' in form
    assert re.search(r'<option selected value="normal">Normal</option>', form)
    response = client.post(f"/items/{item.ref}/classification", data={
        "type": "return", "priority": "urgent", "version": item.version, "csrf_token": csrf_token_from(page)})
    assert response.status_code == 302 and response.headers["Location"] == f"/items/{item.ref}"
    page = text(client.get(f"/items/{item.ref}"))
    assert f"{item.ref} is now return, urgent priority, in Returns." in page
    item = reload(session, item)
    assert item.priority == "urgent" and item.sla_policy.name == "Urgent" and item.first_response_due < old_due
    assert "SLA recalculated" in history(page)


def test_classification_form_with_nothing_changed_says_so(client, auth, session, world, make_item):
    item = make_item(team=world.returns, assignee=world.priya)
    session.commit()
    auth.login("priya@example.com")
    page = text(client.get(f"/items/{item.ref}"))
    client.post(f"/items/{item.ref}/classification", data={
        "type": "return", "priority": "normal", "version": item.version, "csrf_token": csrf_token_from(page)})
    assert "Nothing changed." in text(client.get(f"/items/{item.ref}"))
    assert reload(session, item).version == item.version


def test_stale_classification_form_shows_the_conflict(client, auth, session, world, make_item):
    item = make_item(team=world.returns, assignee=world.priya)
    session.commit()
    auth.login("priya@example.com")
    page = text(client.get(f"/items/{item.ref}"))
    seen = item.version
    lifecycle.add_note(session, item, actor=world.sup, body="Meanwhile...")
    session.commit()
    client.post(f"/items/{item.ref}/classification", data={
        "type": "return", "priority": "high", "version": seen, "csrf_token": csrf_token_from(page)})
    page = text(client.get(f"/items/{item.ref}"))
    assert "was changed by someone else" in page and "reload" in page
    assert reload(session, item).priority == "normal"


def test_bad_classification_values_flash_and_change_nothing(client, auth, session, world, make_item):
    item = make_item(team=world.returns, assignee=world.priya)
    session.commit()
    auth.login("priya@example.com")
    page = text(client.get(f"/items/{item.ref}"))
    client.post(f"/items/{item.ref}/classification", data={
        "type": "return", "priority": "asap", "version": item.version, "csrf_token": csrf_token_from(page)})
    assert "Priority: Not a valid choice." in text(client.get(f"/items/{item.ref}"))
    assert reload(session, item).priority == "normal"


def test_executive_sees_no_team_select_and_cannot_move_the_item(client, auth, session, world, make_item):
    item = make_item(team=world.returns, assignee=world.priya)
    session.commit()
    auth.login("priya@example.com")
    page = text(client.get(f"/items/{item.ref}"))
    assert 'id="classify-priority"' in page
    assert 'name="team_id"' not in page and 'id="classify-team"' not in page
    client.post(f"/items/{item.ref}/classification", data={
        "type": "return", "priority": "normal", "team_id": world.docs.id, "version": item.version,
        "csrf_token": csrf_token_from(page)})
    assert "Only a supervisor of this team" in text(client.get(f"/items/{item.ref}"))
    assert reload(session, item).team_id == world.returns.id


def test_colleague_without_work_rights_sees_no_classification_form(client, auth, session, world, make_item):
    item = make_item(team=world.returns, assignee=world.tom)
    session.commit()
    auth.login("priya@example.com")
    page = text(client.get(f"/items/{item.ref}"))
    assert "classify-heading" not in page and 'id="sla-remaining"' in page


def test_supervisor_moves_an_item_to_another_team(client, auth, session, world, make_item):
    item = make_item(team=world.returns, assignee=world.priya)
    session.commit()
    auth.login("sam@example.com")
    page = text(client.get(f"/items/{item.ref}"))
    select = section(page, r'<select id="classify-team" name="team_id".*?</select>')
    assert re.search(rf'<option value="{world.returns.id}" selected>Returns</option>', select)
    assert f'<option value="{world.docs.id}">Documents</option>' in select
    assert '<label for="classify-team">Team</label>' in page
    response = client.post(f"/items/{item.ref}/classification", data={
        "type": "document_verification", "priority": "normal", "team_id": world.docs.id, "version": item.version,
        "csrf_token": csrf_token_from(page)})
    assert response.status_code == 302 and response.headers["Location"] == "/"  # he cannot see it any more
    assert "is now document verification, normal priority, in Documents." in text(client.get("/"))
    item = reload(session, item)
    assert (item.team_id, item.assignee_id, item.type) == (world.docs.id, None, "document_verification")


def test_queues_show_remaining_and_overdue_time_and_the_escalation_marker(app, client, auth, session, world,
                                                                          make_item):
    late = breached_item(session, world, make_item)
    fresh = make_item(team=world.returns, assignee=world.priya, subject="Fresh one")
    unassigned = make_item(team=world.returns, subject="Nobody's yet", now=utcnow() - timedelta(hours=6))
    paused = make_item(team=world.returns, assignee=world.priya)
    lifecycle.change_status(session, paused, "pending_customer", actor=world.priya)
    session.commit()

    auth.login("priya@example.com")
    page = text(client.get("/"))
    late_row = row(page, late.ref)
    assert "Breached" in late_row and re.search(r'class="due-rel overdue">(1 h 59 min|2 h|2 h 1 min) overdue<',
                                                late_row)
    assert re.search(r'<span class="badge escalation-level" title="Escalation level 1">', late_row)
    fresh_row = row(page, fresh.ref)
    assert re.search(r'class="due-rel">(59 min|1 h) left<', fresh_row)  # the Fast policy: an hour to respond
    assert "escalation-level" not in fresh_row
    assert "clock paused" in row(page, paused.ref)
    team_row = row(page, unassigned.ref)  # the team queue
    assert re.search(r'class="due-rel overdue">(4 h 59 min|5 h|5 h 1 min) overdue<', team_row)

    supervisor = app.test_client()
    Auth(supervisor).login("sam@example.com")
    board_row = row(text(supervisor.get("/supervisor")), unassigned.ref)
    assert "Breached" in board_row and "overdue" in board_row


def test_supervisor_board_shows_the_escalation_marker(client, auth, session, world, make_item):
    make_policy(session, name="Fast", first_response_minutes=60, resolution_minutes=6000)
    item = make_item(team=world.returns, actor=world.sup, now=utcnow() - timedelta(hours=2))
    sla_ladder.process_due(session, item, utcnow())
    session.commit()
    assert item.escalation_level == 1
    auth.login("sam@example.com")
    board_row = row(text(client.get("/supervisor")), item.ref)
    assert "Escalation level </span>" in board_row and "overdue" in board_row
    assert session.scalar(sa.select(sa.func.count()).select_from(Event).where(Event.kind == "sla_breached")) == 1
