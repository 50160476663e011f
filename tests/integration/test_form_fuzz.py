"""A small form fuzzer: every page an admin reaches that renders a form with a CSRF token gets each of
its fields posted with NUL, a 100 KB string, huge integers and unusual unicode, the other fields as
the page filled them in. Whatever is refused, it is refused with a 4xx or a form error, never a 5xx."""
from html.parser import HTMLParser
from urllib.parse import urljoin

import pytest
from flask import url_for

from queue_app.models import Calendar, CannedResponse, ChecklistStep, Mailbox, RoutingRule, SlaPolicy
from tests.conftest import Auth

NASTY = ["a\x00b", "x" * 100_000, str(2 ** 70), str(2 ** 31), "\u202eevil\u202c \U0001f4a9 \ufeff Zoë"]
SKIP = ("/logout", "/export", ".csv", "/raw")


class Forms(HTMLParser):
    """The POST forms of a page: action and the fields with the values the page gave them."""

    def __init__(self):
        super().__init__()
        self.forms = []
        self._form = None
        self._select = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form" and (a.get("method") or "get").lower() == "post":
            self._form = {"action": a.get("action") or "", "fields": {}}
            self.forms.append(self._form)
        elif self._form is None:
            return
        elif tag in ("input", "textarea") and a.get("name"):
            if a.get("type") in ("checkbox", "radio") and "checked" not in a:
                self._form["fields"].setdefault(a["name"], None)
            else:
                self._form["fields"][a["name"]] = a.get("value") or ""
        elif tag == "select" and a.get("name"):
            self._select = a["name"]
            self._form["fields"].setdefault(a["name"], "")
        elif tag == "option" and self._select:
            if not self._form["fields"][self._select] or "selected" in a:
                self._form["fields"][self._select] = a.get("value") or ""

    def handle_endtag(self, tag):
        if tag == "form":
            self._form = None
        elif tag == "select":
            self._select = None


@pytest.fixture
def config_rows(session, make_team, make_user, make_item):
    team = make_team(name="Returns", work_types=["return"])
    admin = make_user(email="admin@example.com", role="admin", teams=[team])
    item = make_item(team=team, assignee=admin)
    calendar = Calendar(name="Office hours", timezone="Europe/Berlin")
    session.add(calendar)
    session.flush()
    rows = {"user_id": admin.id, "team_id": team.id, "ref": item.ref, "calendar_id": calendar.id}
    for key, row in (("policy_id", SlaPolicy(name="Standard", calendar_id=calendar.id)),
                     ("mailbox_id", Mailbox(address="returns@example.com", team_id=team.id)),
                     ("rule_id", RoutingRule(name="Returns rule", set_team_id=team.id)),
                     ("response_id", CannedResponse(title="Thanks", body="Thank you.")),
                     ("step_id", ChecklistStep(team_id=team.id, work_type="return", text="Check the order"))):
        session.add(row)
        session.flush()
        rows[key] = row.id
    session.commit()
    return rows


def form_pages(app, rows):
    """Every GET route outside the API whose arguments we can fill in."""
    with app.test_request_context():
        for rule in app.url_map.iter_rules():
            if "GET" not in rule.methods or rule.endpoint in ("static",) or rule.rule.startswith("/api/"):
                continue
            if any(part in rule.rule for part in SKIP) or not set(rule.arguments) <= set(rows):
                continue
            yield url_for(rule.endpoint, **{k: rows[k] for k in rule.arguments})


def test_no_form_field_value_makes_a_5xx(app, client, config_rows):
    Auth(client).login("admin@example.com")
    posted = 0
    for url in sorted(set(form_pages(app, config_rows))):
        page = client.get(url)
        assert page.status_code < 500, url
        if page.status_code != 200 or "text/html" not in page.content_type:
            continue
        parser = Forms()
        parser.feed(page.get_data(as_text=True))
        for form in parser.forms:
            if "csrf_token" not in form["fields"] or any(part in form["action"] for part in SKIP):
                continue
            action = urljoin(url, form["action"]) or url
            for name in form["fields"]:
                if name == "csrf_token":
                    continue
                for value in NASTY:
                    data = {k: v for k, v in form["fields"].items() if v is not None}
                    data[name] = value
                    response = client.post(action, data=data)
                    assert response.status_code < 500, (url, action, name, value[:40])
                    posted += 1
    assert posted > 200  # the walk found the forms
