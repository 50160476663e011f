"""`flask sla load|export` through Flask's CLI runner."""
import json

import sqlalchemy as sa
import yaml

from queue_app.models import Calendar, SlaPolicy

CONFIG = """\
calendars:
  - name: Pune office
    timezone: Asia/Kolkata
    hours:
      mon: ["09:30-13:00", "14:00-18:00"]
      tue: ["09:30-13:00", "14:00-18:00"]
      wed: ["09:30-13:00", "14:00-18:00"]
      thu: ["09:30-13:00", "14:00-18:00"]
      fri: ["09:30-13:00", "14:00-18:00"]
      sat: []
      sun: []
    holidays: {country: IN, subdivision: MH}
    closed_dates: [2026-12-24]
policies:
  - name: Returns normal
    match: {type: return, priority: normal, team: Returns}
    calendar: Pune office
    first_response_minutes: 90
    resolution_minutes: 480
    pause_statuses: [pending_customer, pending_third_party]
"""


def invoke(runner, *args):
    return runner.invoke(args=list(args))


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_load_creates_then_reports_no_changes(runner, session, make_team, tmp_path):
    make_team(name="Returns")
    session.commit()
    path = write(tmp_path, "sla.yaml", CONFIG)

    first = invoke(runner, "sla", "load", path)
    assert first.exit_code == 0, first.output
    assert "calendars: 1 created, 0 updated; policies: 1 created, 0 updated; 0 unchanged" in first.output
    session.expire_all()
    assert session.scalar(sa.select(Calendar.closed_dates)) == ["2026-12-24"]
    assert session.scalar(sa.select(SlaPolicy.calendar_id)) is not None

    second = invoke(runner, "sla", "load", path)
    assert second.exit_code == 0, second.output
    assert "calendars: 0 created, 0 updated; policies: 0 created, 0 updated; 2 unchanged" in second.output


def test_load_json(runner, session, tmp_path):
    data = {"policies": [{"name": "Default", "first_response_minutes": 60, "resolution_minutes": 600}]}
    result = invoke(runner, "sla", "load", write(tmp_path, "sla.json", json.dumps(data)))
    assert result.exit_code == 0, result.output
    assert session.scalar(sa.select(SlaPolicy.resolution_minutes)) == 600


def test_an_invalid_file_names_the_key_and_loads_nothing(runner, session, tmp_path):
    # No team "Returns" exists, and a Monday interval is malformed.
    path = write(tmp_path, "sla.yml", CONFIG.replace('"14:00-18:00"]\n      tue', '"14:00-1800"]\n      tue'))

    result = invoke(runner, "sla", "load", path)

    assert result.exit_code != 0
    assert "calendars[0].hours.mon[1]:" in result.output
    assert "policies[0].match.team: no team named 'Returns'" in result.output
    assert session.scalar(sa.select(sa.func.count()).select_from(Calendar)) == 0


def test_a_yaml_syntax_error_gives_the_line(runner, tmp_path):
    result = invoke(runner, "sla", "load", write(tmp_path, "sla.yaml", "calendars:\n  - name: [unclosed\n"))
    assert result.exit_code != 0
    assert "not valid YAML at line" in result.output


def test_a_json_syntax_error_gives_the_line(runner, tmp_path):
    result = invoke(runner, "sla", "load", write(tmp_path, "sla.json", '{\n  "policies": [,]\n}'))
    assert result.exit_code != 0
    assert "not valid JSON at line 2" in result.output


def test_an_unknown_extension_is_refused(runner, tmp_path):
    result = invoke(runner, "sla", "load", write(tmp_path, "sla.txt", CONFIG))
    assert result.exit_code != 0
    assert "use a .yml, .yaml or .json file" in result.output


def test_export_prints_yaml_that_loads_back(runner, session, make_team, tmp_path):
    make_team(name="Returns")
    session.commit()
    assert invoke(runner, "sla", "load", write(tmp_path, "sla.yaml", CONFIG)).exit_code == 0

    exported = invoke(runner, "sla", "export")
    assert exported.exit_code == 0, exported.output
    data = yaml.safe_load(exported.output)
    assert data["calendars"][0]["holidays"] == {"country": "IN", "subdivision": "MH"}
    assert data["policies"][0]["match"]["team"] == "Returns"

    again = invoke(runner, "sla", "load", write(tmp_path, "exported.yaml", exported.output))
    assert again.exit_code == 0, again.output
    assert "0 created, 0 updated; policies: 0 created, 0 updated; 2 unchanged" in again.output


def test_export_json(runner, session, tmp_path):
    invoke(runner, "sla", "load", write(tmp_path, "sla.json", json.dumps(
        {"policies": [{"name": "Default", "first_response_minutes": 60, "resolution_minutes": 600}]})))
    result = invoke(runner, "sla", "export", "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["policies"][0]["name"] == "Default"
