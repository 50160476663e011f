"""SLA configuration as code: validation paths, idempotent upserts, export round trip."""
import copy

import pytest
import sqlalchemy as sa

from queue_app.models import Calendar, SlaPolicy
from queue_app.services.errors import Invalid
from queue_app.services.sla.config import export_config, load_config
from tests.factories import make_policy

WEEKDAY_HOURS = ["09:30-13:00", "14:00-18:00"]


def config():
    return {
        "calendars": [{
            "name": "Pune office",
            "timezone": "Asia/Kolkata",
            "hours": {"mon": list(WEEKDAY_HOURS), "tue": list(WEEKDAY_HOURS), "wed": list(WEEKDAY_HOURS),
                      "thu": list(WEEKDAY_HOURS), "fri": list(WEEKDAY_HOURS), "sat": [], "sun": []},
            "holidays": {"country": "in", "subdivision": "MH"},
            "closed_dates": ["2026-12-24"],
        }],
        "policies": [
            {"name": "Returns normal", "match": {"type": "return", "priority": "normal", "team": "Returns"},
             "calendar": "Pune office", "first_response_minutes": 90, "resolution_minutes": 480,
             "warn_at_percent": 80, "pause_statuses": ["pending_customer"],
             "escalation": [{"after_breach_minutes": 0, "notify": ["supervisors"]}]},
            {"name": "Default", "first_response_minutes": 240, "resolution_minutes": 2880},
        ],
    }


def count(session, model):
    return session.scalar(sa.select(sa.func.count()).select_from(model))


@pytest.fixture
def returns(make_team):
    return make_team(name="Returns")


def test_load_creates_calendars_and_policies(session, returns):
    summary = load_config(session, config())

    assert summary == {"calendars_created": 1, "calendars_updated": 0, "policies_created": 2,
                       "policies_updated": 0, "unchanged": 0}
    cal = session.scalar(sa.select(Calendar))
    assert (cal.timezone, cal.holiday_country, cal.holiday_subdivision, cal.closed_dates) == \
        ("Asia/Kolkata", "IN", "MH", ["2026-12-24"])
    assert cal.hours["mon"] == WEEKDAY_HOURS and cal.hours["sun"] == []
    pol = session.scalar(sa.select(SlaPolicy).where(SlaPolicy.name == "Returns normal"))
    assert (pol.match_type, pol.match_priority, pol.match_team_id, pol.calendar_id) == \
        ("return", "normal", returns.id, cal.id)
    assert (pol.first_response_minutes, pol.resolution_minutes, pol.warn_at_percent) == (90, 480, 80)
    assert pol.pause_statuses == ["pending_customer"]
    assert pol.escalation == [{"after_breach_minutes": 0, "notify": ["supervisors"]}]
    default = session.scalar(sa.select(SlaPolicy).where(SlaPolicy.name == "Default"))
    assert (default.match_type, default.match_team_id, default.calendar_id, default.warn_at_percent,
            default.pause_statuses, default.escalation) == \
        (None, None, None, 75, ["pending_customer", "pending_third_party"], [])


def test_loading_the_same_data_twice_changes_nothing(session, returns):
    load_config(session, config())
    session.commit()

    summary = load_config(session, config())

    assert summary == {"calendars_created": 0, "calendars_updated": 0, "policies_created": 0,
                       "policies_updated": 0, "unchanged": 3}
    assert not session.dirty and not session.new


def test_a_change_updates_the_record_by_name(session, returns):
    load_config(session, config())
    session.commit()
    data = config()
    data["calendars"][0]["timezone"] = "Europe/Berlin"
    del data["calendars"][0]["holidays"]
    data["policies"][1]["resolution_minutes"] = 1440

    summary = load_config(session, data)

    assert summary == {"calendars_created": 0, "calendars_updated": 1, "policies_created": 0,
                       "policies_updated": 1, "unchanged": 1}
    cal = session.scalar(sa.select(Calendar))
    assert (cal.timezone, cal.holiday_country) == ("Europe/Berlin", None)
    assert session.scalar(sa.select(SlaPolicy.resolution_minutes).where(SlaPolicy.name == "Default")) == 1440
    assert count(session, Calendar) == 1 and count(session, SlaPolicy) == 2


def test_a_policy_may_use_a_calendar_already_in_the_database(session, returns):
    load_config(session, config())
    session.commit()

    load_config(session, {"policies": [{"name": "Urgent", "match": {"priority": "urgent"}, "calendar": "Pune office",
                                        "first_response_minutes": 15, "resolution_minutes": 60}]})

    urgent = session.scalar(sa.select(SlaPolicy).where(SlaPolicy.name == "Urgent"))
    assert urgent.calendar.name == "Pune office"


def test_loading_reactivates_an_inactive_policy(session):
    make_policy(session, name="Default", first_response_minutes=240, resolution_minutes=2880, active=False)
    summary = load_config(session, {"policies": [config()["policies"][1]]})
    assert summary["policies_updated"] == 1
    assert session.scalar(sa.select(SlaPolicy.active)) is True


def _break(mutate):
    data = config()
    mutate(data)
    return data


@pytest.mark.parametrize("mutate, path", [
    (lambda d: d["calendars"][0]["hours"]["mon"].__setitem__(1, "14:00-1800"), "calendars[0].hours.mon[1]"),
    (lambda d: d["calendars"][0]["hours"].__setitem__("tue", ["09:00-13:00", "12:00-17:00"]), "calendars[0].hours.tue"),
    (lambda d: d["calendars"][0]["hours"].__setitem__("mun", []), "calendars[0].hours.mun"),
    (lambda d: d["calendars"][0].__setitem__("hours", {"mon": []}), "calendars[0].hours"),
    (lambda d: d["calendars"][0].__setitem__("timezone", "Asia/Pune"), "calendars[0].timezone"),
    (lambda d: d["calendars"][0].__setitem__("timezone", "Asia"), "calendars[0].timezone"),
    (lambda d: d["calendars"][0]["holidays"].__setitem__("country", "XX"), "calendars[0].holidays.country"),
    (lambda d: d["calendars"][0]["holidays"].__setitem__("subdivision", "ZZ"), "calendars[0].holidays.subdivision"),
    (lambda d: d["calendars"][0]["closed_dates"].append("2026-13-01"), "calendars[0].closed_dates[1]"),
    (lambda d: d["calendars"][0].pop("timezone"), "calendars[0].timezone"),
    (lambda d: d["calendars"][0].__setitem__("colour", "red"), "calendars[0].colour"),
    (lambda d: d["calendars"].append(copy.deepcopy(d["calendars"][0])), "calendars[1].name"),
    (lambda d: d["policies"][0]["match"].__setitem__("team", "Nobody"), "policies[0].match.team"),
    (lambda d: d["policies"][0]["match"].__setitem__("type", "refund"), "policies[0].match.type"),
    (lambda d: d["policies"][0]["match"].__setitem__("priority", "meh"), "policies[0].match.priority"),
    (lambda d: d["policies"][0]["match"].__setitem__("queue", "x"), "policies[0].match.queue"),
    (lambda d: d["policies"][0].__setitem__("calendar", "Mars"), "policies[0].calendar"),
    (lambda d: d["policies"][0].__setitem__("first_response_minutes", 0), "policies[0].first_response_minutes"),
    (lambda d: d["policies"][0].__setitem__("resolution_minutes", "480"), "policies[0].resolution_minutes"),
    (lambda d: d["policies"][0].__setitem__("resolution_minutes", 10 ** 9), "policies[0].resolution_minutes"),
    (lambda d: d["policies"][1].pop("resolution_minutes"), "policies[1].resolution_minutes"),
    (lambda d: d["policies"][0].__setitem__("warn_at_percent", 100), "policies[0].warn_at_percent"),
    (lambda d: d["policies"][0].__setitem__("pause_statuses", ["waiting"]), "policies[0].pause_statuses[0]"),
    (lambda d: d["policies"][0].__setitem__("escalation", [{"notify": []}, "boss"]), "policies[0].escalation[1]"),
    (lambda d: d["policies"][0].__setitem__("escalation", {"notify": []}), "policies[0].escalation"),
    (lambda d: d["policies"].append("Default"), "policies[2]"),
    (lambda d: d.__setitem__("version", 2), "version"),
])
def test_invalid_data_names_the_path_and_writes_nothing(session, returns, mutate, path):
    with pytest.raises(Invalid) as exc:
        load_config(session, _break(mutate))

    assert path in exc.value.fields, exc.value.fields
    assert count(session, Calendar) == 0 and count(session, SlaPolicy) == 0


def test_every_error_is_reported_at_once(session, returns):
    data = config()
    data["calendars"][0]["timezone"] = "Nowhere/City"
    data["policies"][0]["warn_at_percent"] = 0
    with pytest.raises(Invalid) as exc:
        load_config(session, data)
    assert {"calendars[0].timezone", "policies[0].warn_at_percent"} <= set(exc.value.fields)


def test_an_invalid_load_leaves_existing_records_alone(session, returns):
    load_config(session, config())
    session.commit()
    data = config()
    data["policies"][1]["resolution_minutes"] = 10
    data["policies"][0]["warn_at_percent"] = 0
    with pytest.raises(Invalid):
        load_config(session, data)
    assert session.scalar(sa.select(SlaPolicy.resolution_minutes).where(SlaPolicy.name == "Default")) == 2880


def test_not_a_mapping_is_invalid(session):
    with pytest.raises(Invalid) as exc:
        load_config(session, ["calendars"])
    assert list(exc.value.fields) == ["(root)"]


def test_export_then_load_is_a_no_op(session, returns):
    load_config(session, config())
    session.add(Calendar(name="Legacy", timezone="UTC", hours={"mon": ["08:00-16:00"]}))  # days missing
    make_policy(session, name="Retired", active=False)
    session.commit()

    exported = export_config(session)

    assert [c["name"] for c in exported["calendars"]] == ["Legacy", "Pune office"]
    assert [p["name"] for p in exported["policies"]] == ["Default", "Returns normal"]
    assert exported["calendars"][1]["holidays"] == {"country": "IN", "subdivision": "MH"}
    assert exported["policies"][1]["match"] == {"type": "return", "priority": "normal", "team": "Returns"}
    summary = load_config(session, exported)
    assert summary == {"calendars_created": 0, "calendars_updated": 0, "policies_created": 0,
                       "policies_updated": 0, "unchanged": 4}
