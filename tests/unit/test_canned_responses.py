"""Canned responses: the fixed placeholders, refused unknown ones, and hostile text never evaluated."""
from datetime import datetime, timezone

import pytest

from queue_app.models import Calendar, CannedResponse
from queue_app.models.calendar import round_the_clock_hours
from queue_app.services.errors import Invalid, NotFound, PermissionDenied
from queue_app.services.items import canned_responses


@pytest.fixture
def setup(session, make_team, make_user, make_item):
    team = make_team(name="Returns", work_types=["return"])
    other = make_team(name="Documents", work_types=["document_verification"])
    priya = make_user(name="Priya Nair", teams=[team])
    item = make_item(team=team, assignee=priya, subject="Refund for order ORD-1001")
    item.requester_name = "Ann Kowalski"
    session.flush()
    return type("S", (), dict(team=team, other=other, priya=priya, item=item))


def test_every_placeholder_is_filled_in(setup):
    item = setup.item
    item.resolution_due = datetime(2026, 12, 2, 15, 0, tzinfo=timezone.utc)
    body = ("{reference} / {subject} / {requester_name} / {requester_email} / {executive_name} / {team} / "
            "{due_date}")
    assert canned_responses.render(body, item, setup.priya) == (
        f"{item.ref} / Refund for order ORD-1001 / Ann Kowalski / customer@example.com / Priya Nair / Returns / "
        "2 December 2026")
    assert set(canned_responses.PLACEHOLDERS) == {"reference", "subject", "requester_name", "requester_email",
                                                  "executive_name", "team", "due_date"}


def test_due_date_is_in_the_teams_calendar_zone(session, setup):
    calendar = Calendar(name="Tokyo", timezone="Asia/Tokyo", hours=round_the_clock_hours())
    session.add(calendar)
    setup.team.calendar = calendar
    setup.item.resolution_due = datetime(2026, 12, 2, 20, 0, tzinfo=timezone.utc)  # 3 December in Tokyo
    session.flush()
    assert canned_responses.render("by {due_date}", setup.item, setup.priya) == "by 3 December 2026"


def test_missing_values_read_sensibly(setup):
    setup.item.requester_name = None
    setup.item.resolution_due = None
    assert canned_responses.render("Dear {requester_name}, by {due_date}.", setup.item, setup.priya) == \
        "Dear customer, by ."


def test_unknown_placeholders_are_refused_when_saving(session, setup, make_user):
    admin = make_user(role="admin")
    with pytest.raises(Invalid) as refused:
        canned_responses.save(session, actor=admin, title="Typo", body="Dear {requester_nmae},", team_id=None)
    assert "{requester_nmae}" in refused.value.fields["body"]
    assert session.query(CannedResponse).count() == 0


@pytest.mark.parametrize("hostile", [
    "{requester_name.__class__}", "{requester_name.__class__.__mro__}", "{{7*7}}", "{{ config }}",
    "{0}", "{}", "{requester_name!r}", "{requester_name[0]}", "{% for x in y %}",
])
def test_hostile_text_is_refused_or_rendered_literally_never_evaluated(session, setup, make_user, hostile):
    admin = make_user(role="admin")
    body = f"Hello {{requester_name}} {hostile}"
    if "{%" not in hostile:
        with pytest.raises(Invalid):
            canned_responses.save(session, actor=admin, title="Bad", body=body, team_id=None)
    # Stored by other means (old data, a direct insert), it still renders literally.
    rendered = canned_responses.render(body, setup.item, setup.priya)
    assert rendered == f"Hello Ann Kowalski {hostile}"
    assert "49" not in rendered and "<class" not in rendered


def test_substituted_values_are_not_substituted_again(setup):
    setup.item.requester_name = "{executive_name} {{7*7}}"
    assert canned_responses.render("Dear {requester_name}", setup.item, setup.priya) == \
        "Dear {executive_name} {{7*7}}"


def test_lists_the_items_team_and_global_active_responses(session, setup, make_user):
    admin = make_user(role="admin")
    mine = canned_responses.save(session, actor=admin, title="B returns", body="x", team_id=setup.team.id)
    everyone = canned_responses.save(session, actor=admin, title="A everyone", body="y", team_id=None)
    canned_responses.save(session, actor=admin, title="Docs only", body="z", team_id=setup.other.id)
    canned_responses.save(session, actor=admin, title="Switched off", body="w", team_id=None, active=False)
    assert canned_responses.list_for_item(session, setup.item) == [everyone, mine]
    with pytest.raises(NotFound):
        canned_responses.get_for_item(session, setup.item, 10**6)


def test_who_may_keep_responses_for_which_team(session, setup, make_user):
    supervisor = make_user(role="supervisor", teams=[setup.team])
    with pytest.raises(PermissionDenied):
        canned_responses.save(session, actor=supervisor, title="Global", body="x", team_id=None)
    with pytest.raises(PermissionDenied):
        canned_responses.save(session, actor=supervisor, title="Theirs", body="x", team_id=setup.other.id)
    with pytest.raises(PermissionDenied):
        canned_responses.save(session, actor=setup.priya, title="Mine", body="x", team_id=setup.team.id)
    own = canned_responses.save(session, actor=supervisor, title="Ours", body="x", team_id=setup.team.id)
    assert canned_responses.list_manageable(session, supervisor) == [own]
    assert canned_responses.list_manageable(session, setup.priya) == []


def test_title_and_body_are_required_and_bounded(session, make_user):
    admin = make_user(role="admin")
    with pytest.raises(Invalid) as refused:
        canned_responses.save(session, actor=admin, title=" ", body="", team_id=None)
    assert set(refused.value.fields) == {"title", "body"}
    with pytest.raises(Invalid):
        canned_responses.save(session, actor=admin, title="x" * 121, body="ok", team_id=None)
