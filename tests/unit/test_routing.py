"""Routing rules: conditions and fallbacks."""
import pytest

from queue_app.models import RoutingRule
from queue_app.services.errors import Invalid
from queue_app.services.intake.routing import route


@pytest.fixture
def teams(make_team):
    return {
        "general": make_team(name="General", work_types=["general", "escalation"]),
        "returns": make_team(name="Returns", work_types=["return"]),
        "docs": make_team(name="Documents", work_types=["document_verification"]),
    }


def add_rule(session, **kw):
    rule = RoutingRule(name=kw.pop("name", "rule"), **kw)
    session.add(rule)
    session.flush()
    return rule


def test_fallback_is_first_team_handling_the_type(session, teams):
    decision = route(session, source="api", work_type="document_verification")
    assert decision.team is teams["docs"] and decision.priority == "normal" and decision.rule is None
    assert route(session, source="email").type == "general"


def test_conditions_on_recipient_sender_domain_subject_and_keywords(session, teams):
    add_rule(session, name="docs mailbox", position=1, source="email", recipient="docs@bank.example",
             set_type="document_verification", set_team_id=teams["docs"].id)
    add_rule(session, name="vip domain", position=2, sender="@vip.example", set_priority="urgent")
    add_rule(session, name="chargebacks", position=3, subject_contains="chargeback", set_type="return",
             set_priority="high")
    d = route(session, source="email", recipient="DOCS@bank.example", sender="x@y.example")
    assert (d.type, d.team.name, d.rule.name) == ("document_verification", "Documents", "docs mailbox")
    d = route(session, source="api", sender="ceo@vip.example")
    assert d.priority == "urgent" and d.rule.name == "vip domain"
    d = route(session, source="api", sender="ceo@notvip.example", subject="Chargeback on card")
    assert (d.type, d.team.name, d.priority) == ("return", "Returns", "high")
    assert route(session, source="form", recipient="docs@bank.example").rule is None  # wrong source


def test_explicit_values_win_over_rules(session, teams):
    add_rule(session, keywords=["refund"], set_type="return", set_team_id=teams["returns"].id, set_priority="low")
    d = route(session, source="api", work_type="general", team=teams["general"], priority="high", subject="refund")
    assert (d.type, d.team.name, d.priority) == ("general", "General", "high")


def test_inactive_rules_are_ignored_and_first_match_wins(session, teams):
    add_rule(session, name="off", position=1, keywords=["x"], set_priority="urgent", active=False)
    add_rule(session, name="second", position=5, keywords=["x"], set_priority="low")
    add_rule(session, name="third", position=9, keywords=["x"], set_priority="high")
    assert route(session, source="api", body="x marks").rule.name == "second"


def test_no_team_at_all_is_a_clear_error(session):
    with pytest.raises(Invalid, match="no team"):
        route(session, source="api", work_type="return")
