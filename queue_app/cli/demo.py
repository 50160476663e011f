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
    Approval,
    Calendar,
    CannedResponse,
    ChecklistStep,
    Mailbox,
    Message,
    Notification,
    OutboxJob,
    RoutingRule,
    SlaPolicy,
    Team,
    User,
    WorkItem,
)
from queue_app.models.base import utcnow
from queue_app.models.calendar import round_the_clock_hours
from queue_app.services.approvals import reminders
from queue_app.services.checks import exchange_rates
from queue_app.services.items import checklists, lifecycle, tags
from queue_app.services.people import notifications
from queue_app.services.people import users as user_service
from queue_app.services.sla import clock as sla_clock
from queue_app.services.sla import ladder, policies

# The jobs that mail someone: the seeded history's are recorded as done (see _settle).
MAIL_JOBS = (notifications.SEND_JOB, "workers.mail_out.send_message")

# Business calendars: (time zone, weekly hours, holiday country).
OFFICE_DAYS = ("mon", "tue", "wed", "thu", "fri")
CALENDARS = {
    "Berlin office": ("Europe/Berlin", ["08:00-18:00"], "DE"),
    "London office": ("Europe/London", ["09:00-17:30"], "GB"),
    "Round the clock": ("UTC", None, None),
}
# Team: (work types, calendar, auto-assignment policy, approval threshold in EUR).
TEAMS = {
    "Returns": (["return"], "Berlin office", "least_loaded", Decimal("1000.00")),
    "Documents": (["document_verification"], "Berlin office", "skills", None),
    "Reconciliation": (["discrepancy_fix"], "London office", "round_robin", Decimal("1000.00")),
    "Escalations": (["escalation", "general"], "Round the clock", "sla_aware", None),
}
# (email, name, role, teams, capacity): executives take work up to their capacity.
PEOPLE = [
    ("admin@backdesk.example.com", "Ada Admin", "admin", list(TEAMS), 20),
    ("sam.supervisor@backdesk.example.com", "Sam Supervisor", "supervisor", ["Returns", "Documents"], 20),
    ("rita.supervisor@backdesk.example.com", "Rita Supervisor", "supervisor", ["Reconciliation", "Escalations"], 20),
    ("priya@backdesk.example.com", "Priya Nair", "executive", ["Returns"], 15),
    ("tom@backdesk.example.com", "Tom Becker", "executive", ["Returns", "Escalations"], 10),
    ("lena@backdesk.example.com", "Lena Vogel", "executive", ["Documents"], 12),
    ("omar@backdesk.example.com", "Omar Haddad", "executive", ["Documents", "Reconciliation"], 10),
    ("mei@backdesk.example.com", "Mei Chen", "executive", ["Reconciliation"], 12),
    ("diego@backdesk.example.com", "Diego Silva", "executive", ["Escalations"], 12),
]
# SLA targets in business minutes: work type -> (first response, resolution); urgent items have their own.
TARGETS = {"return": (240, 1440), "document_verification": (120, 960), "discrepancy_fix": (240, 2880),
           "escalation": (60, 480), "general": (480, 4320)}
URGENT_TARGETS = (30, 240)
WARN_AT_PERCENT = 75
# 1 unit of the currency in EUR, the checks' base currency.
EXCHANGE_RATES = {"USD": "0.9240", "GBP": "1.1710", "INR": "0.0110"}
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

# Checklists: team -> work type -> steps (text, mandatory), in order.
# A few tags people put on items, by work type (any type may be "vip"), and how often.
DEMO_TAGS = {"return": ["chargeback", "repeat-customer"], "discrepancy_fix": ["fraud-check", "month-end"],
             "document_verification": ["fraud-check", "kyc-refresh"], "escalation": ["press", "complaint"],
             "general": ["follow-up"]}
TAGGED_SHARE = 0.3

CHECKLISTS = {
    "Returns": {"return": [("Check the order in the shop system", True),
                           ("Confirm the refund amount with the receipt", True),
                           ("Note the return reason", False)]},
    "Documents": {"document_verification": [("Compare the name on the document with the account", True)]},
}


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
    calendars = {}
    for name, (zone, hours, country) in CALENDARS.items():
        week = round_the_clock_hours() if hours is None else \
            {day: list(hours) if day in OFFICE_DAYS else [] for day in round_the_clock_hours()}
        calendars[name] = Calendar(name=name, timezone=zone, hours=week, holiday_country=country)
        db.session.add(calendars[name])
    teams = {}
    for name, (types, calendar_name, policy, threshold) in TEAMS.items():
        teams[name] = Team(name=name, work_types=types, calendar=calendars[calendar_name], auto_assign=policy,
                           approval_threshold=threshold)
        db.session.add(teams[name])
    db.session.flush()

    logins, people = [], {}
    for email, name, role, team_names, capacity in PEOPLE:
        password = secrets.token_urlsafe(9)
        skills = sorted({t for team_name in team_names for t in TEAMS[team_name][0]})
        people[email] = user_service.create_user(db.session, email=email, password=password, role=role, name=name,
                                                 teams=team_names, skills=skills, capacity=capacity,
                                                 actor="seed-demo")
        logins.append((email, password, role))
    admin = people["admin@backdesk.example.com"]

    # Each work type's policy runs on its team's calendar; urgent items have a policy per team.
    for team in teams.values():
        for work_type in team.work_types:
            first, resolution = TARGETS[work_type]
            db.session.add(SlaPolicy(name=f"{work_type.replace('_', ' ').capitalize()} standard",
                                     match_type=work_type, calendar=team.calendar, warn_at_percent=WARN_AT_PERCENT,
                                     first_response_minutes=first, resolution_minutes=resolution))
        db.session.add(SlaPolicy(name=f"Urgent {team.name}", match_priority="urgent", match_team_id=team.id,
                                 calendar=team.calendar, warn_at_percent=WARN_AT_PERCENT,
                                 first_response_minutes=URGENT_TARGETS[0], resolution_minutes=URGENT_TARGETS[1]))
    for currency, rate in EXCHANGE_RATES.items():
        exchange_rates.set_rate(db.session, currency, "EUR", Decimal(rate), valid_from=now.date() - timedelta(days=90),
                                actor=admin)
    for address, work_type, team_name in [("returns@backdesk.example.com", "return", "Returns"),
                                          ("docs@backdesk.example.com", "document_verification", "Documents"),
                                          ("recon@backdesk.example.com", "discrepancy_fix", "Reconciliation"),
                                          ("help@backdesk.example.com", "general", "Escalations")]:
        db.session.add(Mailbox(address=address, type=work_type, team=teams[team_name]))
    for title, team_name, body in CANNED:
        db.session.add(CannedResponse(title=title, body=body, team=teams.get(team_name), created_by=admin))
    for team_name, by_type in CHECKLISTS.items():
        for work_type, steps in by_type.items():
            for position, (text, mandatory) in enumerate(steps, start=1):
                db.session.add(ChecklistStep(team=teams[team_name], work_type=work_type, position=position,
                                             text=text, mandatory=mandatory))
    db.session.add(RoutingRule(name="Refund keywords go to Returns", position=10, keywords=["refund", "return"],
                               source="email", set_type="return", set_team_id=teams["Returns"].id))
    db.session.flush()

    today = now.date()
    arrivals = []
    for i in range(items):
        work_type = rng.choice(list(SUBJECTS))
        team = next(t for t in teams.values() if work_type in t.work_types)
        fields = _fields(rng, work_type, today)
        subject = rng.choice(SUBJECTS[work_type]).format(n=fields.get("order_number", "ORD-1"),
                                                         a=fields.get("account", "ACC-1"))
        priority = rng.choices(["low", "normal", "high", "urgent"], [2, 6, 2, 1])[0]
        stage = rng.choices(["done", "arrived", "working", "waiting", "late"], [45, 22, 20, 10, 3])[0]
        created = _created_at(rng, stage, team.calendar, work_type, priority, now)
        arrivals.append((created, i, work_type, team, fields, subject, priority, stage))
    tag_rng = random.Random(seed + 1)  # its own stream: tagging leaves the rest of the data as it was
    # In the order they arrived, so finished work has freed its assignee's capacity for the next.
    for created, i, work_type, team, fields, subject, priority, stage in sorted(arrivals, key=lambda a: a[:2]):
        item = lifecycle.create_item(
            db.session, actor=admin, source=rng.choice(["email", "form", "api"]), type=work_type, subject=subject,
            description=f"Demo item {i + 1}: {subject}.", fields=fields, priority=priority, team=team,
            requester_email=rng.choice(REQUESTERS), now=created,
        )  # the team's policy assigns it, up to each person's capacity
        _tag(tag_rng, item, admin, created)
        if item.assignee is not None and stage != "arrived":
            _advance(rng, item, stage, created, now)
    _settle(now)
    db.session.commit()
    path = _save_logins(logins)
    count = db.session.scalar(sa.select(sa.func.count()).select_from(WorkItem))
    click.echo(f"Seeded {len(teams)} teams, {len(people)} people, 4 mailboxes and {count} work items.")
    click.echo(f"Demo logins (also in {path}):")
    for email, password, role in logins:
        click.echo(f"  {email:34} {password}  ({role})")


def _tag(rng, item, actor, now):
    """Tag about TAGGED_SHARE of the items: one or two of their type's tags, sometimes "vip"."""
    if rng.random() >= TAGGED_SHARE:
        return
    choices = DEMO_TAGS.get(item.type, [])
    picked = rng.sample(choices, k=min(len(choices), rng.choice([1, 1, 2])))
    if rng.random() < 0.3:
        picked.append("vip")
    if picked:
        tags.change(db.session, item, actor=actor, add=picked, now=now)


def _targets(work_type, priority):
    return URGENT_TARGETS if priority == "urgent" else TARGETS[work_type]


def _created_at(rng, stage, calendar, work_type, priority, now):
    """When the item arrived: finished work days ago; open work recently enough, in the team's business
    time, that most of it is not yet due (the clock would otherwise start the demo with a wave of breaches)."""
    if stage == "done":
        return now - timedelta(hours=rng.uniform(30, 24 * 10))
    first, resolution = _targets(work_type, priority)
    if stage == "late":  # a few are past their resolution deadline
        minutes = rng.uniform(1.05, 1.4) * resolution
    else:  # young enough that even an unanswered one is not yet warned about
        minutes = rng.uniform(0.05, 0.6) * first * WARN_AT_PERCENT / 100
    return min(sla_clock.add_business_minutes(calendar, now, -minutes), now - timedelta(minutes=2))


def _between(rng, start, end, low, high):
    """An instant between low and high of the way from start to end."""
    return start + (end - start) * rng.uniform(low, high)


def _advance(rng, item, stage, created, now):
    """Move an assigned item along, every step between its arrival and now: opened, answered, then
    waiting on someone, or resolved (some closed)."""
    worker = item.assignee
    end = now - timedelta(minutes=1)
    opened = _between(rng, created, end, 0.02, 0.1)
    lifecycle.change_status(db.session, item, "open", actor=worker, now=opened)
    answered = _between(rng, opened, end, 0.05, 0.3)
    if item.requester_email:
        lifecycle.add_reply(db.session, item, actor=worker, now=answered,
                            body="Dear customer,\n\nThank you for your message; we are looking into it.\n\n"
                                 f"Kind regards,\n{worker.name}")
    if stage in ("working", "late"):
        return
    if stage == "waiting":
        lifecycle.change_status(db.session, item, rng.choice(["pending_customer", "pending_third_party"]),
                                 actor=worker, now=_between(rng, answered, end, 0.1, 0.6))
        return
    noted = _between(rng, answered, end, 0.1, 0.5)
    lifecycle.add_note(db.session, item, actor=worker, body="Checked the details; looks fine.", now=noted)
    for line in checklists.checklist_of(db.session, item):  # the steps first, as the gate asks
        checklists.tick(db.session, item, line.step.id, actor=worker, now=noted)
    resolved = _between(rng, noted, end, 0.1, 0.6)
    lifecycle.change_status(db.session, item, "resolved", actor=worker, now=resolved)  # or awaits approval
    if item.status == "resolved" and rng.random() < 0.4:
        lifecycle.change_status(db.session, item, "closed", actor=worker, now=_between(rng, resolved, end, 0.2, 0.9))


def _settle(now):
    """The seeded past stays the past: SLA steps and approval notices already due are taken now, and
    every mail the history wrote (notifications, replies) is recorded as sent, not queued. Starting the
    demo then mails nobody; the timers left are those still to come."""
    for item_id in ladder.due_item_ids(db.session, now, limit=None):
        ladder.process_due(db.session, db.session.get(WorkItem, item_id), now=now, fired_by="seed-demo")
    for approval_id in db.session.scalars(sa.select(Approval.id).where(Approval.status == "pending")):
        reminders.remind(db.session, approval_id, now)
    db.session.flush()
    db.session.execute(sa.update(Notification).where(Notification.send_status == "queued")
                       .values(send_status="sent", sent_at=Notification.created_at))
    db.session.execute(sa.update(Message).where(Message.kind == "outbound", Message.send_status == "queued")
                       .values(send_status="sent", sent_at=Message.created_at))
    done = sa.or_(OutboxJob.job_path.in_(MAIL_JOBS), sa.and_(OutboxJob.job_path == policies.TIMER_JOB,
                                                             OutboxJob.run_at <= now))  # stale timers
    db.session.execute(sa.update(OutboxJob).where(done, OutboxJob.completed_at.is_(None)).values(completed_at=now))
