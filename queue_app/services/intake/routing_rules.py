"""Routing rules as admins edit them: conditions (how an item arrived) and actions (what it gets).

Invariants: everything is checked before anything changes (Invalid names the field); a rule
sets at least one thing; addresses are stored lower-case, as routing compares them; rules run
by position, lowest first, and the first match wins (services.intake.routing); every change is
recorded in the audit trail (services.audit).
"""
import re

import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from queue_app.models import RoutingRule, Team
from queue_app.models.routing_rule import SOURCES
from queue_app.models.work_item import PRIORITIES, TYPES
from queue_app.services.audit import record as audit
from queue_app.services.errors import Invalid
from queue_app.services.people.users import normalise_email

MAX_POSITION = 1_000_000
MAX_KEYWORDS = 50
MAX_KEYWORD = 100
_DOMAIN = re.compile(r"@[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+")
_KEYWORD_SPLIT = re.compile(r"[,\n]+")


def list_rules(session):
    return session.scalars(sa.select(RoutingRule).options(selectinload(RoutingRule.team))
                           .order_by(RoutingRule.position, RoutingRule.id)).all()


def split_keywords(text):
    return [k.strip() for k in _KEYWORD_SPLIT.split(text or "") if k.strip()]


def _text(value, key, limit, errors):
    value = (value or "").strip()
    if len(value) > limit:
        errors[key] = f"at most {limit} characters"
    return value or None


RULE_FIELDS = ("name", "position", "active", "source", "recipient", "sender", "subject_contains", "keywords",
               "match_type", "set_type", "set_priority")


def rule_settings(session, rule):
    """What the audit trail records of a rule."""
    team = session.get(Team, rule.set_team_id) if rule.set_team_id is not None else None
    return audit.snapshot(rule, RULE_FIELDS, set_team=team.name if team is not None else None)


def save_rule(session, rule=None, *, name, position=100, active=True, source=None, recipient=None, sender=None,
              subject_contains=None, keywords=(), match_type=None, set_type=None, set_team_id=None,
              set_priority=None, actor=None):
    """Create (rule None) or update a routing rule; returns it."""
    errors = {}
    name = _text(name, "name", 120, errors)
    if name is None:
        errors["name"] = "is required"
    if isinstance(position, bool) or not isinstance(position, int) or not 0 <= position <= MAX_POSITION:
        errors["position"] = f"a whole number from 0 to {MAX_POSITION:,}"
    for key, value, allowed in (("source", source, SOURCES), ("match_type", match_type, TYPES),
                                ("set_type", set_type, TYPES), ("set_priority", set_priority, PRIORITIES)):
        if value and value not in allowed:
            errors[key] = f"must be one of {', '.join(allowed)}"
    recipient = _text(recipient, "recipient", 255, errors)
    if recipient and "recipient" not in errors:
        try:
            recipient = normalise_email(recipient)
        except Invalid as exc:
            errors["recipient"] = exc.fields.get("email", exc.message)
    sender = _text(sender, "sender", 255, errors)
    if sender and "sender" not in errors:
        sender = sender.lower()
        if sender.startswith("@"):
            if not _DOMAIN.fullmatch(sender):
                errors["sender"] = "a full address or @domain, such as @example.com"
        else:
            try:
                sender = normalise_email(sender)
            except Invalid as exc:
                errors["sender"] = exc.fields.get("email", exc.message)
    subject_contains = _text(subject_contains, "subject_contains", 255, errors)
    keywords = list(dict.fromkeys(k.strip() for k in keywords if k and k.strip()))
    if len(keywords) > MAX_KEYWORDS:
        errors["keywords"] = f"at most {MAX_KEYWORDS} keywords"
    elif any(len(k) > MAX_KEYWORD for k in keywords):
        errors["keywords"] = f"each keyword at most {MAX_KEYWORD} characters"
    if set_team_id is not None and session.get(Team, set_team_id) is None:
        errors["set_team"] = "no such team"
    if not (set_type or set_team_id or set_priority):
        errors.setdefault("set_type", "a rule must set a type, a team or a priority")
    if errors:
        raise Invalid("the routing rule was not saved", errors)
    before = rule_settings(session, rule) if rule is not None else None
    if rule is None:
        rule = RoutingRule()
        session.add(rule)
    rule.name, rule.position, rule.active = name, position, bool(active)
    rule.source, rule.recipient, rule.sender = source or None, recipient, sender
    rule.subject_contains, rule.keywords, rule.match_type = subject_contains, keywords, match_type or None
    rule.set_type, rule.set_team_id, rule.set_priority = set_type or None, set_team_id, set_priority or None
    session.flush()
    audit.changed(session, actor, "routing_rule", rule, before, rule_settings(session, rule))
    return rule


def delete_rule(session, rule, *, actor=None):
    before = rule_settings(session, rule)
    session.delete(rule)
    session.flush()
    audit.changed(session, actor, "routing_rule", rule, before, None)
