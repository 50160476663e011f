"""The reports pages and CSV exports through the test client."""
import csv
import io
import re
from datetime import timedelta

import pytest

from queue_app.models import WorkItem
from queue_app.models.base import utcnow
from tests.conftest import Auth


def text(response):
    return response.get_data(as_text=True)


@pytest.fixture
def world(session, make_team, make_user):
    """Three Returns items (first response and resolution: 1 met, 1 missed, 1 pending each) and one
    Documents item the Returns supervisor must not see."""
    now = utcnow()
    returns = make_team(name="Returns", work_types=["return"])
    docs = make_team(name="Documents", work_types=["document_verification"])
    sup = make_user(email="sam@example.com", name="Sam", role="supervisor", teams=[returns])
    make_user(email="ada@example.com", name="Ada", role="admin")
    priya = make_user(email="priya@example.com", name="Priya", teams=[returns])
    lena = make_user(email="lena@example.com", name="Lena", teams=[docs])

    def item(ref, team, who, created, *, subject=None, responded=None, resolved=None, status="open"):
        row = WorkItem(ref=ref, type="return", status=status, subject=subject or ref, team_id=team.id,
                       assignee_id=who.id if who else None, created_at=created, updated_at=created,
                       last_activity_at=created, first_response_due=created + timedelta(hours=4),
                       resolution_due=created + timedelta(days=2), first_responded_at=responded,
                       resolved_at=resolved)
        session.add(row)

    item("BO-000101", returns, priya, now - timedelta(days=2), responded=now - timedelta(days=2, hours=-1),
         resolved=now - timedelta(days=1), status="resolved")
    item("BO-000102", returns, priya, now - timedelta(days=3))
    item("BO-000103", returns, None, now - timedelta(hours=1), subject='=HYPERLINK("http://evil.example")')
    item("BO-000104", docs, lena, now - timedelta(days=3))
    session.commit()
    return type("World", (), dict(returns=returns, docs=docs, sup=sup, priya=priya))


def signed_in(app, email):
    client = app.test_client()
    Auth(client).login(email)
    return client


def cell(html, table, group, css):
    row = re.search(rf'<table[^>]*id="{table}".*?data-group="{re.escape(group)}"(.*?)</tr>', html, re.S)
    assert row, (table, group)
    return re.search(rf'class="num {css}">([^<]*)<', row.group(1)).group(1)


def read_csv(response):
    body = response.get_data()
    assert body.startswith(b"\xef\xbb\xbf"), "Excel needs the UTF-8 byte-order mark"
    return list(csv.reader(io.StringIO(body.decode("utf-8-sig"), newline="")))


def test_only_supervisors_and_admins(app, client, world):
    response = client.get("/supervisor/reports")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    executive = signed_in(app, "priya@example.com")
    assert executive.get("/supervisor/reports").status_code == 403
    assert executive.get("/supervisor/reports/compliance.csv").status_code == 403


def test_supervisor_sees_figures_of_their_team_with_charts(app, world):
    sup = signed_in(app, "sam@example.com")
    html = text(sup.get("/supervisor/reports"))  # SLA compliance first
    assert cell(html, "compliance-table", "All", "fr-pct") == "50.0"
    assert cell(html, "compliance-table", "All", "res-pct") == "50.0"
    assert 'data-group="Documents"' not in html
    assert html.count('<svg class="chart"') == 1 and 'role="img"' in html
    options = re.search(r'<select[^>]*id="team".*?</select>', html, re.S).group(0)
    assert "Returns" in options and "Documents" not in options
    breaches = text(sup.get("/supervisor/reports", query_string={"report": "breaches"}))
    table = re.search(r'id="breaches-table".*?</table>', breaches, re.S).group(0)
    assert re.findall(r'<tr data-ref="(BO-\d+)">', table) == ["BO-000102"]  # first response missed
    backlog = text(sup.get("/supervisor/reports", query_string={"report": "backlog"}))
    assert re.search(r'data-group="All">.*?class="num total">2<', backlog, re.S)  # 102 and 103 are open
    daily = text(sup.get("/supervisor/reports", query_string={"report": "daily"}))
    assert re.search(r'class="num created">3<', daily) and re.search(r'class="num resolved">1<', daily)
    handling = text(sup.get("/supervisor/reports", query_string={"report": "handling", "by": "executive"}))
    assert cell(handling, "handling-table", "Priya", "avg") == "24.0"


def test_every_tab_keeps_the_filters(app, world):
    sup = signed_in(app, "sam@example.com")
    html = text(sup.get("/supervisor/reports", query_string={"report": "backlog", "type": "return", "by": "type"}))
    tabs = re.search(r'<nav class="subnav" aria-label="Reports">.*?</nav>', html, re.S).group(0)
    assert tabs.count("type=return") == 5 and 'aria-current="page">Backlog by age' in tabs
    csv_link = re.search(r'href="([^"]*)" download id="report-csv"', html).group(1)
    assert csv_link.startswith("/supervisor/reports/backlog.csv?") and "type=return" in csv_link


def test_admin_sees_every_team(app, world):
    admin = signed_in(app, "ada@example.com")
    html = text(admin.get("/supervisor/reports", query_string={"by": "team"}))
    assert cell(html, "compliance-table", "Documents", "fr-pct") == "0.0"
    assert "BO-000104" in text(admin.get("/supervisor/reports", query_string={"report": "breaches"}))


@pytest.mark.parametrize("args, message", [
    ({"start": "2026-02-30"}, "Not a date"),
    ({"start": "2026-05-01", "end": "2026-04-01"}, "Must not be after the end"),
    ({"team": "999999"}, "Not a valid choice"),
    ({"by": "'; drop table"}, "Not a valid choice"),
    ({"executive": "abc"}, "Not a valid choice"),
    ({"report": "everything"}, "Not a valid choice"),
])
def test_bad_filters_show_errors_next_to_the_fields(app, world, args, message):
    sup = signed_in(app, "sam@example.com")
    response = sup.get("/supervisor/reports", query_string=args)
    assert response.status_code == 422
    assert message in text(response) and 'class="error"' in text(response)
    assert sup.get("/supervisor/reports/compliance.csv", query_string=args).status_code == 422


def test_other_teams_cannot_be_reported_on(app, world):
    sup = signed_in(app, "sam@example.com")
    assert sup.get("/supervisor/reports", query_string={"team": world.docs.id}).status_code == 422
    assert sup.get("/supervisor/reports/nonsense.csv").status_code == 404


def test_compliance_csv_opens_in_excel(app, world):
    sup = signed_in(app, "sam@example.com")
    response = sup.get("/supervisor/reports/compliance.csv", query_string={"by": "executive"})
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert re.fullmatch(r'attachment; filename="compliance_\d{4}-\d\d-\d\d_\d{4}-\d\d-\d\d\.csv"',
                        response.headers["Content-Disposition"])
    assert b"\r\n" in response.get_data()
    rows = read_csv(response)
    assert rows[0][:2] == ["Executive", "Items"]
    by_name = {r[0]: r for r in rows[1:]}
    assert by_name["Priya"][1:6] == ["2", "1", "1", "0", "50.00"]
    assert by_name["All"][1] == "3"


def test_every_report_exports(app, world):
    sup = signed_in(app, "sam@example.com")
    for name in ("compliance", "backlog", "daily", "handling", "breaches"):
        response = sup.get(f"/supervisor/reports/{name}.csv")
        assert response.status_code == 200, name
        rows = read_csv(response)
        assert len(rows) >= 2, name
    daily = read_csv(sup.get("/supervisor/reports/daily.csv"))
    assert len(daily) == 31 and re.fullmatch(r"\d{4}-\d\d-\d\d", daily[1][0])
    assert sum(int(r[1]) for r in daily[1:]) == 3
    breaches = read_csv(sup.get("/supervisor/reports/breaches.csv"))
    assert [r[0] for r in breaches[1:]] == ["BO-000102"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", breaches[1][6])


def test_item_list_csv_with_formula_guard(app, world):
    sup = signed_in(app, "sam@example.com")
    rows = read_csv(sup.get("/supervisor/items.csv", query_string={"status": "open", "assignee": "none"}))
    assert rows[0][0] == "Reference" and [r[0] for r in rows[1:]] == ["BO-000103"]
    assert rows[1][1] == "'=HYPERLINK(\"http://evil.example\")"
    everything = read_csv(sup.get("/supervisor/items.csv", query_string={"status": "all"}))
    assert [r[0] for r in everything[1:]] == ["BO-000101", "BO-000102", "BO-000103"]
    executive = signed_in(app, "priya@example.com")
    mine = read_csv(executive.get("/supervisor/items.csv", query_string={"assignee": "me"}))
    assert [r[0] for r in mine[1:]] == ["BO-000102"]
    for bad in ({"status": "bogus"}, {"team": "x"}, {"from": "tomorrow"}):
        assert sup.get("/supervisor/items.csv", query_string=bad).status_code == 422, bad
