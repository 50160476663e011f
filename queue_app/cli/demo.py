"""`flask seed-demo`: teams, people, SLA policies and about 200 work items to explore."""
import random
import secrets
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import click
import sqlalchemy as sa
from flask import current_app

from queue_app.extensions import db
from queue_app.models import (
    Calendar,
    CannedResponse,
    Mailbox,
    RoutingRule,
    SlaPolicy,
    Team,
    User,
    WorkItem,
)
from queue_app.models.base import utcnow
from queue_app.models.calendar import round_the_clock_hours
from queue_app.services.items import lifecycle, state
from queue_app.services.people import users as user_service

TEAMS = {
    "Returns": ["return"],
    "Documents": ["document_verification"],
    "Reconciliation": ["discrepancy_fix"],
    "Escalations": ["escalation", "general"],
}
PEOPLE = [
    ("admin@backdesk.example.com", "Ada Admin", "admin", list(TEAMS)),
    ("sam.supervisor@backdesk.example.com", "Sam Supervisor", "supervisor", ["Returns", "Documents"]),
    ("rita.supervisor@backdesk.example.com", "Rita Supervisor", "supervisor", ["Reconciliation", "Escalations"]),
    ("priya@backdesk.example.com", "Priya Nair", "executive", ["Returns"]),
    ("tom@backdesk.example.com", "Tom Becker", "executive", ["Returns", "Escalations"]),
    ("lena@backdesk.example.com", "Lena Vogel", "executive", ["Documents"]),
    ("omar@backdesk.example.com", "Omar Haddad", "executive", ["Documents", "Reconciliation"]),
    ("mei@backdesk.example.com", "Mei Chen", "executive", ["Reconciliation"]),
    ("diego@backdesk.example.com", "Diego Silva", "executive", ["Escalations"]),
]
REQUESTERS = ["anna.k@example.com", "j.murphy@example.org", "sales-desk@example.net", "m.rossi@example.it",
              "kenji@example.jp", "olga.p@example.com", "front.office@example.com"]
SUBJECTS = {
    "return": ["Return request for order {n}", "Damaged item on order {n}", "Refund not received for {n}"],
    "document_verification": ["Verify passport for onboarding", "Proof of address check", "KYC documents uploaded"],
    "discrepancy_fix": ["Balance mismatch on account {a}", "Settlement difference {a}", "Ledger off by small amount"],
    "escalation": ["Customer complaint escalated", "VIP client waiting on refund", "Regulator query"],
    "general": ["Question about processing times", "Update contact details", "Request for statement copy"],
}

# Canned responses (title, team or None for every team, text with placeholders).
CANNED = [
    ("Acknowledge and set expectations", None,
     "Dear {requester_name},\n\nThank you for your message about \"{subject}\". We are looking into it under "
     "reference {reference} and expect to have it resolved by {due_date}.\n\nKind regards,\n{executive_name}\n{team}"),
    ("Ask for more information", None,
     "Dear {requester_name},\n\nTo continue with {reference} we need a little more information from you: \n\n- \n\n"
     "Please reply to this email, keeping the reference in the subject.\n\nKind regards,\n{executive_name}"),
    ("Refund approved", "Returns",
     "Dear {requester_name},\n\nGood news: the refund for your return ({reference}) has been approved. It will "
     "reach your original payment method within 5 business days.\n\nKind regards,\n{executive_name}\n{team}"),
    ("Document expired", "Documents",
     "Dear {requester_name},\n\nThe document you sent for {reference} has expired, so we cannot accept it. "
     "Please send a copy of a valid document by replying to this email.\n\nKind regards,\n{executive_name}"),
]


def _fields(rng, work_type, today):
    if work_type == "return":
        return {"order_number": f"ORD-{rng.randint(100000, 999999)}",
                "purchase_date": (today - timedelta(days=rng.randint(1, 60))).isoformat(),
                "amount": f"{rng.randint(5, 2500)}.{rng.randint(0, 99):02d}", "currency": rng.choice(["EUR", "GBP", "USD"]),
                "reason": rng.choice(["Wrong size", "Arrived damaged", "Not as described", "Changed mind"])}
    if work_type == "document_verification":
        return {"document_type": rng.choice(["passport", "national_id", "utility_bill", "bank_statement"]),
                "document_number": f"X{rng.randint(1000000, 9999999)}",
                "expires_on": (today + timedelta(days=rng.randint(-30, 2000))).isoformat()}
    if work_type == "discrepancy_fix":
        expected = Decimal(rng.randint(100, 50000)) / 100 * 10
        return {"account": f"ACC-{rng.randint(10000, 99999)}", "expected_amount": f"{expected:.2f}",
                "actual_amount": f"{expected - Decimal(rng.randint(1, 5000)) / 100:.2f}",
                "currency": rng.choice(["EUR", "USD", "INR"])}
    if work_type == "escalation":
        return {"severity": rng.choice(["low", "medium", "high", "critical"])}
    return {}


def _save_logins(logins):
    path = Path(current_app.config.get("INSTANCE_DIR", current_app.instance_path)) / "demo-logins.txt"
    path.write_text("".join(f"{email}  {password}  ({role})\n" for email, password, role in logins))
    path.chmod(0o600)
    return path


@click.command("seed-demo")
@click.option("--items", default=200, show_default=True, help="How many work items to create.")
@click.option("--if-empty", is_flag=True, help="Do nothing if there are users already.")
@click.option("--seed", default=7, show_default=True, help="Random seed, for repeatable data.")
def seed_demo(items, if_empty, seed):
    """Create demo teams, people (passwords printed), SLA policies and work items."""
    if db.session.scalar(sa.select(sa.func.count()).select_from(User)):
        if if_empty:
            click.echo("database already has users; not seeding demo data")
            return
        raise click.ClickException("the database already has users; seed-demo only fills an empty database")
    rng = random.Random(seed)
    now = utcnow()
    calendar = Calendar(name="Round the clock", timezone="UTC", hours=round_the_clock_hours())
    db.session.add(calendar)
    teams = {}
    for name, types in TEAMS.items():
        teams[name] = Team(name=name, work_types=types, calendar=calendar,
                           approval_threshold=Decimal("1000.00") if name in ("Returns", "Reconciliation") else None)
        db.session.add(teams[name])
    db.session.flush()

    logins, people = [], {}
    for email, name, role, team_names in PEOPLE:
        password = secrets.token_urlsafe(9)
        people[email] = user_service.create_user(db.session, email=email, password=password, role=role, name=name,
                                                 teams=team_names, actor="seed-demo")
        logins.append((email, password, role))

    for work_type, first, resolution in [("return", 240, 1440), ("document_verification", 120, 960),
                                         ("discrepancy_fix", 240, 2880), ("escalation", 60, 480),
                                         ("general", 480, 4320)]:
        db.session.add(SlaPolicy(name=f"{work_type.replace('_', ' ').capitalize()} standard", match_type=work_type,
                                 calendar=calendar, first_response_minutes=first, resolution_minutes=resolution))
    db.session.add(SlaPolicy(name="Urgent anything", match_priority="urgent", calendar=calendar,
                             first_response_minutes=30, resolution_minutes=240))
    for address, work_type, team_name in [("returns@backdesk.example.com", "return", "Returns"),
                                          ("docs@backdesk.example.com", "document_verification", "Documents"),
                                          ("recon@backdesk.example.com", "discrepancy_fix", "Reconciliation"),
                                          ("help@backdesk.example.com", "general", "Escalations")]:
        db.session.add(Mailbox(address=address, type=work_type, team=teams[team_name]))
    for title, team_name, body in CANNED:
        db.session.add(CannedResponse(title=title, body=body, team=teams.get(team_name),
                                      created_by=people["admin@backdesk.example.com"]))
    db.session.add(RoutingRule(name="Refund keywords go to Returns", position=10, keywords=["refund", "return"],
                               source="email", set_type="return", set_team_id=teams["Returns"].id))
    db.session.flush()

    today = now.date()
    admin = people["admin@backdesk.example.com"]
    for i in range(items):
        work_type = rng.choice(list(SUBJECTS))
        team = next(t for t in teams.values() if work_type in t.work_types)
        fields = _fields(rng, work_type, today)
        subject = rng.choice(SUBJECTS[work_type]).format(n=fields.get("order_number", "ORD-1"),
                                                         a=fields.get("account", "ACC-1"))
        created = now - timedelta(minutes=rng.randint(5, 60 * 36))
        item = lifecycle.create_item(
            db.session, actor=admin, source=rng.choice(["email", "form", "api"]), type=work_type, subject=subject,
            description=f"Demo item {i + 1}: {subject}.", fields=fields,
            priority=rng.choices(["low", "normal", "high", "urgent"], [2, 6, 2, 1])[0], team=team,
            requester_email=rng.choice(REQUESTERS), now=created,
        )
        members = [m for m in team.members if m.role == "executive"]
        if members and rng.random() < 0.7:
            state.assign(db.session, item, rng.choice(members), actor=admin, now=created + timedelta(minutes=3))
            _advance(rng, item, admin, created)
    db.session.commit()
    path = _save_logins(logins)
    count = db.session.scalar(sa.select(sa.func.count()).select_from(WorkItem))
    click.echo(f"Seeded {len(teams)} teams, {len(people)} people, 4 mailboxes and {count} work items.")
    click.echo(f"Demo logins (also in {path}):")
    for email, password, role in logins:
        click.echo(f"  {email:34} {password}  ({role})")


def _advance(rng, item, actor, created):
    """Move some assigned items along so every status appears in the demo."""
    roll = rng.random()
    at = created + timedelta(minutes=rng.randint(10, 120))
    if roll < 0.25:
        return
    lifecycle.change_status(db.session, item, "open", actor=actor, now=at)
    if roll < 0.45:
        return
    if roll < 0.6:
        lifecycle.change_status(db.session, item, rng.choice(["pending_customer", "pending_third_party"]),
                                 actor=actor, now=at + timedelta(minutes=30))
        return
    lifecycle.add_note(db.session, item, actor=actor, body="Checked the details; looks fine.",
                        now=at + timedelta(minutes=20))
    lifecycle.change_status(db.session, item, "resolved", actor=actor, now=at + timedelta(minutes=60))
    if item.status == "resolved" and roll > 0.85:
        lifecycle.change_status(db.session, item, "closed", actor=actor, now=at + timedelta(minutes=90))
