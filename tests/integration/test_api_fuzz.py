"""The API fuzz pass: schemathesis reads the app's own /api/v1/openapi.json and sends every operation
valid and invalid requests with a real token. No answer may be a 5xx, and every answer must be one the
document describes: its status code, content type and body schema.

The supervisor whose token is used works in two teams and sees a few seeded items, so a path's `ref`
often names an item that exists (one awaiting approval among them) and the requests reach the services.
The run is seeded and bounded, so CI sees the same cases every time.
"""
from decimal import Decimal

import pytest
import schemathesis
from hypothesis import strategies as st
from schemathesis.config import SchemathesisConfig

from queue_app.services.items import lifecycle
from queue_app.services.people.users import issue_api_token

MAX_EXAMPLES = 25
SEED = 20260417


def fuzz_config(token):
    return SchemathesisConfig.from_dict({
        "seed": SEED,
        "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "database": "none"},
        "auth": {"openapi": {"bearerAuth": {"bearer": token}}},
    })


@pytest.fixture
def seeded(session, make_team, make_user, make_item):
    """A supervisor of two teams with a token, and items of theirs in a few states; one item they cannot see."""
    returns = make_team(name="Returns", work_types=["return"], approval_threshold=Decimal("100.00"))
    payments = make_team(name="Payments", work_types=["discrepancy_fix"])
    hidden = make_team(name="Hidden", work_types=["general"])
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
    ]
    waiting = items[1]
    lifecycle.change_status(session, waiting, "open", actor=executive)
    lifecycle.change_status(session, waiting, "resolved", actor=executive)
    assert waiting.status == "awaiting_approval"
    unseen = make_item(team=hidden, type="general")
    token = issue_api_token(session, sup)
    session.commit()
    return {"token": token, "refs": [item.ref for item in items] + [unseen.ref]}


@pytest.fixture
def api_schema(app, seeded):
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app, config=fuzz_config(seeded["token"]))

    @schema.hook
    def flatmap_path_parameters(context, path_parameters):
        """A well-formed `ref` is mostly swapped for a seeded item's, so the request gets past the lookup."""
        ref = path_parameters.get("ref")
        if not isinstance(ref, str) or not ref[:3].upper() == "BO-" or not ref[3:].isdigit():
            return st.just(path_parameters)
        return st.sampled_from([*seeded["refs"], ref]).map(lambda choice: {**path_parameters, "ref": choice})

    return schema


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
def test_every_operation_answers_as_documented(case):
    case.call_and_validate()
