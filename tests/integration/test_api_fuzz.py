"""The API fuzz pass: schemathesis reads the app's own /api/v1/openapi.json and sends every operation
valid and invalid requests with a real token. No answer may be a 5xx, and every answer must be one the
document describes: its status code, content type and body schema.

The supervisor whose token is used works in two teams and sees a few seeded items, so a path's `ref`
often names an item that exists (one awaiting approval among them) and the requests reach the services.
The run is seeded and bounded, so CI sees the same cases every time.
"""
import re
import zlib
from decimal import Decimal

import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig

from queue_app.models import CheckResult
from queue_app.models.work_item import OPEN_STATUSES, STATUSES
from queue_app.services.checks import runner
from queue_app.services.items import checklists, lifecycle
from queue_app.services.people.users import issue_api_token
from queue_app.web.security import has_control_characters
from tests.check_files import attach, pdf

MAX_EXAMPLES = 25
SEED = 20260417
TEAMS = ["Returns", "Payments", "Hidden"]  # the caller supervises the first two
PEOPLE = ["exec@example.com", "sup@example.com", "other@example.com"]  # the last is in Hidden only


# A schema-valid request can still be refused for what the database holds at the time: a name that
# matches no team or user (or someone outside the item's team), a status the item is in already or
# cannot reach, an item that is closed or awaiting approval, an approval that is not pending, a field
# of another work type, a cursor this API did not hand out (it is opaque), a file whose content (sniffed
# from the bytes) or size the item's team does not accept. No document can say that in advance, so
# these 422s, and only these, do not count against positive_data_acceptance. Each is (error.fields
# key, pattern of its problem).
CLOSED_OR_WAITING = [status for status in STATUSES if status not in OPEN_STATUSES] + ["awaiting_approval"]
STATE_REFUSALS = [
    ("team", r"no such team"),
    ("assignee", r"no such user|not a member of the item's team|nobody to hand it back"),
    ("to", r"no such user|not a member of the item's team|already the assignee|out of office|over capacity"),
    ("approval", r"none pending"),
    ("status", r"unchanged|not allowed from \w+|needs approval|checklist incomplete|checks failed|"
               + "|".join(CLOSED_OR_WAITING)),
    ("type", r"not a document verification"),
    ("reason", r"choose a reason|not in the team's list"),
    ("checks", r"none failed"),
    (r"fields\.\w+", r"is not a field of an? \w+ item"),
    ("cursor", r"is not a cursor returned by this API"),
    # A tag's characters (letters of any alphabet) have no regular expression JSON Schema and Python
    # read alike, its length is counted after normalising, and the 20-tag limit counts the item's tags.
    ("add|remove|tag", r"only letters, digits, - and _|at most 40 characters a tag|a tag cannot be empty"),
    ("add", r"at most 20 tags an item"),
    ("file", r"the content is \S+; the team accepts .+|the file is empty|executable programs are not accepted|"
             r"the file is .+, over the team's limit of .+"),
]


# JSON Schema's `email` format is the address syntax; the API also refuses addresses at special-use
# or reserved domains (example.test, x.invalid), which no mail reaches. The document cannot list those.
RESERVED_DOMAIN = "special-use or reserved name"


def refused_for_state(failure, response):
    if failure.code != "ST202" or response.status_code != 422:
        return False
    error = response.json()["error"]
    if RESERVED_DOMAIN in error["message"]:
        return True
    problems = error["fields"]
    return bool(problems) and all(
        any(re.fullmatch(key, field) and re.fullmatch(problem, text) for key, problem in STATE_REFUSALS)
        for field, text in problems.items())


def fuzz_config(token):
    return SchemathesisConfig.from_dict({
        "seed": SEED,
        "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "database": "none"},
        "auth": {"openapi": {"bearerAuth": {"bearer": token}}},
    })


@pytest.fixture
def seeded(session, make_team, make_user, make_item):
    """A supervisor of two teams with a token, and items of theirs in a few states; one item they cannot see."""
    returns = make_team(name="Returns", work_types=["return", "document_verification"],
                        approval_threshold=Decimal("100.00"))
    returns.executives_may_pass = True  # the caller passes the items assigned to them
    payments = make_team(name="Payments", work_types=["discrepancy_fix"])
    hidden = make_team(name="Hidden", work_types=["escalation"])
    sup = make_user(email="sup@example.com", role="supervisor", teams=[returns, payments])
    executive = make_user(email="exec@example.com", teams=[returns])
    make_user(email="other@example.com", role="supervisor", teams=[hidden])
    items = [
        make_item(team=returns, actor=sup, assignee=executive),
        make_item(team=returns, actor=sup, assignee=executive,
                  fields={"order_number": "ORD-2", "purchase_date": "2026-01-10", "amount": "250.00",
                          "currency": "EUR", "reason": "Damaged"}),
        make_item(team=payments, type="discrepancy_fix", actor=sup),
        make_item(team=returns, type="general", actor=sup),
        make_item(team=returns, type="document_verification", actor=sup, assignee=executive),
        make_item(team=returns, type="general", actor=sup, assignee=sup),
        make_item(team=returns, type="general", actor=sup, assignee=sup),
    ]
    scan = attach(session, items[4], "passport.pdf", pdf())
    session.add(CheckResult(work_item_id=items[4].id, name="document_expiry", status="failed", message="expired"))
    session.flush()
    runner.refresh_needs_attention(session, items[4])
    steps = [checklists.save_step(session, actor=make_user(role="admin"), team_id=returns.id, work_type="return",
                                  text=text, mandatory=mandatory)
             for text, mandatory in (("Check the order", True), ("Note the reason", False))]
    waiting = items[1]
    lifecycle.change_status(session, waiting, "open", actor=executive)
    checklists.tick(session, waiting, steps[0].id, actor=executive)
    lifecycle.change_status(session, waiting, "resolved", actor=executive)
    assert waiting.status == "awaiting_approval"
    unseen = make_item(team=hidden, type="escalation")
    token = issue_api_token(session, sup)
    session.commit()
    return {"token": token, "refs": [item.ref for item in items] + [unseen.ref], "steps": [s.id for s in steps],
            "documents": [scan.id]}


EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def well_formed(key, value):
    """A value the document allows for `key`: only those are swapped, so an invalid one stays invalid."""
    if key in ("step_id", "attachment_id"):
        return isinstance(value, int) and not isinstance(value, bool) and value >= 1
    if not isinstance(value, str) or has_control_characters(value) or not value.strip():
        return False
    if key == "ref":
        return re.fullmatch(r"[Bb][Oo]-[0-9]{6,}", value) is not None
    if key in ("assignee", "to"):
        return EMAIL.fullmatch(value) is not None
    return True


def swap_for_seeded(values, known):
    """Most well-formed refs, team names and emails become ones that exist, so the request gets past the
    lookups to the services. The pick follows from the whole generated request part, so a run is
    repeatable; one in len(choices) + 1 keeps the generated value."""
    if not isinstance(values, dict):
        return
    digest = zlib.crc32(repr(sorted(values.items(), key=str)).encode("utf-8", "surrogatepass"))
    for key, choices in known.items():
        if well_formed(key, values.get(key)):
            values[key] = [*choices, values[key]][digest % (len(choices) + 1)]


@pytest.fixture
def api_schema(app, seeded):
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app, config=fuzz_config(seeded["token"]))

    @schema.hook
    def filter_failure(context, failure, case, response):
        return not refused_for_state(failure, response)

    return schema


schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.fixture
def answered(seeded):
    """Status codes per operation. Every operation must succeed at least once, or the pass only
    proved that the token, the seeding or the swaps are broken (401, 403 and 404 all pass the checks)."""
    statuses = {}
    yield statuses
    never = sorted(label for label, codes in statuses.items() if not any(200 <= code < 300 for code in codes))
    assert not never, f"no request succeeded for {never}"


@schema.parametrize()
def test_every_operation_answers_as_documented(case, seeded, answered):
    known = {"ref": seeded["refs"], "team": TEAMS, "assignee": PEOPLE, "to": PEOPLE, "step_id": seeded["steps"],
             "attachment_id": seeded["documents"]}
    for values in (case.path_parameters, case.query, case.body):
        swap_for_seeded(values, known)
    response = case.call()
    answered.setdefault(case.operation.label, set()).add(response.status_code)
    case.validate_response(response)
