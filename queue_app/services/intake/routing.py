"""Routing: which type, team and priority an incoming item gets.

Invariants: values the caller states explicitly (an API client naming its team) win;
rules fill in what is missing, first matching rule by position; anything still
missing falls back to the first team handling the type, and priority "normal".
"""
from dataclasses import dataclass
from typing import Optional

import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from queue_app.db.config_cache import cached
from queue_app.models import RoutingRule, Team
from queue_app.services.errors import Invalid


@dataclass
class RoutingDecision:
    type: Optional[str]
    team: Optional[Team]
    priority: str
    rule: Optional[RoutingRule] = None


def _contains(haystack, needle):
    return needle.lower() in (haystack or "").lower()


def rule_matches(rule, *, source, recipient, sender, subject, body, work_type):
    if rule.source and rule.source != source:
        return False
    if rule.recipient and (recipient or "").lower() != rule.recipient.lower():
        return False
    if rule.sender:
        address = (sender or "").lower()
        wanted = rule.sender.lower()
        if wanted.startswith("@"):
            if not address.endswith(wanted):
                return False
        elif address != wanted:
            return False
    if rule.subject_contains and not _contains(subject, rule.subject_contains):
        return False
    if rule.keywords and not any(_contains(subject, k) or _contains(body, k) for k in rule.keywords):
        return False
    if rule.match_type and rule.match_type != work_type:
        return False
    return True


def route(session, *, source, work_type=None, team=None, priority=None, recipient=None, sender=None,
          subject="", body="", defaults=None):
    """Decide type, team and priority. `defaults` (e.g. a mailbox's) apply after rules, before fallbacks."""
    rules = cached(session, "routing_rules", lambda: session.scalars(
        sa.select(RoutingRule).where(RoutingRule.active.is_(True)).order_by(RoutingRule.position, RoutingRule.id)
        .options(selectinload(RoutingRule.team).selectinload(Team.calendar))
    ).all())
    matched = None
    for rule in rules:
        if rule_matches(rule, source=source, recipient=recipient, sender=sender, subject=subject, body=body,
                        work_type=work_type):
            matched = rule
            break
    if matched is not None:
        work_type = work_type or matched.set_type
        team = team or matched.team
        priority = priority or matched.set_priority
    if defaults is not None:
        work_type = work_type or defaults.type
        team = team or defaults.team
        priority = priority or defaults.priority
    work_type = work_type or "general"
    if team is None:
        team = default_team_for(session, work_type)
    if team is None:
        raise Invalid("no team handles this kind of work; create a team first", {"team": "no team available"})
    return RoutingDecision(type=work_type, team=team, priority=priority or "normal", rule=matched)


def default_team_for(session, work_type):
    teams = session.scalars(sa.select(Team).order_by(Team.id)).all()
    for team in teams:
        if work_type in (team.work_types or []):
            return team
    return teams[0] if teams else None
