"""The assignment board through the test client: the queue, bulk assignment with per-item refusals,
reassignment from a person's list, the CSV export, roles, teams and CSRF."""
import csv
import io
import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from queue_app.models import Event, Notification, OutboxJob, WorkItem
from queue_app.models.base import utcnow
from queue_app.services.people import notifications, users
from tests.conftest import Auth, csrf_token_from


def text(response):
    return response.get_data(as_text=True)


def refs_in(html, table_id):
    table = re.search(rf'<table[^>]*id="{table_id}".*?</table>', html, re.S)
    return re.findall(r'<tr data-ref="(BO-\d+)"', table.group(0)) if table else []


def flashes(html):
    return [re.sub(r"\s+", " ", m).strip() for m in re.findall(r'<div class="flash flash-\w+"[^>]*>(.*?)</div>', html, re.S)]


def reload(session, item):
    session.expire_all()
    return session.get(WorkItem, item.id)


def assigned_events(session, item):
    return session.scalars(sa.select(Event).where(Event.work_item_id == item.id, Event.kind == "assigned")
                           .order_by(Event.id)).all()


def notes_to(session, user):
    session.expire_all()
    return session.scalars(sa.select(Notification).where(Notification.user_id == user.id)
                           .order_by(Notification.id)).all()


@pytest.fixture
def world(session, make_team, make_user):
    """Returns (supervisor Sam, executives Priya and Tom), Documents (supervisor Dora, executive Lena),
    an admin."""
    returns = make_team(name="Returns", work_types=["return"])
    docs = make_team(name="Documents", work_types=["document_verification"])
    sam = make_user(email="sam@example.com", name="Sam Supervisor", role="supervisor", teams=[returns])
    dora = make_user(email="dora@example.com", name="Dora Docs", role="supervisor", teams=[docs])
    make_user(email="ada@example.com", name="Ada Admin", role="admin")
    priya = make_user(email="priya@example.com", name="Priya Nair", teams=[returns])
    tom = make_user(email="tom@example.com", name="Tom Becker", teams=[returns])
    lena = make_user(email="lena@example.com", name="Lena Vogel", teams=[docs])
    session.commit()
    return type("World", (), dict(returns=returns, docs=docs, sam=sam, dora=dora, priya=priya, tom=tom, lena=lena))


@pytest.fixture
def signed_in(app):
    def sign_in(email):
        client = app.test_client()
        Auth(client).login(email)
        return client
    return sign_in


def board_post(client, items, **data):
    """Tick `items` on the board (as the page's checkboxes do) and submit the bulk form."""
    page = text(client.get(data.pop("page", "/supervisor")))
    form = {"csrf_token": csrf_token_from(page), "next": "/supervisor",
            "item": [f"{item.id}:{item.assignee_id or ''}" for item in items]}
    form.update({k: v for k, v in data.items() if v is not None})
    return client.post("/supervisor/assign", data=form)


# --- the queue ----------------------------------------------------------------------------------

def test_board_lists_only_my_teams_unassigned_items_most_urgent_first(session, world, make_item, signed_in):
    now = utcnow()
    later = make_item(team=world.returns, subject="Later", now=now)
    soonest = make_item(team=world.returns, subject="Soonest", now=now - timedelta(hours=3))
    middle = make_item(team=world.returns, subject="Middle", priority="high", now=now - timedelta(hours=1))
    make_item(team=world.returns, assignee=world.tom, subject="Taken")
    foreign = make_item(team=world.docs, type="document_verification", subject="Foreign")
    session.commit()
    assert soonest.sla_next_due < middle.sla_next_due < later.sla_next_due

    sam = signed_in("sam@example.com")
    page = text(sam.get("/supervisor"))
    assert refs_in(page, "unassigned") == [soonest.ref, middle.ref, later.ref]
    assert foreign.ref not in page and "Lena Vogel" not in page
    assert re.search(r'data-user="tom@example.com".*?class="num open-count">1<', page, re.S)
    assert re.search(r'data-user="tom@example.com".*?class="num free-count">19<', page, re.S)
    assert 'type="checkbox" id="select-all"' in page
    assert f'value="{soonest.id}:" form="bulk-assign"' in page

    admin = signed_in("ada@example.com")
    page = text(admin.get("/supervisor"))
    assert set(refs_in(page, "unassigned")) == {soonest.ref, middle.ref, later.ref, foreign.ref}
    page = text(admin.get("/supervisor", query_string={"team": world.docs.id}))
    assert refs_in(page, "unassigned") == [foreign.ref]


def test_board_pages_by_keyset(session, world, make_item, signed_in):
    from queue_app.services.assignment.board import BOARD_PAGE

    now = utcnow()
    items = [make_item(team=world.returns, now=now - timedelta(minutes=n)) for n in range(BOARD_PAGE + 3)]
    session.commit()
    expected = [i.ref for i in reversed(items)]  # the oldest is due first
    sam = signed_in("sam@example.com")
    pages, url = [], "/supervisor"
    while url:
        page = text(sam.get(url))
        pages.append(refs_in(page, "unassigned"))
        more = re.search(r'<p class="pager"><a href="([^"]+)">Next page', page)
        url = more.group(1).replace("&amp;", "&") if more else None
    assert [len(p) for p in pages] == [BOARD_PAGE, 3]
    assert pages[0] + pages[1] == expected


def test_team_filter_refuses_other_teams_and_bad_values(world, signed_in):
    sam = signed_in("sam@example.com")
    assert sam.get("/supervisor", query_string={"team": world.docs.id}).status_code == 404
    response = sam.get("/supervisor", query_string={"team": "abc"})
    assert response.status_code in (400, 422) and "team filter must be a team id" in text(response)
    assert sam.get("/supervisor", query_string={"team": world.returns.id}).status_code == 200


# --- bulk assignment ----------------------------------------------------------------------------

def test_bulk_assign_writes_one_event_per_item_and_notifies_the_executive(session, world, make_item, signed_in):
    items = [make_item(team=world.returns, subject=f"Parcel {n}") for n in range(3)]
    other = make_item(team=world.returns, subject="Not ticked")
    session.commit()
    sam = signed_in("sam@example.com")

    response = board_post(sam, items, assignee_id=world.priya.id)
    assert response.status_code == 302 and response.headers["Location"] == "/supervisor"
    page = text(sam.get("/supervisor"))
    assert f"3 items assigned to Priya Nair: {', '.join(i.ref for i in items)}." in flashes(page)
    assert refs_in(page, "unassigned") == [other.ref]

    for item in items:
        assert reload(session, item).assignee_id == world.priya.id
        events = assigned_events(session, item)
        assert len(events) == 1
        assert events[0].actor_id == world.sam.id
        assert events[0].data["to"] == "priya@example.com"
    notes = notes_to(session, world.priya)
    assert len(notes) == 1 and notes[0].subject == "3 items assigned to you"
    assert all(i.ref in notes[0].body for i in items) and other.ref not in notes[0].body
    jobs = session.scalars(sa.select(OutboxJob).where(OutboxJob.job_path == notifications.SEND_JOB)).all()
    assert [job.args for job in jobs] == [[notes[0].id]]
    assert not notes_to(session, world.tom)


def test_bulk_assign_reports_each_refusal_and_assigns_the_rest(session, world, make_item, make_user, signed_in):
    returns = world.returns
    picky = make_user(email="pia@example.com", name="Pia Picky", teams=[returns], skills=["return"], capacity=2)
    fine = make_item(team=returns, subject="Fine", now=utcnow() - timedelta(hours=2))
    general = make_item(team=returns, type="general", subject="No skill")
    full = make_item(team=returns, subject="One too many")
    taken = make_item(team=returns, subject="Taken meanwhile")
    done = make_item(team=returns, subject="Closed meanwhile")
    foreign = make_item(team=world.docs, type="document_verification")
    make_item(team=returns, assignee=picky, subject="Already hers")
    session.commit()
    sam = signed_in("sam@example.com")
    page = text(sam.get("/supervisor"))
    token = csrf_token_from(page)
    # what the page showed; then, before the form is sent, others change two of the items
    ticked = [f"{i.id}:" for i in (fine, general, full, taken, done, foreign)]
    from queue_app.services.items import lifecycle, state
    state.assign(session, taken, world.tom, actor=world.sam)
    lifecycle.change_status(session, done, "resolved", actor=world.sam)
    session.commit()

    response = sam.post("/supervisor/assign", data={"csrf_token": token, "item": ticked, "assignee_id": picky.id,
                                                    "next": "/supervisor"})
    assert response.status_code == 302
    messages = flashes(text(sam.get("/supervisor")))
    assert f"1 item assigned to Pia Picky: {fine.ref}." in messages
    assert "5 items not assigned:" in messages
    assert f"{general.ref}: Pia Picky does not have the skill general." in messages
    assert f"{full.ref}: Pia Picky would go over capacity (2 open of 2)." in messages
    assert f"{taken.ref}: It was taken by Tom Becker meanwhile." in messages
    assert f"{done.ref}: It is resolved; reopen it before assigning." in messages
    assert f"item {foreign.id}: It does not exist or is not in a team you manage." in messages
    assert reload(session, fine).assignee_id == picky.id
    assert reload(session, general).assignee_id is None and reload(session, full).assignee_id is None
    assert reload(session, taken).assignee_id == world.tom.id
    assert reload(session, foreign).assignee_id is None

    # the supervisor may decide otherwise: over capacity and without the skill, on purpose
    response = sam.post("/supervisor/assign", data={
        "csrf_token": token, "item": [f"{general.id}:", f"{full.id}:"], "assignee_id": picky.id,
        "override": "y", "next": "/supervisor"})
    assert "2 items assigned to Pia Picky" in " ".join(flashes(text(sam.get("/supervisor"))))
    assert reload(session, general).assignee_id == picky.id and reload(session, full).assignee_id == picky.id


def test_bulk_assign_refuses_someone_out_of_office(session, world, make_item, signed_in):
    now = utcnow()
    users.set_absence(session, world.priya, actor=world.sam, start=now - timedelta(hours=1), until=None, now=now)
    item = make_item(team=world.returns)
    session.commit()
    sam = signed_in("sam@example.com")
    board_post(sam, [item], assignee_id=world.priya.id)
    messages = flashes(text(sam.get("/supervisor")))
    assert f"{item.ref}: Priya Nair is out of office." in messages
    assert reload(session, item).assignee_id is None


def test_bulk_assign_needs_a_choice_and_a_selection(session, world, make_item, signed_in):
    item = make_item(team=world.returns)
    session.commit()
    sam = signed_in("sam@example.com")
    board_post(sam, [item])
    assert "Choose who gets the selected items." in flashes(text(sam.get("/supervisor")))
    board_post(sam, [], assignee_id=world.priya.id)
    assert "Select at least one item." in flashes(text(sam.get("/supervisor")))
    response = sam.post("/supervisor/assign", data={"csrf_token": csrf_token_from(text(sam.get("/supervisor"))),
                                                    "item": ["x:y"], "assignee_id": world.priya.id})
    assert response.status_code == 302
    assert "The selection is not valid; reload the page and try again." in flashes(text(sam.get("/supervisor")))
    board_post(sam, [item], assignee_id=999999)
    assert "That person does not exist any more." in flashes(text(sam.get("/supervisor")))
    assert reload(session, item).assignee_id is None


def test_person_items_reassigns_some_and_returns_others_to_the_queue(session, world, make_item, signed_in):
    keep, move, back = (make_item(team=world.returns, assignee=world.tom, subject=s) for s in ("Keep", "Move", "Back"))
    session.commit()
    sam = signed_in("sam@example.com")
    board = text(sam.get("/supervisor"))
    assert f'href="/supervisor/people/{world.tom.id}/items"' in board
    url = f"/supervisor/people/{world.tom.id}/items"
    page = text(sam.get(url))
    assert set(refs_in(page, "person-items")) == {keep.ref, move.ref, back.ref}
    assert f'value="{move.id}:{world.tom.id}"' in page

    board_post(sam, [move], assignee_id=world.priya.id, page=url)
    assert reload(session, move).assignee_id == world.priya.id
    assert assigned_events(session, move)[-1].data["from"] == "tom@example.com"
    assert len(notes_to(session, world.priya)) == 1

    board_post(sam, [back], unassign="y", page=url)
    assert reload(session, back).assignee_id is None
    assert reload(session, keep).assignee_id == world.tom.id
    assert refs_in(text(sam.get(url)), "person-items") == [keep.ref]


def test_single_assign_notifies_and_warns_about_capacity(session, world, make_item, signed_in):
    world.priya.capacity = 0
    item = make_item(team=world.returns)
    session.commit()
    sam = signed_in("sam@example.com")
    page = text(sam.get(f"/items/{item.ref}"))
    sam.post(f"/supervisor/items/{item.ref}/assign", data={
        "assignee_id": world.priya.id, "version": item.version, "csrf_token": csrf_token_from(page)})
    messages = flashes(text(sam.get("/supervisor")))
    assert f"{item.ref} assigned to Priya Nair." in messages
    assert "Note: Priya Nair now has 1 open items, over their capacity of 0." in messages
    assert reload(session, item).assignee_id == world.priya.id
    notes = notes_to(session, world.priya)
    assert len(notes) == 1 and notes[0].subject == f"[{item.ref}] assigned to you"


def test_distribute_now_is_offered_for_automatic_teams_and_assigns(session, world, make_item, signed_in):
    items = [make_item(team=world.returns) for _ in range(2)]
    session.commit()
    sam = signed_in("sam@example.com")
    assert "Distribute now" not in text(sam.get("/supervisor"))
    world.returns.auto_assign = "least_loaded"
    session.commit()
    page = text(sam.get("/supervisor"))
    assert f'action="/supervisor/teams/{world.returns.id}/distribute"' in page
    response = sam.post(f"/supervisor/teams/{world.returns.id}/distribute",
                        data={"csrf_token": csrf_token_from(page), "next": "/supervisor"})
    assert response.headers["Location"] == "/supervisor"
    assert "2 items of Returns assigned." in flashes(text(sam.get("/supervisor")))
    owners = {reload(session, i).assignee_id for i in items}
    assert owners == {world.priya.id, world.tom.id}
    assert len(notes_to(session, world.priya)) == 1 and len(notes_to(session, world.tom)) == 1


# --- roles, teams, CSRF -------------------------------------------------------------------------

def test_executive_gets_403_everywhere_on_the_board(session, world, make_item, signed_in):
    item = make_item(team=world.returns)
    session.commit()
    priya = signed_in("priya@example.com")
    token = csrf_token_from(text(priya.get("/")))
    assert priya.get("/supervisor").status_code == 403
    assert priya.get("/supervisor/unassigned.csv").status_code == 403
    assert priya.get(f"/supervisor/people/{world.tom.id}/items").status_code == 403
    response = priya.post("/supervisor/assign", data={"csrf_token": token, "item": [f"{item.id}:"],
                                                       "assignee_id": world.priya.id})
    assert response.status_code == 403
    assert reload(session, item).assignee_id is None


def test_supervisor_of_another_team_cannot_assign(session, world, make_item, signed_in):
    item = make_item(team=world.returns)
    mine = make_item(team=world.docs, type="document_verification")
    session.commit()
    dora = signed_in("dora@example.com")
    page = text(dora.get("/supervisor"))
    assert item.ref not in page and refs_in(page, "unassigned") == [mine.ref]
    board_post(dora, [item], assignee_id=world.priya.id)
    assert f"item {item.id}: It does not exist or is not in a team you manage." in flashes(text(dora.get("/supervisor")))
    board_post(dora, [mine], assignee_id=world.priya.id)  # Priya is not in Documents
    assert f"{mine.ref}: Priya Nair is not a member of Documents." in flashes(text(dora.get("/supervisor")))
    response = dora.post(f"/supervisor/items/{item.ref}/assign", data={
        "assignee_id": world.priya.id, "version": item.version, "csrf_token": csrf_token_from(page)})
    assert response.status_code == 404
    assert dora.get(f"/supervisor/people/{world.priya.id}/items").status_code == 404
    assert dora.get("/supervisor/unassigned.csv", query_string={"team": world.returns.id}).status_code == 404
    assert reload(session, item).assignee_id is None and reload(session, mine).assignee_id is None
    assert not session.scalar(sa.select(sa.func.count()).select_from(Notification))


def test_bulk_assign_without_csrf_token_is_refused(session, world, make_item, signed_in):
    item = make_item(team=world.returns)
    session.commit()
    sam = signed_in("sam@example.com")
    response = sam.post("/supervisor/assign", data={"item": [f"{item.id}:"], "assignee_id": world.priya.id})
    assert response.status_code == 400 and "The form was refused: The CSRF token is missing." in text(response)
    response = sam.post("/supervisor/assign", data={"item": [f"{item.id}:"], "assignee_id": world.priya.id,
                                                    "csrf_token": "forged"})
    assert response.status_code == 400 and "The form was refused" in text(response)
    # the same post with the page's token goes through (so it was the token that was refused)
    other = sam.post("/supervisor/assign", data={"item": [f"{item.id}:"], "assignee_id": world.tom.id,
                                                 "csrf_token": csrf_token_from(text(sam.get("/supervisor")))})
    assert other.status_code == 302 and reload(session, item).assignee_id == world.tom.id
    item_events = assigned_events(session, item)
    assert [e.data["to"] for e in item_events] == ["tom@example.com"]
    assert not notes_to(session, world.priya)


def test_board_forms_carry_the_csrf_token(session, world, make_item, signed_in):
    make_item(team=world.returns)
    session.commit()
    page = text(signed_in("sam@example.com").get("/supervisor"))
    forms = re.findall(r'<form method="post".*?</form>', page, re.S)
    assert len(forms) >= 2 and all('name="csrf_token"' in f for f in forms)


# --- CSV ----------------------------------------------------------------------------------------

def test_unassigned_csv_in_board_order_with_bom_and_iso_dates(session, world, make_item, signed_in):
    now = utcnow()
    later = make_item(team=world.returns, subject="=cmd|' /C calc'!A0", now=now)
    sooner = make_item(team=world.returns, subject="Größe falsch", now=now - timedelta(hours=2))
    make_item(team=world.returns, assignee=world.tom)
    make_item(team=world.docs, type="document_verification")
    session.commit()
    sam = signed_in("sam@example.com")
    assert 'href="/supervisor/unassigned.csv"' in text(sam.get("/supervisor"))
    response = sam.get("/supervisor/unassigned.csv")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert "attachment" in response.headers["Content-Disposition"]
    raw = response.get_data()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert rows[0][:3] == ["Reference", "Subject", "Team"]
    assert [r[0] for r in rows[1:]] == [sooner.ref, later.ref]
    assert rows[1][1] == "Größe falsch" and rows[2][1].startswith("'=")
    created = rows[1][rows[0].index("Created (UTC)")]
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", created)
    assert rows[1][rows[0].index("Next due (UTC)")] == sooner.sla_next_due.strftime("%Y-%m-%d %H:%M:%S")
    one_team = sam.get("/supervisor/unassigned.csv", query_string={"team": world.returns.id})
    assert len(list(csv.reader(io.StringIO(one_team.get_data().decode("utf-8-sig"))))) == 3


# --- navigation ---------------------------------------------------------------------------------

def test_every_supervisor_page_links_the_others(world, signed_in):
    sam = signed_in("sam@example.com")
    for url in ("/supervisor", "/supervisor/approvals", "/supervisor/reports", "/supervisor/people",
                f"/supervisor/people/{world.priya.id}/absence", f"/supervisor/people/{world.priya.id}/items"):
        page = text(sam.get(url))
        nav = re.search(r'<nav class="subnav supervisor-nav" aria-label="Supervisor">(.*?)</nav>', page, re.S)
        assert nav, url
        links = re.findall(r'href="([^"]+)"', nav.group(1))
        assert links == ["/supervisor", "/supervisor/approvals", "/supervisor/reports", "/supervisor/people",
                         "/admin/canned"], url
        assert 'aria-current="page"' in nav.group(1), url
    priya = signed_in("priya@example.com")
    nav = re.search(r'aria-label="Supervisor">(.*?)</nav>', text(priya.get("/supervisor/absence", follow_redirects=True)),
                    re.S)
    assert re.findall(r'href="([^"]+)"', nav.group(1)) == ["/supervisor/absence"]


# --- the board over several teams: one row per team ----------------------------------------------

def summary_rows(html):
    """{team name: {column class: number}} from the board's per-team summary table."""
    table = re.search(r'<table[^>]*id="team-summary".*?</table>', html, re.S)
    assert table, "no per-team summary on the page"
    rows = {}
    for row in re.findall(r'<tr data-team-id="\d+".*?</tr>', table.group(0), re.S):
        name = re.search(r'<th scope="row"><a href="[^"]+">([^<]+)</a>', row).group(1)
        rows[name] = {k: int(v) for k, v in re.findall(r'class="num ([\w-]+)-count">(\d+)<', row)}
        rows[name]["policy"] = re.search(r"</th>\s*<td>([^<]+)</td>", row).group(1)
    return rows


@pytest.fixture
def loads(session, world, make_user, make_item):
    """Mia (capacity 5) works in both teams; Priya is out of office. Returns: two unassigned items (one
    breached), one of Tom's at risk, one closed. Documents: one unassigned breached, two of Mia's (one at risk)."""
    now = utcnow()
    mia = make_user(email="mia@example.com", name="Mia Both", teams=[world.returns, world.docs], capacity=5)
    users.set_absence(session, world.priya, actor=world.sam, start=now - timedelta(hours=1), until=None, now=now)
    make_item(team=world.returns)
    make_item(team=world.returns).sla_state = "breached"
    make_item(team=world.returns, assignee=world.tom).sla_state = "at_risk"
    make_item(team=world.returns, assignee=world.tom).status = "closed"
    make_item(team=world.docs, type="document_verification").sla_state = "breached"
    make_item(team=world.docs, type="document_verification", assignee=mia).sla_state = "at_risk"
    make_item(team=world.docs, type="document_verification", assignee=mia)
    world.returns.auto_assign = "least_loaded"
    session.commit()
    return mia


def test_admin_board_shows_one_row_per_team_with_its_figures(session, world, loads, signed_in):
    page = text(signed_in("ada@example.com").get("/supervisor"))
    assert summary_rows(page) == {
        # people: active members; free: executives not out of office (Mia's 2 open count in both teams)
        "Documents": {"people": 3, "open": 3, "at-risk": 1, "breached": 1, "unassigned": 1, "free": 23, "away": 0,
                      "policy": "Manual"},
        "Returns": {"people": 4, "open": 3, "at-risk": 1, "breached": 1, "unassigned": 2, "free": 22, "away": 1,
                    "policy": "Least loaded"},
    }
    assert 'id="load"' not in page and "data-user=" not in page  # no row per person
    assert len(refs_in(page, "unassigned")) == 3
    # the bulk form offers each team's executives, grouped; a row offers the members of the item's team
    bulk = re.search(r'<select id="bulk-assignee".*?</select>', page, re.S).group(0)
    groups = dict(re.findall(r'<optgroup label="([^"]+)">(.*?)</optgroup>', bulk, re.S))
    assert set(groups) == {"Documents", "Returns"}
    assert re.findall(r">([^<>—]+?) —", groups["Returns"]) == ["Mia Both", "Priya Nair", "Tom Becker"]
    assert "Mia Both — 2 open of 5" in groups["Documents"] and "Lena Vogel" in groups["Documents"]
    assert "Priya Nair — 0 open of 20, out of office" in groups["Returns"]
    doc_row = re.search(r'<tr data-ref="BO-\d+">(?:(?!</tr>).)*?<td>Documents</td>.*?</tr>', page, re.S).group(0)
    assert "Lena Vogel (0 open)" in doc_row and "Mia Both (2 open)" in doc_row and "Tom Becker" not in doc_row


def test_a_team_link_on_the_summary_shows_that_teams_people(session, world, loads, signed_in):
    admin = signed_in("ada@example.com")
    page = text(admin.get("/supervisor"))
    link = re.search(r'<th scope="row"><a href="([^"]+)">Documents</a>', page).group(1)
    assert link == f"/supervisor?team={world.docs.id}"
    team_page = text(admin.get(link.replace("&amp;", "&")))
    assert 'id="team-summary"' not in team_page
    shown = re.findall(r'<tr data-user="([^"]+)"', team_page)
    assert shown == ["dora@example.com", "lena@example.com", "mia@example.com"]
    assert re.search(r'data-user="mia@example.com".*?class="num open-count">2<.*?class="num free-count">3<',
                     team_page, re.S)
    assert len(refs_in(team_page, "unassigned")) == 1


def test_supervisor_of_one_team_still_sees_each_person_and_of_two_teams_the_summary(
        session, world, loads, make_user, signed_in):
    page = text(signed_in("sam@example.com").get("/supervisor"))
    assert 'id="team-summary"' not in page
    assert re.findall(r'<tr data-user="([^"]+)"', page) == [
        "mia@example.com", "priya@example.com", "sam@example.com", "tom@example.com"]
    bulk = re.search(r'<select id="bulk-assignee".*?</select>', page, re.S).group(0)
    assert "<optgroup" not in bulk and "Tom Becker — 1 open of 20" in bulk
    make_user(email="both@example.com", name="Bo Both", role="supervisor", teams=[world.returns, world.docs])
    session.commit()
    both = signed_in("both@example.com")
    assert set(summary_rows(text(both.get("/supervisor")))) == {"Documents", "Returns"}
    assert 'id="team-summary"' not in text(both.get("/supervisor", query_string={"team": world.returns.id}))
