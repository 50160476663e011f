"""Factories with keyword-only defaults. They flush; tests commit when they need committed data."""
import itertools

import sqlalchemy as sa

from queue_app.models import SlaPolicy, Team, User
from queue_app.services.items import lifecycle
from queue_app.services.people import users as user_service

PASSWORD = "correct-horse-42"
_seq = itertools.count(1)

VALID_FIELDS = {
    "return": {"order_number": "ORD-1001", "purchase_date": "2026-11-01", "amount": "49.90", "currency": "EUR",
               "reason": "Wrong size"},
    "document_verification": {"document_type": "passport", "document_number": "X1234567", "expires_on": "2030-01-01"},
    "discrepancy_fix": {"account": "ACC-100", "expected_amount": "100.00", "actual_amount": "98.50",
                        "currency": "EUR"},
    "escalation": {"severity": "high"},
    "general": {},
}


def make_team(session, *, name=None, work_types=None, approval_threshold=None):
    team = Team(name=name or f"Team {next(_seq)}", work_types=work_types or [], approval_threshold=approval_threshold)
    session.add(team)
    session.flush()
    return team


def make_user(session, *, email=None, role="executive", teams=(), password=PASSWORD, name=None, skills=None,
              capacity=20):
    email = email or f"user{next(_seq)}@example.com"
    team_names = [t.name if isinstance(t, Team) else t for t in teams]
    return user_service.create_user(session, email=email, password=password, role=role, name=name, teams=team_names,
                                    skills=skills, capacity=capacity)


def make_item(session, *, team=None, type="return", actor=None, fields=None, subject=None, priority="normal",
              assignee=None, requester_email="customer@example.com", source="api", now=None):
    if team is None:
        team = session.scalar(sa.select(Team).order_by(Team.id)) or make_team(session, work_types=[type])
    return lifecycle.create_item(
        session, actor=actor, source=source, type=type, subject=subject or f"{type} item {next(_seq)}",
        fields=VALID_FIELDS[type] if fields is None else fields, priority=priority, team=team,
        requester_email=requester_email, assignee=assignee, now=now,
    )


def make_policy(session, **kw):
    policy = SlaPolicy(name=kw.pop("name", f"Policy {next(_seq)}"), **kw)
    session.add(policy)
    session.flush()
    return policy


def get_user(session, email):
    return session.scalar(sa.select(User).where(User.email == email))
