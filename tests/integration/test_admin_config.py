"""Admin forms for people, teams, SLA policies and calendars, routing rules; and the absence and
availability pages. Real forms, real CSRF tokens: errors come back next to the fields, never a 500."""
import itertools
import json
import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from queue_app.models import (
    Calendar,
    OutboxJob,
    RoutingRule,
    SlaPolicy,
    Team,
    User,
    WorkItem,
)
from queue_app.models.base import utcnow
from queue_app.services.items import lifecycle, state
from queue_app.services.people import account_links
from tests.conftest import Auth, csrf_token_from

RECALCULATE = "workers.sla_timers.recalculate_open_items"


def text(response):
    return response.get_data(as_text=True)


def token(client, url="/"):
    return csrf_token_from(text(client.get(url)))


def field_error(html, field_id):
    """The error shown next to one input (None when there is none)."""
    match = re.search(rf'<p class="error" id="{field_id}-error">(.*?)</p>', html, re.S)
    return match.group(1) if match else None


def post(client, url, data, page=None):
    return client.post(url, data={"csrf_token": token(client, page or url), **data})


def recalculations(session):
    return session.scalar(sa.select(sa.func.count()).where(OutboxJob.job_path == RECALCULATE))


@pytest.fixture
def world(session, make_team, make_user):
    returns = make_team(name="Returns", work_types=["return"])
    docs = make_team(name="Documents", work_types=["document_verification"])
    admin = make_user(email="ada@example.com", name="Ada Admin", role="admin")
    sup = make_user(email="sam@example.com", name="Sam Supervisor", role="supervisor", teams=[returns])
    priya = make_user(email="priya@example.com", name="Priya Nair", teams=[returns])
    lena = make_user(email="lena@example.com", name="Lena Vogel", teams=[docs])
    session.commit()
    return type("World", (), dict(returns=returns, docs=docs, admin=admin, sup=sup, priya=priya, lena=lena))


@pytest.fixture
def admin(client, auth, world):
    auth.login("ada@example.com")
    return client


def signed_in(app, email, *password):
    client = app.test_client()
    Auth(client).login(email, *password)
    return client


# --- access -------------------------------------------------------------------------------------------------

ADMIN_PAGES = ["/admin/users", "/admin/users/new", "/admin/users/{priya}", "/admin/teams", "/admin/teams/{returns}",
               "/admin/sla", "/admin/sla/calendars/new", "/admin/sla/policies/new", "/admin/routing",
               "/admin/routing/new"]


def test_only_admins_get_in(app, client, world):
    ids = {"priya": world.priya.id, "returns": world.returns.id}
    for url in ADMIN_PAGES:
        response = client.get(url.format(**ids))
        assert response.status_code == 302 and response.headers["Location"].startswith("/login"), url
    for email in ("sam@example.com", "priya@example.com"):
        other = signed_in(app, email)
        csrf = token(other)
        for url in ADMIN_PAGES:
            url = url.format(**ids)
            assert other.get(url).status_code == 403, (email, url)
            assert other.post(url, data={"csrf_token": csrf, "name": "x", "role": "admin"}).status_code in (403, 405)
    assert world.priya.role == "executive"


def test_admin_pages_render(admin, world):
    ids = {"priya": world.priya.id, "returns": world.returns.id}
    for url in ADMIN_PAGES:
        assert admin.get(url.format(**ids)).status_code == 200, url
    nav = text(admin.get("/admin/users"))
    for link in ("/admin/quarantine", "/admin/mailboxes", "/admin/users", "/admin/teams", "/admin/sla",
                 "/admin/routing"):
        assert f'href="{link}"' in nav


def test_a_post_without_csrf_token_changes_nothing(admin, session, world):
    response = admin.post(f"/admin/users/{world.priya.id}", data={"name": "Hacked", "role": "admin"})
    assert response.status_code == 400
    session.expire_all()
    assert session.get(User, world.priya.id).role == "executive"


# --- people --------------------------------------------------------------------------------------------------

def user_data(**kw):
    data = {"email": "nina@example.com", "name": "Nina Park", "role": "executive", "timezone": "Europe/Berlin",
            "capacity": "7", "password": "a-good-password", "skills": ["return", "general"], "active": "y"}
    data.update(kw)
    return data


def test_create_a_person_with_teams_skills_and_capacity(app, admin, session, world):
    response = post(admin, "/admin/users/new", user_data(teams=[str(world.returns.id), str(world.docs.id)]))
    assert response.status_code == 302
    nina = session.scalar(sa.select(User).where(User.email == "nina@example.com"))
    assert (nina.name, nina.role, nina.timezone, nina.capacity) == ("Nina Park", "executive", "Europe/Berlin", 7)
    assert sorted(nina.skills) == ["general", "return"] and {t.name for t in nina.teams} == {"Returns", "Documents"}
    assert 'data-user="nina@example.com"' in text(admin.get("/admin/users"))
    # No password is typed for her (one posted is ignored): she chooses hers from the invitation mailed.
    assert not nina.check_password("a-good-password") and account_links.invitation_pending(session, nina)


@pytest.mark.parametrize("changes, field, message", [
    ({"email": ""}, "email", "Is required"),
    ({"email": "not-an-email"}, "email", None),
    ({"email": "priya@example.com"}, "email", "Already taken"),
    ({"capacity": "-1"}, "capacity", "Number must be between 0 and 1000."),
    ({"capacity": "lots"}, "capacity", "Not a valid integer value."),
    ({"role": "superuser"}, "role", "Not a valid choice."),
    ({"timezone": "Mars/Olympus"}, "timezone", "Not a valid choice."),
    ({"skills": ["telepathy"]}, "skills", None),
    ({"teams": ["999999"]}, "teams", None),
    ({"teams": ["abc"]}, "teams", None),
    ({"name": ""}, "name", "Enter a name."),
])
def test_bad_person_input_is_shown_next_to_the_field(admin, session, world, changes, field, message):
    response = post(admin, "/admin/users/new", user_data(**changes))
    assert response.status_code == 422
    error = field_error(text(response), field)
    assert error, (field, text(response)[-3000:])
    if message:
        assert message in error
    assert session.scalar(sa.select(sa.func.count()).where(User.email == "nina@example.com")) == 0


def test_edit_a_person_and_reset_their_password(app, admin, session, world):
    priya_client = signed_in(app, "priya@example.com")
    assert priya_client.get("/").status_code == 200
    url = f"/admin/users/{world.priya.id}"
    page = text(admin.get(url))
    assert re.search(rf'value="{world.returns.id}"[^>]*checked|checked[^>]*value="{world.returns.id}"', page)
    response = post(admin, url, {"name": "Priya N.", "role": "supervisor", "timezone": "Asia/Kolkata",
                                 "capacity": "12", "skills": ["return"], "teams": [str(world.docs.id)],
                                 "active": "y", "password": "brand-new-password"})
    assert response.status_code == 302
    session.expire_all()
    priya = session.get(User, world.priya.id)
    assert (priya.name, priya.role, priya.timezone, priya.capacity, priya.skills) == (
        "Priya N.", "supervisor", "Asia/Kolkata", 12, ["return"])
    assert [t.name for t in priya.teams] == ["Documents"]
    assert priya_client.get("/").status_code == 302  # her session ended with the new password
    assert signed_in(app, "priya@example.com").get("/").status_code == 302  # the old password is gone
    assert signed_in(app, "priya@example.com", "brand-new-password").get("/").status_code == 200


def test_deactivating_someone_ends_their_sessions(app, admin, session, world):
    priya_client = signed_in(app, "priya@example.com")
    url = f"/admin/users/{world.priya.id}"
    response = post(admin, url, {"name": "Priya Nair", "role": "executive", "timezone": "UTC", "capacity": "20",
                                 "teams": [str(world.returns.id)]})  # active unticked
    assert response.status_code == 302
    assert priya_client.get("/").status_code == 302
    assert 'data-user="priya@example.com"' in text(admin.get("/admin/users"))


def test_an_admin_cannot_lock_themselves_out(admin, session, world):
    url = f"/admin/users/{world.admin.id}"
    response = post(admin, url, {"name": "Ada", "role": "executive", "timezone": "UTC", "capacity": "20"})
    assert response.status_code == 422
    assert "own admin role" in field_error(text(response), "role")
    assert "deactivate yourself" in field_error(text(response), "active")
    session.expire_all()
    assert session.get(User, world.admin.id).role == "admin"


def test_an_admin_resetting_their_own_password_stays_signed_in(admin, session, world):
    url = f"/admin/users/{world.admin.id}"
    response = post(admin, url, {"name": "Ada Admin", "role": "admin", "timezone": "UTC", "capacity": "20",
                                 "active": "y", "password": "another-password"})
    assert response.status_code == 302
    assert admin.get("/admin/users").status_code == 200


def test_unknown_person_is_not_found(admin):
    assert admin.get("/admin/users/999999").status_code == 404


# --- teams ---------------------------------------------------------------------------------------------------

def test_create_and_edit_a_team(admin, session, world):
    calendar = Calendar(name="Berlin office", timezone="Europe/Berlin",
                        hours={d: ["09:00-17:00"] for d in ("mon", "tue", "wed", "thu", "fri")})
    session.add(calendar)
    session.commit()
    response = post(admin, "/admin/teams", {"name": "Escalations", "email": "esc@desk.example.com",
                                            "work_types": ["escalation", "general"], "auto_assign": "round_robin",
                                            "approval_threshold": "2500.5", "calendar": "0"})
    assert response.status_code == 302
    team = session.scalar(sa.select(Team).where(Team.name == "Escalations"))
    assert (team.email, team.work_types, team.auto_assign, str(team.approval_threshold), team.calendar_id) == (
        "esc@desk.example.com", ["escalation", "general"], "round_robin", "2500.50", None)
    assert recalculations(session) == 0
    url = f"/admin/teams/{team.id}"
    assert 'value="2500.50"' in text(admin.get(url))
    response = post(admin, url, {"name": "Escalations", "work_types": ["escalation"], "auto_assign": "sla_aware",
                                 "approval_threshold": "", "calendar": str(calendar.id)})
    assert response.status_code == 302
    session.expire_all()
    team = session.get(Team, team.id)
    assert (team.auto_assign, team.approval_threshold, team.calendar_id, team.email) == (
        "sla_aware", None, calendar.id, None)
    assert recalculations(session) == 1  # another calendar: the team's due times move


@pytest.mark.parametrize("changes, field", [
    ({"name": "Documents"}, "name"), ({"name": ""}, "name"), ({"approval_threshold": "lots"}, "approval_threshold"),
    ({"approval_threshold": "-5"}, "approval_threshold"), ({"approval_threshold": "NaN"}, "approval_threshold"),
    ({"approval_threshold": "1e400"}, "approval_threshold"), ({"auto_assign": "random"}, "auto_assign"),
    ({"calendar": "999"}, "calendar"), ({"calendar": "x"}, "calendar"), ({"email": "nope"}, "email"),
    ({"work_types": ["cooking"]}, "work_types"),
])
def test_bad_team_input_is_shown_next_to_the_field(admin, session, world, changes, field):
    data = {"name": "Returns", "work_types": ["return"], "auto_assign": "manual", "calendar": "0",
            "approval_threshold": ""}
    data.update(changes)
    response = post(admin, f"/admin/teams/{world.returns.id}", data)
    assert response.status_code == 422
    assert field_error(text(response), field), field
    session.expire_all()
    assert session.get(Team, world.returns.id).auto_assign == "manual"


# --- SLA calendars and policies ----------------------------------------------------------------------------

def calendar_data(**kw):
    data = {"name": "Pune office", "timezone": "Asia/Kolkata", "hours_mon": "09:30-13:00, 14:00-18:00",
            "hours_tue": "09:30-18:00", "hours_wed": "09:30-18:00", "hours_thu": "09:30-18:00",
            "hours_fri": "09:30-18:00", "hours_sat": "", "hours_sun": "", "holiday_country": "in",
            "holiday_subdivision": "MH", "closed_dates": "2026-12-24\n2026-12-31"}
    data.update(kw)
    return data


def test_create_and_edit_a_calendar_queues_recalculation(admin, session, world):
    response = post(admin, "/admin/sla/calendars/new", calendar_data())
    assert response.status_code == 302
    cal = session.scalar(sa.select(Calendar))
    assert (cal.name, cal.timezone, cal.holiday_country, cal.holiday_subdivision) == (
        "Pune office", "Asia/Kolkata", "IN", "MH")
    assert cal.hours["mon"] == ["09:30-13:00", "14:00-18:00"] and cal.hours["sat"] == []
    assert cal.closed_dates == ["2026-12-24", "2026-12-31"]
    assert recalculations(session) == 1
    url = f"/admin/sla/calendars/{cal.id}"
    page = text(admin.get(url))
    assert 'value="09:30-13:00, 14:00-18:00"' in page and "2026-12-31" in page
    assert post(admin, url, calendar_data()).status_code == 302
    assert recalculations(session) == 1  # nothing changed: nothing to recalculate
    assert post(admin, url, calendar_data(name="Pune", hours_sat="10:00-14:00")).status_code == 302
    session.expire_all()
    cal = session.get(Calendar, cal.id)
    assert (cal.name, cal.hours["sat"]) == ("Pune", ["10:00-14:00"])
    assert recalculations(session) == 2


@pytest.mark.parametrize("changes, field, message", [
    ({"hours_mon": "9-5"}, "hours_mon", None),
    ({"hours_tue": "09:00-12:00, 11:00-13:00"}, "hours_tue", "overlap"),
    ({"hours_wed": "25:00-26:00"}, "hours_wed", None),
    ({name: "" for name in ("hours_mon", "hours_tue", "hours_wed", "hours_thu", "hours_fri")}, "hours_mon",
     "no working hours"),
    ({"timezone": "Mars/Olympus"}, "timezone", "Not a valid choice"),
    ({"holiday_country": "XX"}, "holiday_country", "no holiday data"),
    ({"holiday_country": "IN", "holiday_subdivision": "ZZ"}, "holiday_subdivision", None),
    ({"holiday_country": "", "holiday_subdivision": "MH"}, "holiday_country", "required"),
    ({"closed_dates": "2026-02-30"}, "closed_dates", "not a YYYY-MM-DD date"),
    ({"name": ""}, "name", None),
])
def test_calendar_validation_is_the_sla_load_validation(admin, session, world, changes, field, message):
    response = post(admin, "/admin/sla/calendars/new", calendar_data(**changes))
    assert response.status_code == 422
    error = field_error(text(response), field)
    assert error, (field, text(response)[-2000:])
    if message:
        assert message.lower() in error.lower()
    assert session.scalar(sa.select(sa.func.count()).select_from(Calendar)) == 0
    assert recalculations(session) == 0


def policy_data(**kw):
    data = {"name": "Returns urgent", "match_type": "return", "match_priority": "urgent", "match_team": "Returns",
            "calendar": "", "first_response_minutes": "30", "resolution_minutes": "240", "warn_at_percent": "80",
            "pause_statuses": ["pending_customer"],
            "escalation": json.dumps([{"after_breach_minutes": 0, "notify": ["supervisors"]}])}
    data.update(kw)
    return data


def test_create_edit_rename_and_switch_off_a_policy(admin, session, world):
    assert post(admin, "/admin/sla/policies/new", policy_data()).status_code == 302
    policy = session.scalar(sa.select(SlaPolicy))
    assert (policy.match_type, policy.match_priority, policy.match_team_id, policy.first_response_minutes,
            policy.resolution_minutes, policy.warn_at_percent, policy.pause_statuses, policy.escalation) == (
        "return", "urgent", world.returns.id, 30, 240, 80, ["pending_customer"],
        [{"after_breach_minutes": 0, "notify": ["supervisors"]}])
    assert recalculations(session) == 1
    url = f"/admin/sla/policies/{policy.id}"
    page = text(admin.get(url))
    assert "after_breach_minutes" in page and '<option selected value="Returns">' in page
    assert post(admin, url, policy_data(name="Returns very urgent", escalation="")).status_code == 302
    session.expire_all()
    policy = session.get(SlaPolicy, policy.id)
    assert (policy.name, policy.escalation) == ("Returns very urgent", [])
    assert recalculations(session) == 2

    response = post(admin, f"/admin/sla/policies/{policy.id}/active", {"active": "0"}, page="/admin/sla")
    assert response.status_code == 302
    session.expire_all()
    assert session.get(SlaPolicy, policy.id).active is False
    assert recalculations(session) == 3
    assert post(admin, url, policy_data(name="Returns very urgent", escalation="")).status_code == 302
    session.expire_all()
    assert session.get(SlaPolicy, policy.id).active is True  # saving switches it on again


@pytest.mark.parametrize("changes, field, message", [
    ({"first_response_minutes": "0"}, "first_response_minutes", "positive whole number"),
    ({"resolution_minutes": "soon"}, "resolution_minutes", "Not a valid integer"),
    ({"warn_at_percent": "100"}, "warn_at_percent", "from 1 to 99"),
    ({"escalation": "[{broken"}, "escalation", "not valid JSON"),
    ({"escalation": '["not an object"]'}, "escalation", "expected an object"),
    ({"escalation": '{"a": 1}'}, "escalation", "expected a list"),
    ({"match_team": "Nobody"}, "match_team", "Not a valid choice"),
    ({"calendar": "Nowhere"}, "calendar", "Not a valid choice"),
    ({"pause_statuses": ["sleeping"]}, "pause_statuses", None),
    ({"name": "x" * 121}, "name", None),
])
def test_bad_policy_input_is_shown_next_to_the_field(admin, session, world, changes, field, message):
    response = post(admin, "/admin/sla/policies/new", policy_data(**changes))
    assert response.status_code == 422
    error = field_error(text(response), field)
    assert error, (field, text(response)[-2000:])
    if message:
        assert message.lower() in error.lower()
    assert session.scalar(sa.select(sa.func.count()).select_from(SlaPolicy)) == 0


def test_renaming_onto_an_existing_name_is_refused(admin, session, world):
    assert post(admin, "/admin/sla/policies/new", policy_data(name="One")).status_code == 302
    assert post(admin, "/admin/sla/policies/new", policy_data(name="Two")).status_code == 302
    two = session.scalar(sa.select(SlaPolicy).where(SlaPolicy.name == "Two"))
    response = post(admin, f"/admin/sla/policies/{two.id}", policy_data(name="One"))
    assert response.status_code == 422 and "this name" in field_error(text(response), "name")


def test_a_policy_saved_in_the_form_changes_new_items_due_times(admin, session, world, make_item):
    assert post(admin, "/admin/sla/policies/new", policy_data(match_priority="")).status_code == 302
    item = make_item(team=session.get(Team, world.returns.id))
    assert item.first_response_due - item.created_at == timedelta(minutes=30)


# --- routing rules ---------------------------------------------------------------------------------------------

def rule_data(**kw):
    data = {"name": "Refunds", "position": "10", "active": "y", "source": "email", "recipient": "",
            "sender": "@shop.example.com", "subject_contains": "", "keywords": "refund, money back",
            "match_type": "", "set_type": "return", "set_team": "0", "set_priority": "high"}
    data.update(kw)
    return data


def test_create_edit_and_delete_a_rule(admin, session, world):
    data = rule_data(set_team=str(world.returns.id), recipient="Returns@Desk.Example.com")
    assert post(admin, "/admin/routing/new", data).status_code == 302
    rule = session.scalar(sa.select(RoutingRule))
    assert (rule.position, rule.source, rule.recipient, rule.sender, rule.keywords, rule.set_type,
            rule.set_team_id, rule.set_priority, rule.active) == (
        10, "email", "returns@desk.example.com", "@shop.example.com", ["refund", "money back"], "return",
        world.returns.id, "high", True)
    assert 'data-rule="Refunds"' in text(admin.get("/admin/routing"))
    item = lifecycle.create_item(session, actor=None, source="email", subject="I want a refund",
                                  sender="a@shop.example.com", recipient="returns@desk.example.com",
                                  require_fields=False)
    assert (item.type, item.team.name, item.priority) == ("return", "Returns", "high")
    session.rollback()  # the item was only a probe; the pages below need the write lock

    url = f"/admin/routing/{rule.id}"
    assert "refund, money back</textarea>" in text(admin.get(url))
    assert post(admin, url, rule_data(active="", keywords="", set_team="0", set_priority="")).status_code == 302
    session.expire_all()
    rule = session.get(RoutingRule, rule.id)
    assert (rule.active, rule.keywords, rule.set_team_id, rule.set_priority) == (False, [], None, None)
    assert post(admin, f"{url}/delete", {}, page=url).status_code == 302
    assert session.scalar(sa.select(sa.func.count()).select_from(RoutingRule)) == 0


@pytest.mark.parametrize("changes, field", [
    ({"sender": "@@nope"}, "sender"), ({"sender": "not an address"}, "sender"), ({"recipient": "x@"}, "recipient"),
    ({"position": "-3"}, "position"), ({"position": "first"}, "position"), ({"set_type": "", "set_priority": ""},
                                                                             "set_type"),
    ({"set_team": "999999"}, "set_team"), ({"source": "pigeon"}, "source"), ({"match_type": "x"}, "match_type"),
    ({"keywords": ",".join(f"k{n}" for n in range(60))}, "keywords"), ({"name": ""}, "name"),
])
def test_bad_rule_input_is_shown_next_to_the_field(admin, session, world, changes, field):
    response = post(admin, "/admin/routing/new", rule_data(**changes))
    assert response.status_code == 422
    assert field_error(text(response), field), (field, text(response)[-2000:])
    assert session.scalar(sa.select(sa.func.count()).select_from(RoutingRule)) == 0


def test_garbage_in_every_admin_form_never_gives_a_500(admin, world):
    garbage = ["", " ", "\x00", "' OR 1=1 --", "<script>alert(1)</script>", "9" * 40, "-1", "1.5", "日本語",
               "\ud800".encode("utf-8", "surrogatepass").decode("utf-8", "replace")]
    forms = {"/admin/users/new": user_data(), f"/admin/users/{world.priya.id}": user_data(),
             "/admin/teams": {"name": "T", "auto_assign": "manual", "calendar": "0"},
             "/admin/sla/calendars/new": calendar_data(), "/admin/sla/policies/new": policy_data(),
             "/admin/routing/new": rule_data()}
    for (url, data), junk in itertools.product(forms.items(), garbage):
        csrf = token(admin, url)
        for key in data:
            response = admin.post(url, data={**data, key: junk, "csrf_token": csrf})
            assert response.status_code in (302, 422), (url, key, junk, response.status_code)


# --- absence and availability ----------------------------------------------------------------------------------

def test_an_executive_sets_their_own_absence_and_returns_their_items(app, session, world, make_item):
    item = make_item(team=session.get(Team, world.returns.id))
    state.assign(session, item, session.get(User, world.priya.id), actor=None, check_access=False)
    session.commit()
    priya = signed_in(app, "priya@example.com")
    assert priya.get("/supervisor/absence").headers["Location"] == f"/supervisor/people/{world.priya.id}/absence"
    url = f"/supervisor/people/{world.priya.id}/absence"
    now = utcnow()
    response = post(priya, url, {"start": (now - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M"),
                                 "until": (now + timedelta(days=3)).strftime("%Y-%m-%dT%H:%M"), "items": "queue"})
    assert response.status_code == 302
    session.expire_all()
    me = session.get(User, world.priya.id)
    assert me.is_out_of_office(utcnow()) and session.get(WorkItem, item.id).assignee_id is None
    page = text(priya.get(url))
    assert "Out of office" in page and "0 open items" in page
    assert post(priya, f"{url}/clear", {}, page=url).status_code == 302
    session.expire_all()
    assert not session.get(User, world.priya.id).is_out_of_office(utcnow())


def test_the_absence_page_has_each_id_once_so_labels_tick_their_own_form(app, session, world, make_item):
    item = make_item(team=session.get(Team, world.returns.id))
    state.assign(session, item, session.get(User, world.priya.id), actor=None, check_access=False)
    session.commit()
    page = text(signed_in(app, "priya@example.com").get(f"/supervisor/people/{world.priya.id}/absence"))
    assert "Move the open items now" in page  # both forms are there
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert len(ids) == len(set(ids)), sorted(i for i in set(ids) if ids.count(i) > 1)
    for target in re.findall(r'<label for="([^"]+)"', page):
        assert ids.count(target) == 1, target


def test_absence_times_are_in_the_viewers_zone(app, session, world):
    session.get(User, world.priya.id).timezone = "Asia/Tokyo"
    session.commit()
    priya = signed_in(app, "priya@example.com")
    url = f"/supervisor/people/{world.priya.id}/absence"
    assert post(priya, url, {"start": "2030-01-10T09:00", "until": "", "items": "keep"}).status_code == 302
    session.expire_all()
    assert session.get(User, world.priya.id).out_of_office_from.isoformat() == "2030-01-10T00:00:00+00:00"


@pytest.mark.parametrize("data, field", [
    ({"start": "", "items": "keep"}, "start"), ({"start": "yesterday", "items": "keep"}, "start"),
    ({"start": "2030-01-10T09:00", "until": "2030-01-09T09:00", "items": "keep"}, "until"),
    ({"start": "2030-01-10T09:00", "items": "everything"}, "items"),
])
def test_bad_absence_input(app, session, world, data, field):
    priya = signed_in(app, "priya@example.com")
    response = post(priya, f"/supervisor/people/{world.priya.id}/absence", data)
    assert response.status_code == 422
    assert field in text(response) and 'class="error"' in text(response)


def test_who_may_set_whose_absence(app, world):
    lena = signed_in(app, "lena@example.com")
    assert lena.get(f"/supervisor/people/{world.priya.id}/absence").status_code == 404  # a colleague elsewhere
    sam = signed_in(app, "sam@example.com")
    assert sam.get(f"/supervisor/people/{world.priya.id}/absence").status_code == 200  # her supervisor
    assert sam.get(f"/supervisor/people/{world.lena.id}/absence").status_code == 404  # not his team
    assert sam.get("/supervisor/people").status_code == 200
    assert lena.get("/supervisor/people").status_code == 403


def test_supervisor_redistributes_an_absent_executives_items_by_policy(app, session, world, make_user, make_item):
    returns = session.get(Team, world.returns.id)
    tom = make_user(email="tom@example.com", name="Tom", teams=[returns])
    items = [make_item(team=returns) for _ in range(2)]
    for item in items:
        state.assign(session, item, session.get(User, world.priya.id), actor=None, check_access=False)
    returns.auto_assign = "least_loaded"
    session.commit()
    sam = signed_in(app, "sam@example.com")
    url = f"/supervisor/people/{world.priya.id}/redistribute"
    response = sam.post(url, data={"csrf_token": token(sam, f"/supervisor/people/{world.priya.id}/absence"),
                                   "items": "policy"}, follow_redirects=True)
    assert "2 given to colleagues" in text(response)
    session.expire_all()
    assert {session.get(WorkItem, i.id).assignee_id for i in items} == {tom.id}


def test_distribute_now(app, session, world, make_item):
    returns = session.get(Team, world.returns.id)
    items = [make_item(team=returns) for _ in range(3)]
    session.commit()
    sam = signed_in(app, "sam@example.com")
    page = text(sam.get("/supervisor/people"))
    assert f'id="distribute-{returns.id}"' not in page  # manual team: nothing to distribute
    response = sam.post(f"/supervisor/teams/{returns.id}/distribute", data={"csrf_token": csrf_token_from(page)},
                        follow_redirects=True)
    assert "assigns by hand" in text(response)
    returns.auto_assign = "round_robin"
    session.commit()
    page = text(sam.get("/supervisor/people"))
    response = sam.post(f"/supervisor/teams/{returns.id}/distribute", data={"csrf_token": csrf_token_from(page)},
                        follow_redirects=True)
    assert "3 items of Returns assigned." in text(response)
    session.expire_all()
    assert {session.get(WorkItem, i.id).assignee_id for i in items} == {world.priya.id}
    lena = signed_in(app, "lena@example.com")
    assert lena.post(f"/supervisor/teams/{returns.id}/distribute",
                     data={"csrf_token": token(lena)}).status_code == 404
