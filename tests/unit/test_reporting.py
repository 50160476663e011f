"""Report figures against a fixture computed by hand (see the table in `world`)."""
from datetime import date, datetime, timezone

import pytest

from queue_app.models import WorkItem
from queue_app.services.errors import Invalid, NotFound, PermissionDenied
from queue_app.services.reporting import reports

NOW = datetime(2026, 3, 15, 12, 0, tzinfo=timezone.utc)


def at(text):
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


@pytest.fixture
def world(session, make_team, make_user):
    """Nine items. The period under test is 2026-03-01..2026-03-14 (ends 03-15 00:00); now is 03-15 12:00.

    n  team  type      who   created      first resp.  fr due       done             res due     state
    1  R     return    ann   03-01 09:00  03-01 10:00  03-01 13:00  resolved 03-02 09  03-03 09  fr met,    res met
    2  R     return    ann   03-02 09:00  03-02 15:00  03-02 13:00  resolved 03-05 09  03-04 09  fr missed, res missed
    3  R     general   bob   03-10 09:00  -            03-10 13:00  open              03-12 09  fr missed, res missed
    4  R     general   -     03-14 20:00  -            03-16 00:00  open              03-17 00  pending,   pending
    5  D     document  dan   03-05 09:00  -            03-05 13:00  closed 03-05 12   03-07 09  fr met,    res met
    6  D     document  dan   03-06 09:00  03-06 10:00  03-06 13:00  pending (paused)  03-08 09  fr met,    pending
    7  R     return    ann   02-20 09:00  02-20 10:00  02-20 13:00  resolved 03-03 09  02-22 09  (created before)
    8  R     general   -     02-01 09:00  -            02-01 13:00  open              02-03 09  (created before)
    9  R     return    bob   03-12 12:00  -            03-12 16:00  resolved 03-15 10  03-14 12  fr missed, res missed
    """
    returns = make_team(name="Returns", work_types=["return", "general"])
    docs = make_team(name="Documents", work_types=["document_verification"])
    ann = make_user(email="ann@example.com", name="Ann", teams=[returns])
    bob = make_user(email="bob@example.com", name="Bob", teams=[returns])
    dan = make_user(email="dan@example.com", name="Dan", teams=[docs])
    sup = make_user(email="sup@example.com", name="Sup", role="supervisor", teams=[returns])
    admin = make_user(email="admin@example.com", name="Admin", role="admin")

    def item(n, team, type, who, created, fr_due, res_due, *, responded=None, resolved=None, closed=None,
             status="open", state="on_track"):
        row = WorkItem(ref=f"BO-{n:06d}", type=type, status=status, subject=f"item {n}", team_id=team.id,
                       assignee_id=who.id if who else None, created_at=at(created), updated_at=at(created),
                       last_activity_at=at(created), first_response_due=at(fr_due), resolution_due=at(res_due),
                       first_responded_at=responded and at(responded), resolved_at=resolved and at(resolved),
                       closed_at=closed and at(closed), sla_state=state)
        session.add(row)
        return row

    items = [
        item(1, returns, "return", ann, "2026-03-01 09:00", "2026-03-01 13:00", "2026-03-03 09:00",
             responded="2026-03-01 10:00", resolved="2026-03-02 09:00", status="resolved", state="met"),
        item(2, returns, "return", ann, "2026-03-02 09:00", "2026-03-02 13:00", "2026-03-04 09:00",
             responded="2026-03-02 15:00", resolved="2026-03-05 09:00", status="resolved", state="breached"),
        item(3, returns, "general", bob, "2026-03-10 09:00", "2026-03-10 13:00", "2026-03-12 09:00",
             state="breached"),
        item(4, returns, "general", None, "2026-03-14 20:00", "2026-03-16 00:00", "2026-03-17 00:00", status="new"),
        item(5, docs, "document_verification", dan, "2026-03-05 09:00", "2026-03-05 13:00", "2026-03-07 09:00",
             closed="2026-03-05 12:00", status="closed", state="on_track"),
        item(6, docs, "document_verification", dan, "2026-03-06 09:00", "2026-03-06 13:00", "2026-03-08 09:00",
             responded="2026-03-06 10:00", status="pending_customer", state="paused"),
        item(7, returns, "return", ann, "2026-02-20 09:00", "2026-02-20 13:00", "2026-02-22 09:00",
             responded="2026-02-20 10:00", resolved="2026-03-03 09:00", status="resolved", state="breached"),
        item(8, returns, "general", None, "2026-02-01 09:00", "2026-02-01 13:00", "2026-02-03 09:00",
             state="breached"),
        item(9, returns, "return", bob, "2026-03-12 12:00", "2026-03-12 16:00", "2026-03-14 12:00",
             resolved="2026-03-15 10:00", status="resolved", state="breached"),
    ]
    session.commit()
    return type("World", (), dict(returns=returns, docs=docs, ann=ann, bob=bob, dan=dan, sup=sup, admin=admin,
                                  items=items))


def scope(session, user, **kw):
    kw.setdefault("start", "2026-03-01")
    kw.setdefault("end", "2026-03-14")
    return reports.make_scope(session, user, today=NOW.date(), **kw)


def figures(row, *names):
    return tuple(row[n] for n in names)


FR = ("fr_met", "fr_missed", "fr_pending", "fr_pct")
RES = ("res_met", "res_missed", "res_pending", "res_pct")


def test_compliance_overall(session, world):
    report = reports.sla_compliance(session, scope(session, world.admin), NOW)
    total = report["total"]
    assert total["items"] == 7  # items 1-6 and 9
    assert figures(total, *FR) == (3, 3, 1, 50.0)
    assert figures(total, *RES) == (2, 3, 2, 40.0)


def test_compliance_by_team_and_by_executive(session, world):
    by_team = {r["label"]: r for r in reports.sla_compliance(session, scope(session, world.admin), NOW,
                                                               by="team")["rows"]}
    assert list(by_team) == ["Documents", "Returns"]
    assert figures(by_team["Returns"], "items", *FR) == (5, 1, 3, 1, 25.0)
    assert figures(by_team["Returns"], *RES) == (1, 3, 1, 25.0)
    assert figures(by_team["Documents"], "items", *FR) == (2, 2, 0, 0, 100.0)
    assert figures(by_team["Documents"], *RES) == (1, 0, 1, 100.0)

    by_person = {r["label"]: r for r in reports.sla_compliance(session, scope(session, world.admin), NOW,
                                                                 by="executive")["rows"]}
    assert list(by_person) == ["Ann", "Bob", "Dan", "Unassigned"]
    assert figures(by_person["Ann"], "fr_pct", "res_pct") == (50.0, 50.0)
    assert figures(by_person["Bob"], "fr_pct", "res_pct") == (0.0, 0.0)
    assert figures(by_person["Dan"], "fr_pct", "res_pct") == (100.0, 100.0)
    assert figures(by_person["Unassigned"], "fr_pct", "res_pct", "fr_pending") == (None, None, 1)


def test_compliance_by_type_with_a_filter(session, world):
    rows = reports.sla_compliance(session, scope(session, world.admin, type="return"), NOW, by="type")["rows"]
    assert [(r["label"], r["items"], r["fr_pct"], r["res_pct"]) for r in rows] == [("Return", 3, 33.3, 33.3)]


def test_backlog_at_the_end_of_a_past_period(session, world):
    report = reports.backlog(session, scope(session, world.admin), NOW)
    assert report["as_of"] == at("2026-03-15 00:00")
    # 4 (4 h old), 9 (resolved only after the period: 2.5 days), 3 (4.6 days), 6 and 8 (over a week).
    assert figures(report["total"], "under_1d", "1_3d", "3_7d", "over_7d", "total") == (1, 1, 1, 2, 5)
    by_team = {r["label"]: r["total"] for r in reports.backlog(session, scope(session, world.admin), NOW,
                                                                 by="team")["rows"]}
    assert by_team == {"Documents": 1, "Returns": 4}


def test_backlog_now_counts_open_items(session, world):
    report = reports.backlog(session, scope(session, world.admin, end="2026-03-15"), NOW)
    assert report["as_of"] == NOW
    assert figures(report["total"], "under_1d", "1_3d", "3_7d", "over_7d", "total") == (1, 0, 1, 2, 4)


def test_created_and_resolved_per_day(session, world):
    days = reports.created_resolved(session, scope(session, world.admin))
    assert len(days) == 14 and days[0]["day"] == date(2026, 3, 1) and days[-1]["day"] == date(2026, 3, 14)
    created = {d["day"].day: d["created"] for d in days if d["created"]}
    resolved = {d["day"].day: d["resolved"] for d in days if d["resolved"]}
    assert created == {1: 1, 2: 1, 5: 1, 6: 1, 10: 1, 12: 1, 14: 1}
    assert resolved == {2: 1, 3: 1, 5: 1}  # items 1, 7 and 2; closing (item 5) is not resolving


def test_created_and_resolved_per_day_by_team_type_and_at_midnight(session, world):
    mine = scope(session, world.sup)  # Returns only: the range counts per team on PostgreSQL
    days = reports.created_resolved(session, mine)
    assert {d["day"].day: d["created"] for d in days if d["created"]} == {1: 1, 2: 1, 10: 1, 12: 1, 14: 1}
    assert {d["day"].day: d["resolved"] for d in days if d["resolved"]} == {2: 1, 3: 1, 5: 1}
    general = reports.created_resolved(session, scope(session, world.sup, type="general"))
    assert {d["day"].day: d["created"] for d in general if d["created"]} == {10: 1, 14: 1}
    assert not any(d["resolved"] for d in general)
    ann = reports.created_resolved(session, scope(session, world.admin, assignee_id=world.ann.id))
    assert {d["day"].day: d["resolved"] for d in ann if d["resolved"]} == {2: 1, 3: 1, 5: 1}

    # the last instant of a day and the first of the next, and the period's own edges
    for n, created in ((20, "2026-03-07 23:59:59.999999"), (21, "2026-03-08 00:00:00"),
                       (22, "2026-02-28 23:59:59"), (23, "2026-03-15 00:00:00")):
        session.add(WorkItem(ref=f"BO-{n:06d}", type="document_verification", status="resolved",
                             subject=f"edge {n}", team_id=world.docs.id, created_at=at(created),
                             updated_at=at(created), last_activity_at=at(created), resolved_at=at(created)))
    session.commit()
    for who in (world.admin, None):
        edges = reports.created_resolved(session, scope(session, world.admin, team_id=world.docs.id)
                                           if who is None else scope(session, who))
        by_day = {d["day"].day: (d["created"], d["resolved"]) for d in edges if d["created"] or d["resolved"]}
        assert by_day[7] == (1, 1) and by_day[8] == (1, 1) and 15 not in by_day and 28 not in by_day
        assert sum(d["resolved"] for d in edges) == (5 if who is not None else 2)  # + items 1, 7, 2


def test_average_handling_time(session, world):
    report = reports.handling_time(session, scope(session, world.admin), by="executive")
    assert figures(report["total"], "resolved", "avg_hours", "max_hours") == (3, 120.0, 264.0)  # 24, 72, 264 h
    assert [(r["label"], r["resolved"], r["avg_hours"]) for r in report["rows"]] == [("Ann", 3, 120.0)]


def test_breaches_list(session, world):
    rows = reports.breaches(session, scope(session, world.admin), NOW)
    assert [(r["ref"], r["first_response_missed"], r["resolution_missed"]) for r in rows] == [
        ("BO-000002", True, True), ("BO-000003", True, True), ("BO-000009", True, True)]
    assert rows[1]["team"] == "Returns" and rows[1]["assignee"] == "Bob" and rows[1]["first_response_at"] is None
    assert rows[0]["done_at"] == at("2026-03-05 09:00")
    paged = reports.breaches(session, scope(session, world.admin), NOW, after_id=rows[0]["id"], limit=1)
    assert [r["ref"] for r in paged] == ["BO-000003"]
    assert [r["ref"] for r in reports.iter_breaches(session, scope(session, world.admin), NOW)] == [
        "BO-000002", "BO-000003", "BO-000009"]


def test_supervisors_see_their_teams_only(session, world):
    mine = scope(session, world.sup)
    assert mine.team_ids == [world.returns.id]
    assert reports.sla_compliance(session, mine, NOW)["total"]["items"] == 5
    with pytest.raises(NotFound):
        scope(session, world.sup, team_id=world.docs.id)
    with pytest.raises(NotFound):
        scope(session, world.sup, assignee_id=world.dan.id)
    with pytest.raises(PermissionDenied):
        scope(session, world.ann)


@pytest.mark.parametrize("kw, field", [
    ({"start": "2026-13-01"}, "start"), ({"end": "yesterday"}, "end"), ({"start": "2026-03-20"}, "start"),
    ({"start": "2020-01-01"}, "start"), ({"type": "nonsense"}, "type"),
])
def test_bad_scopes_are_invalid(session, world, kw, field):
    with pytest.raises(Invalid) as err:
        scope(session, world.admin, **kw)
    assert field in err.value.fields


def test_item_rows_for_export(session, world):
    rows = list(reports.item_rows(session, world.sup, status="open"))
    assert [r["ref"] for r in rows] == ["BO-000003", "BO-000004", "BO-000008"]
    assert rows[0]["team"] == "Returns" and rows[0]["assignee"] == "Bob" and rows[1]["assignee"] is None
    assert [r["ref"] for r in reports.item_rows(session, world.sup, status="all", assignee="none")] == [
        "BO-000004", "BO-000008"]
    assert [r["ref"] for r in reports.item_rows(session, world.dan, status="all")] == ["BO-000005", "BO-000006"]
    with pytest.raises(Invalid):
        reports.item_rows(session, world.sup, status="bogus")
