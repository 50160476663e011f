"""The `flask --app wsgi ...` commands, driven through Flask's CLI runner."""
from pathlib import Path

import sqlalchemy as sa

from queue_app.models import OutboxJob, Team, User, WorkItem
from queue_app.services.people import users as user_service
from tests import factories


def invoke(runner, *args):
    return runner.invoke(args=list(args))


def test_users_create(runner, session, make_team):
    make_team(name="Returns")
    result = invoke(runner, "users", "create", "Priya@Example.com", "--role", "supervisor", "--team", "Returns",
                    "--password", factories.PASSWORD, "--name", "Priya Nair")

    assert result.exit_code == 0, result.output
    assert "created supervisor priya@example.com in Returns" in result.output
    user = factories.get_user(session, "priya@example.com")
    assert (user.name, user.role, [t.name for t in user.teams]) == ("Priya Nair", "supervisor", ["Returns"])
    assert user.check_password(factories.PASSWORD)


def test_users_create_refuses_a_duplicate(runner, session, make_user):
    make_user(email="tom@example.com")
    session.commit()
    result = invoke(runner, "users", "create", "tom@example.com", "--password", factories.PASSWORD)

    assert result.exit_code == 1
    assert "a user with email tom@example.com already exists" in result.output
    assert session.scalar(sa.select(sa.func.count()).select_from(User)) == 1


def test_users_create_refuses_an_unknown_team(runner, session):
    result = invoke(runner, "users", "create", "lena@example.com", "--team", "Nowhere", "--password",
                    factories.PASSWORD)

    assert result.exit_code == 1
    assert "no team named 'Nowhere'" in result.output
    assert factories.get_user(session, "lena@example.com") is None


def test_users_create_refuses_a_short_password(runner, session):
    result = invoke(runner, "users", "create", "lena@example.com", "--password", "short")

    assert result.exit_code == 1
    assert "at least 8 characters" in result.output


def test_users_create_prompts_for_the_password(runner, session):
    result = runner.invoke(args=["users", "create", "mei@example.com"],
                           input=f"{factories.PASSWORD}\n{factories.PASSWORD}\n")

    assert result.exit_code == 0, result.output
    assert factories.get_user(session, "mei@example.com").check_password(factories.PASSWORD)


def test_users_token_prints_a_token_the_api_accepts(runner, session, make_user):
    user = make_user(email="api@example.com")
    session.commit()
    result = invoke(runner, "users", "token", "api@example.com", "--name", "partner system")

    assert result.exit_code == 0, result.output
    token = result.output.strip()
    assert token.startswith("bd_")
    assert user_service.user_for_token(session, token).id == user.id
    assert user_service.user_for_token(session, token + "x") is None


def test_users_token_for_an_unknown_user(runner):
    result = invoke(runner, "users", "token", "ghost@example.com")

    assert result.exit_code == 1
    assert "no user ghost@example.com" in result.output


def test_users_list(runner, session, make_team, make_user):
    team = make_team(name="Documents")
    make_user(email="b@example.com", teams=[team])
    make_user(email="a@example.com", role="admin")
    session.commit()
    lines = invoke(runner, "users", "list").output.splitlines()

    assert [line.split()[0] for line in lines] == ["a@example.com", "b@example.com"]
    assert "Documents" in lines[1]


def test_seed_demo_fills_an_empty_database(runner, session, app):
    result = invoke(runner, "seed-demo", "--items", "30")

    assert result.exit_code == 0, result.output
    assert "Seeded 4 teams, 9 people, 4 mailboxes and 30 work items." in result.output
    assert set(session.scalars(sa.select(Team.name))) == {"Returns", "Documents", "Reconciliation", "Escalations"}
    roles = [role for (role,) in session.execute(sa.select(User.role))]
    assert (roles.count("admin"), roles.count("supervisor"), roles.count("executive")) == (1, 2, 6)
    items = session.scalars(sa.select(WorkItem)).all()
    assert len(items) == 30
    assert len({i.type for i in items}) >= 3
    assert len({i.status for i in items}) >= 3
    assert len({i.assignee_id for i in items}) >= 3  # assigned to several people, some unassigned
    # Every item's checks wait in the outbox for the relay.
    assert session.scalar(sa.select(sa.func.count()).select_from(OutboxJob)) >= 30

    logins = Path(app.config["INSTANCE_DIR"]) / "demo-logins.txt"
    lines = logins.read_text().splitlines()
    assert len(lines) == 9 and lines[0].startswith("admin@backdesk.example.com")
    email, password = lines[0].split()[:2]
    assert user_service.authenticate(session, email, password) is not None


def test_seed_demo_is_realistic_and_floods_nobody(runner, session, app):
    from queue_app.models import Event, ExchangeRate, Message, Notification, SlaPolicy
    from queue_app.models.base import utcnow
    from queue_app.models.work_item import OPEN_STATUSES
    from queue_app.services.sla import ladder

    result = invoke(runner, "seed-demo", "--items", "80")
    assert result.exit_code == 0, result.output
    now = utcnow()
    session.expire_all()

    # Nothing happened in the future.
    assert session.scalar(sa.select(sa.func.count()).where(WorkItem.resolved_at > now)) == 0
    assert session.scalar(sa.select(sa.func.count()).where(Event.at > now)) == 0
    assert session.scalar(sa.select(sa.func.count()).where(WorkItem.created_at > now)) == 0

    # Teams on their auto-assignment policies, policies on the teams' business calendars, rates for the checks.
    teams = session.scalars(sa.select(Team)).all()
    assert all(t.auto_assign != "manual" for t in teams)
    assert any(not t.calendar.is_round_the_clock for t in teams)
    policies = session.scalars(sa.select(SlaPolicy)).all()
    assert policies and all(p.calendar is not None for p in policies)
    team_calendars = {t.calendar_id for t in teams}
    assert {p.calendar_id for p in policies} <= team_calendars
    assert {r.from_currency for r in session.scalars(sa.select(ExchangeRate))} >= {"USD", "GBP", "INR"}

    # Nobody holds more open work than their capacity.
    for user in session.scalars(sa.select(User)):
        held = session.scalar(sa.select(sa.func.count()).where(WorkItem.assignee_id == user.id,
                                                                 WorkItem.status.in_(OPEN_STATUSES)))
        assert held <= user.capacity, (user.email, held, user.capacity)

    # Most open items are not yet due; nothing is due right now, and no mail waits to go out.
    open_items = session.scalars(sa.select(WorkItem).where(WorkItem.status.in_(OPEN_STATUSES))).all()
    breached = [i for i in open_items if i.sla_state == "breached"]
    assert open_items and len(breached) <= len(open_items) // 10, (len(breached), len(open_items))
    assert ladder.due_item_ids(session, now) == []
    assert session.scalar(sa.select(sa.func.count()).where(Notification.send_status == "queued")) == 0
    assert session.scalar(sa.select(sa.func.count()).where(Message.kind == "outbound",
                                                           Message.send_status == "queued")) == 0
    live_mail = sa.select(sa.func.count()).where(OutboxJob.job_path.like("workers.mail_out.%"),
                                                 OutboxJob.completed_at.is_(None))
    assert session.scalar(live_mail) == 0
    past_timers = sa.select(sa.func.count()).where(OutboxJob.job_path == "workers.sla_timers.fire_sla_timer",
                                                   OutboxJob.run_at <= now, OutboxJob.completed_at.is_(None))
    assert session.scalar(past_timers) == 0


def test_seed_demo_if_empty_leaves_a_filled_database_alone(runner, session, make_user):
    make_user(email="someone@example.com")
    session.commit()
    result = invoke(runner, "seed-demo", "--items", "5", "--if-empty")

    assert result.exit_code == 0, result.output
    assert "not seeding" in result.output
    assert session.scalar(sa.select(sa.func.count()).select_from(User)) == 1
    assert session.scalar(sa.select(sa.func.count()).select_from(WorkItem)) == 0


def test_seed_demo_without_if_empty_refuses_a_filled_database(runner, session, make_user):
    make_user(email="someone@example.com")
    session.commit()
    result = invoke(runner, "seed-demo", "--items", "5")

    assert result.exit_code == 1
    assert "already has users" in result.output


def test_outbox_status_counts_pending_jobs(runner, session, make_item):
    make_item()
    make_item()
    session.commit()
    result = invoke(runner, "outbox", "status")

    assert result.exit_code == 0, result.output
    assert result.output.strip() == "4 jobs pending"  # per item: its checks and its first SLA timer


def test_outbox_status_on_an_empty_outbox(runner):
    assert invoke(runner, "outbox", "status").output.strip() == "0 jobs pending"
