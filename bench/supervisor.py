#!/usr/bin/env python
"""Supervisor benchmarks (not run by `make test`): the assignment board, the reports and bulk
assignment over a large generated data set. Prints the figures; --readme appends them to
bench/README.md.

The issue's targets, for 1,000,000 items on PostgreSQL with 200 executives in 10 teams:
  assignment board (a supervisor's first page and the loads)  p95 <= 100 ms
  each report over a year of data                             <= 500 ms
  bulk assignment of 500 items                                <= 1 s

Data: N items created evenly over the last 365 days (ids in creation order), with SLA due
times of a round-the-clock policy (4 h first response, 48 h resolution). Older items are
almost all resolved or closed; recent ones are often open (about 1.4% of all items open,
70% of those assigned), plus a spike of 1,000 unassigned items in one team from the last day
(the bulk assignment runs move those). Every assigned item has its "assigned" event. Rows are written
with COPY on PostgreSQL and executemany on SQLite; the generation time is printed.

Timed, each on a fresh session (nothing cached in the identity map):
  board      services.assignment.board() for a supervisor of one team and for an admin
             (every team: the per-team summary), 50 runs each: p50 / p95 / max; the /supervisor
             page through HTTP (first page and the next keyset page), 50 runs each; and on
             PostgreSQL the EXPLAIN (ANALYZE, BUFFERS) of every query board() runs for the admin
  reports    each services.reporting.reports function over the last 365 days, admin (all teams)
             and one team's supervisor, 5 runs each: p50 / max; "created vs resolved per day"
             also the previous way (a GROUP BY day per column), for comparison in the same run;
             each tab of the reports page through HTTP (one report per page view); and on
             PostgreSQL the EXPLAIN (ANALYZE, BUFFERS) of the created-per-day query
  bulk       services.assignment.bulk_assign() of 500 open items + commit, 5 runs
  arrival    lifecycle.create_item() on a round-robin team (auto-assignment included), 50 runs

  .venv/bin/python bench/supervisor.py                         # SQLite, 100,000 items
  .venv/bin/python bench/supervisor.py --throwaway-postgres --items 1000000 --readme
  .venv/bin/python bench/supervisor.py --throwaway-postgres --postgres-port 5444
  .venv/bin/python bench/supervisor.py --database-url postgresql://... --reset
  .venv/bin/python bench/supervisor.py --throwaway-postgres --only board        # the board timings only
  .venv/bin/python bench/supervisor.py --database-url postgresql://... --reuse-data --only board
"""
import argparse
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TEAMS = 10
EXECUTIVES = 200
CAPACITY = 60
DAYS = 365
FIRST_RESPONSE = timedelta(hours=4)
RESOLUTION = timedelta(hours=48)
TYPES = ("escalation", "return", "document_verification", "discrepancy_fix", "general")
PRIORITIES = ("low", "normal", "normal", "normal", "high", "urgent")
CHUNK = 20_000
SPIKE = 1_000
PASSWORD = "bench-password-1"


def log(message):
    print(message, flush=True)


def percentile(values, p):
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))]


def ms(seconds):
    return f"{seconds * 1000:.1f} ms"


# --- a throwaway PostgreSQL cluster, started as scripts/test.sh does ---------------------------

class ThrowawayPostgres:
    def __init__(self, port=None):
        self.dir = Path(tempfile.mkdtemp(prefix="backdesk-bench-pg-"))
        self.dir.chmod(0o755)  # the server runs as the postgres user and needs to reach pg/
        (self.dir / "pg").mkdir(mode=0o755)
        self.port = port
        if self.port is None:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                self.port = s.getsockname()[1]
        lib = ROOT / "scripts" / "lib.sh"
        try:
            subprocess.run(["bash", "-c", f'set -e; source "{lib}"; start_postgres "$1" "$2"; '
                                          f'"$PG_BIN/createdb" -h 127.0.0.1 -p "$1" -U postgres backdesk_bench',
                            "_", str(self.port), str(self.dir / "pg")], check=True)
        except BaseException:
            self.stop()
            raise
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/backdesk_bench"

    def stop(self):
        lib = ROOT / "scripts" / "lib.sh"
        subprocess.run(["bash", "-c", f'source "{lib}"; PG_DIR="$1"; PG_BIN="$(postgres_bindir)"; '
                                      'if is_root; then PG_AS=(runuser -u postgres --); fi; stop_postgres',
                        "_", str(self.dir / "pg")], check=False)
        shutil.rmtree(self.dir, ignore_errors=True)


# --- data ---------------------------------------------------------------------------------------

def reset_schema(db, allowed):
    import sqlalchemy as sa

    inspector = sa.inspect(db.engine)
    if "work_items" in inspector.get_table_names() and not allowed:
        with db.engine.connect() as conn:
            if conn.scalar(sa.text("SELECT count(*) FROM work_items")):
                sys.exit("the database has work items; pass --reset to drop every table and start again")
    db.drop_all()
    db.create_all()


def make_people(session):
    """10 teams, 20 executives each, a supervisor per team, an admin; one default policy."""
    import sqlalchemy as sa
    from werkzeug.security import generate_password_hash

    from queue_app.models import SlaPolicy, Team, User, team_members

    teams = [Team(name=f"Team {n:02d}", work_types=[TYPES[n % len(TYPES)]], auto_assign="manual")
             for n in range(TEAMS)]
    teams[0].auto_assign = "round_robin"
    session.add_all(teams)
    session.add(SlaPolicy(name="Default", first_response_minutes=240, resolution_minutes=2880))
    session.flush()
    hashed = generate_password_hash(PASSWORD)
    people = []
    for n in range(EXECUTIVES):
        people.append(User(email=f"exec{n:03d}@bench.example.com", name=f"Executive {n:03d}", password_hash=hashed,
                           role="executive", capacity=CAPACITY, skills=list(TYPES)))
    for n in range(TEAMS):
        people.append(User(email=f"sup{n:02d}@bench.example.com", name=f"Supervisor {n:02d}", password_hash=hashed,
                           role="supervisor"))
    people.append(User(email="admin@bench.example.com", name="Admin", password_hash=hashed, role="admin"))
    session.add_all(people)
    session.flush()
    per_team = EXECUTIVES // TEAMS
    members = [{"team_id": teams[n // per_team].id, "user_id": people[n].id} for n in range(EXECUTIVES)]
    members += [{"team_id": teams[n].id, "user_id": people[EXECUTIVES + n].id} for n in range(TEAMS)]
    session.execute(sa.insert(team_members), members)
    session.commit()
    execs = {team.id: [p.id for p in people[i * per_team:(i + 1) * per_team]] for i, team in enumerate(teams)}
    emails = {p.id: p.email for p in people}
    return [team.id for team in teams], execs, emails


ITEM_COLUMNS = ("id", "ref", "type", "status", "priority", "source", "subject", "description", "team_id",
                "assignee_id", "requester_email", "sla_policy_id", "first_response_due", "resolution_due",
                "sla_next_due", "first_responded_at", "sla_state", "sla_version", "sla_paused_minutes",
                "first_response_stage", "resolution_stage", "escalation_level", "needs_attention", "created_at",
                "updated_at", "last_activity_at", "resolved_at", "closed_at", "version")
EVENT_COLUMNS = ("id", "work_item_id", "kind", "actor_label", "at", "data")


def generate(count, teams, execs, emails, policy_id, now, seed=7):
    """Yield (item row, event row or None) in id order; see the module docstring for the shape."""
    rng = random.Random(seed)
    start = now - timedelta(days=DAYS)
    span = (now - start).total_seconds()
    team_ids = list(teams)
    for n in range(1, count + 1):
        created = start + timedelta(seconds=span * (n - 0.5) / count)
        age = (now - created).total_seconds() / 86400
        p_open = 0.6 if age < 2 else 0.3 if age < 7 else 0.1 if age < 14 else 0.005
        team_id = team_ids[n % TEAMS]
        fr_due, res_due = created + FIRST_RESPONSE, created + RESOLUTION
        if rng.random() < p_open:
            status = rng.choices(("new", "open", "pending_customer"), (3, 6, 1))[0]
            assignee = rng.choice(execs[team_id]) if rng.random() < 0.7 else None
            responded = created + timedelta(minutes=rng.uniform(5, 300)) if rng.random() < 0.5 else None
            if responded is not None and responded > now:
                responded = None
            resolved = closed = None
            if status == "pending_customer":
                state, next_due = "paused", None
            else:
                next_due = res_due if responded else fr_due
                state = "breached" if next_due <= now else ("at_risk" if next_due - now < timedelta(hours=1)
                                                            else "on_track")
        else:
            status = "resolved" if rng.random() < 0.8 else "closed"
            assignee = rng.choice(execs[team_id])
            responded = created + timedelta(minutes=rng.uniform(5, 480))
            resolved = min(now, created + timedelta(hours=rng.uniform(1, 96)))
            responded = min(responded, resolved)
            closed = resolved + timedelta(hours=24) if status == "closed" and resolved + timedelta(hours=24) < now \
                else None
            if status == "closed" and closed is None:
                status = "resolved"
            state, next_due = ("met" if resolved <= res_due else "breached"), None
        changed = closed or resolved or responded or created
        item = (n, f"BO-{n:06d}", TYPES[n % len(TYPES)], status, PRIORITIES[n % len(PRIORITIES)], "email",
                f"Bench item {n}", "", team_id, assignee, f"customer{n % 5000}@example.com", policy_id, fr_due,
                res_due, next_due, responded, state, 1, 0.0, 0, 0, 0, False, created, changed, changed, resolved,
                closed, 1)
        event = None
        if assignee is not None:
            event = (n, n, "assigned", "bench", created + timedelta(minutes=1),
                     {"from": None, "to": emails[assignee]})
        yield item, event
    # A spike of unassigned work in one team (index 3), so bulk assignment has 500 open items to move.
    for k in range(SPIKE):
        n = count + 1 + k
        created = now - timedelta(hours=24) + timedelta(seconds=k)
        yield (n, f"BO-{n:06d}", "general", "new", "normal", "email", f"Spike item {k}", "", team_ids[3], None,
               "spike@example.com", policy_id, created + FIRST_RESPONSE, created + RESOLUTION,
               created + FIRST_RESPONSE, None, "on_track" if created + FIRST_RESPONSE > now else "breached", 1, 0.0,
               0, 0, 0, False, created, created, created, None, None, 1), None


def settle_visibility(cursor, tables, attempts=10):
    """VACUUM again until the tables' pages are (nearly) all marked all-visible, as on a settled
    production table. A transaction that was running during the first VACUUM (an autoanalyze of
    another table, say) can keep it from marking them, and index-only scans then read the
    table for every row."""
    for table in tables:
        for _ in range(attempts):
            cursor.execute("SELECT relallvisible, relpages FROM pg_class WHERE relname = %s", (table,))
            visible, pages = cursor.fetchone()
            if pages == 0 or visible >= 0.99 * pages:
                break
            log(f"{table}: {visible:,} of {pages:,} pages all-visible; VACUUM again")
            time.sleep(1)
            cursor.execute(f"VACUUM {table}")
        cursor.execute("SELECT relallvisible, relpages FROM pg_class WHERE relname = %s", (table,))
        visible, pages = cursor.fetchone()
        log(f"{table}: {visible:,} of {pages:,} pages all-visible")


def load_postgres(db, rows):
    """COPY the rows in (the fast path on PostgreSQL), then move the id sequences past them."""
    from psycopg.types.json import Json

    raw = db.engine.raw_connection()
    try:
        cursor = raw.driver_connection.cursor()
        # No autovacuum/autoanalyze during the load: one started meanwhile holds a snapshot older
        # than the COPY, and the VACUUM below then leaves pages not all-visible (index-only scans
        # would read the table), differently from run to run. Autovacuum is back on afterwards.
        for table in ("work_items", "events"):
            cursor.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = off)")
        raw.driver_connection.commit()
        items = f"COPY work_items ({', '.join(ITEM_COLUMNS)}) FROM STDIN"
        events = []
        with cursor.copy(items) as copy:
            for item, event in rows:
                copy.write_row(item)
                if event is not None:
                    events.append(event)
        with cursor.copy(f"COPY events ({', '.join(EVENT_COLUMNS)}) FROM STDIN") as copy:
            for event in events:
                copy.write_row(event[:-1] + (Json(event[-1]),))
        for table in ("work_items", "events"):
            cursor.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
        raw.driver_connection.commit()
        raw.driver_connection.autocommit = True
        cursor.execute("VACUUM ANALYZE")  # what autovacuum does after a bulk load: statistics, visibility map
        settle_visibility(cursor, ("work_items", "events"))
        for table in ("work_items", "events"):
            cursor.execute(f"ALTER TABLE {table} RESET (autovacuum_enabled)")
    finally:
        raw.close()


def load_sqlite(db, rows):
    import sqlalchemy as sa

    from queue_app.models import Event, WorkItem

    session = db.session
    items, events = [], []
    for item, event in rows:
        items.append(dict(zip(ITEM_COLUMNS, item)))
        if event is not None:
            events.append(dict(zip(EVENT_COLUMNS, event)))
        if len(items) >= CHUNK:  # events after their items (foreign keys)
            session.execute(sa.insert(WorkItem.__table__), items)
            if events:
                session.execute(sa.insert(Event.__table__), events)
            items, events = [], []
    if items:
        session.execute(sa.insert(WorkItem.__table__), items)
    if events:
        session.execute(sa.insert(Event.__table__), events)
    session.commit()
    session.execute(sa.text("ANALYZE"))
    session.commit()


# --- timing --------------------------------------------------------------------------------------

def timed(db, runs, action):
    """Seconds per run of action(session), each run on a fresh session."""
    out = []
    for _ in range(runs):
        db.session.remove()
        started = time.perf_counter()
        action(db.session)
        out.append(time.perf_counter() - started)
    db.session.remove()
    return out


def bench_board(db, users, now, runs, lines):
    from queue_app.services.assignment import board as assignment_board

    for label, email in (("supervisor of 1 team", "sup03@bench.example.com"), ("admin, all 10 teams",
                                                                              "admin@bench.example.com")):
        def action(session, email=email):
            user = session.scalar(users.select_by_email(email))
            board = assignment_board.board(session, user, now)
            assert board.items and (board.people or board.summary)

        times = timed(db, runs, action)
        lines.append(f"board, {label}: p50 {ms(statistics.median(times))}, p95 {ms(percentile(times, 95))}, "
                     f"max {ms(max(times))} ({runs} runs)")
        log(lines[-1])


def explain_board(db, users, now, lines):
    """EXPLAIN (ANALYZE, BUFFERS) of every query board() runs for the admin, all teams (PostgreSQL):
    the statements are captured while board() runs, then explained one by one."""
    import sqlalchemy as sa

    from queue_app.services.assignment import board as assignment_board

    if db.engine.url.get_backend_name() != "postgresql":
        return
    captured = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT"):
            captured.append((statement, parameters))

    session = db.session
    user = session.scalar(users.select_by_email("admin@bench.example.com"))
    sa.event.listen(db.engine, "before_cursor_execute", capture)
    try:
        assignment_board.board(session, user, now)
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", capture)
    for n, (statement, parameters) in enumerate(captured, 1):
        plan = [row[0] for row in session.connection().exec_driver_sql(
            "EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)]
        first = " ".join(statement.split())[:160]
        log(f"plan of board query {n}, admin: {first}\n  " + "\n  ".join(plan))
        total = next((line.strip() for line in plan if line.startswith("Execution Time")), "")
        lines.append(f"board query {n} (admin): {first[:90]} … {total}")
    db.session.remove()


def explain_daily(db, users, now, lines):
    """EXPLAIN (ANALYZE, BUFFERS) of the "created per day" query, for the admin and one team (PostgreSQL)."""
    from queue_app.models import WorkItem
    from queue_app.services.reporting import reports as reporting_reports

    if db.engine.url.get_backend_name() != "postgresql":
        return
    today = now.date()
    for who, email in (("admin, all teams", "admin@bench.example.com"), ("supervisor, 1 team",
                                                                          "sup03@bench.example.com")):
        session = db.session
        user = session.scalar(users.select_by_email(email))
        scope = reporting_reports.make_scope(session, user, start=today - timedelta(days=DAYS - 1), end=today, today=today)
        compiled = reporting_reports.ranged_per_day_query(WorkItem.created_at, scope).compile(
            session.get_bind(), compile_kwargs={"render_postcompile": True})
        plan = [row[0] for row in session.connection().exec_driver_sql(
            "EXPLAIN (ANALYZE, BUFFERS) " + str(compiled), compiled.params)]
        log(f"plan of created per day, {who}:\n  " + "\n  ".join(plan))
        scans = [line.strip() for line in plan if "Scan" in line or "Heap Fetches" in line or "Execution" in line]
        lines.append(f"plan of created per day, {who}: " + "; ".join(scans))
        db.session.remove()


def bench_board_http(db, app, runs, lines):
    """The board page itself through HTTP (login session, the view, the template, the loads),
    the first page and the page after it (keyset cursor)."""
    import re

    for label, email in (("supervisor of 1 team", "sup03@bench.example.com"),
                         ("admin, all 10 teams", "admin@bench.example.com")):
        client = app.test_client()
        login(client, email)
        first = client.get("/supervisor")
        assert first.status_code == 200, first.status_code
        cursor = re.search(r'href="/supervisor\?after=([^"&]+)"', first.get_data(as_text=True))
        for page, query in (("first page", {}), ("second page", {"after": cursor.group(1)} if cursor else None)):
            if query is None:
                continue
            times = []
            for _ in range(runs):
                db.session.remove()
                started = time.perf_counter()
                response = client.get("/supervisor", query_string=query)
                body = response.get_data()
                times.append(time.perf_counter() - started)
                assert response.status_code == 200 and b'id="unassigned"' in body, response.status_code
            lines.append(f"board page through HTTP, {label}, {page}: p50 {ms(statistics.median(times))}, "
                         f"p95 {ms(percentile(times, 95))}, max {ms(max(times))} ({runs} runs)")
            log(lines[-1])


def bench_reports(db, users, app, now, runs, lines):
    from queue_app.services.reporting import reports as reporting_reports

    today = now.date()
    start = today - timedelta(days=DAYS - 1)
    reports = {
        "SLA compliance by team": lambda s, scope: reporting_reports.sla_compliance(s, scope, now, by="team"),
        "SLA compliance by executive": lambda s, scope: reporting_reports.sla_compliance(s, scope, now, by="executive"),
        "backlog by age, by team": lambda s, scope: reporting_reports.backlog(s, scope, now, by="team"),
        "created vs resolved per day": lambda s, scope: reporting_reports.created_resolved(s, scope),
        # the same figures the way they were computed before (one GROUP BY day per column), timed
        # in the same run so the comparison holds whatever else the machine is doing
        "created vs resolved per day, grouped by day (previous query)": lambda s, scope: (
            reporting_reports._grouped_per_day(s, reporting_reports.WorkItem.created_at, scope),
            reporting_reports._grouped_per_day(s, reporting_reports.WorkItem.resolved_at, scope)),
        "average handling time by type": lambda s, scope: reporting_reports.handling_time(s, scope, by="type"),
        "breaches list (first 101)": lambda s, scope: reporting_reports.breaches(s, scope, now, limit=101),
    }
    for who, email in (("admin, all teams", "admin@bench.example.com"), ("supervisor, 1 team",
                                                                          "sup03@bench.example.com")):
        for name, run in reports.items():
            def action(session, run=run, email=email):
                user = session.scalar(users.select_by_email(email))
                scope = reporting_reports.make_scope(session, user, start=start, end=today, today=today)
                run(session, scope)

            times = timed(db, runs, action)
            lines.append(f"report over 365 days, {who}: {name}: p50 {ms(statistics.median(times))}, "
                         f"max {ms(max(times))} ({runs} runs)")
            log(lines[-1])
    client = app.test_client()
    login(client, "admin@bench.example.com")
    for tab in ("compliance", "backlog", "daily", "handling", "breaches"):
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            response = client.get("/supervisor/reports", query_string={
                "report": tab, "start": start.isoformat(), "end": today.isoformat()})
            times.append(time.perf_counter() - started)
            assert response.status_code == 200, response.status_code
        lines.append(f"reports page, tab {tab} (HTTP, admin, 365 days, chart included): "
                     f"p50 {ms(statistics.median(times))}, max {ms(max(times))} ({runs} runs)")
        log(lines[-1])


def login(client, email):
    import re

    from flask import g

    # The bench runs inside one app context, which the test client's requests reuse; forget the
    # previous client's CSRF token (cached in g) so this client's session gets its own.
    g.pop("csrf_token", None)
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    response = client.post("/login", data={"email": email, "password": PASSWORD, "csrf_token": token})
    assert response.status_code == 302, response.status_code


def bench_bulk(db, users, teams, now, runs, lines):
    import sqlalchemy as sa

    from queue_app.models import User, WorkItem, team_members
    from queue_app.models.work_item import OPEN_STATUSES
    from queue_app.services.assignment import manual as assignment_manual

    team_id = teams[3]
    times = []
    for n in range(runs):
        session = db.session
        sup = session.scalar(users.select_by_email("sup03@bench.example.com"))
        target = session.scalars(sa.select(User).join(team_members, team_members.c.user_id == User.id)
                                 .where(team_members.c.team_id == team_id, User.role == "executive")
                                 .order_by(User.id).offset(n % 20).limit(1)).one()
        ids = session.scalars(sa.select(WorkItem.id).where(WorkItem.team_id == team_id,
                                                           WorkItem.status.in_(OPEN_STATUSES),
                                                           WorkItem.assignee_id.is_distinct_from(target.id))
                              .order_by(WorkItem.id).limit(500)).all()
        started = time.perf_counter()
        items = assignment_manual.items_by_id(session, sup, ids)
        changed = assignment_manual.bulk_assign(session, items, target, actor=sup, now=now)
        session.commit()
        times.append(time.perf_counter() - started)
        assert len(changed) == 500, len(changed)
        db.session.remove()
    lines.append(f"bulk assignment of 500 items (load + check + write + events + notification + commit): "
                 f"p50 {ms(statistics.median(times))}, max {ms(max(times))} ({runs} runs)")
    log(lines[-1])


def bench_arrival(db, teams, now, runs, lines):
    from queue_app.models import Team
    from queue_app.services.items import lifecycle

    times = []
    assigned = 0
    for n in range(runs):
        session = db.session
        team = session.get(Team, teams[0])
        started = time.perf_counter()
        item = lifecycle.create_item(session, actor=None, source="api", type="general", subject=f"arrival {n}",
                                      team=team, require_fields=False, now=now)
        session.commit()
        times.append(time.perf_counter() - started)
        assigned += item.assignee_id is not None
        db.session.remove()
    p50, p95 = ms(statistics.median(times)), ms(percentile(times, 95))
    lines.append(f"arrival with round-robin auto-assignment (create_item + commit): p50 {p50}, p95 {p95} "
                 f"({runs} runs, {assigned} assigned)")
    log(lines[-1])


class Users:
    @staticmethod
    def select_by_email(email):
        import sqlalchemy as sa

        from queue_app.models import User

        return sa.select(User).where(User.email == email)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=None, help="default 100,000 (1,000,000 on PostgreSQL)")
    parser.add_argument("--database-url", help="default: a fresh SQLite file in a temporary directory")
    parser.add_argument("--throwaway-postgres", action="store_true",
                        help="start a private PostgreSQL cluster as scripts/test.sh does, and remove it afterwards")
    parser.add_argument("--postgres-port", type=int, default=None,
                        help="port of the throwaway cluster (default: a free one)")
    parser.add_argument("--reset", action="store_true", help="allow dropping every table of --database-url")
    parser.add_argument("--board-runs", type=int, default=50)
    parser.add_argument("--report-runs", type=int, default=5)
    parser.add_argument("--readme", action="store_true", help="append the figures to bench/README.md")
    parser.add_argument("--only", choices=("all", "board"), default="all",
                        help="board: only the board timings (service, HTTP pages, query plans), not the "
                             "reports, bulk assignment and arrival")
    parser.add_argument("--reuse-data", action="store_true",
                        help="time the data already in --database-url (made by an earlier run) without "
                             "generating it again")
    args = parser.parse_args()
    if args.reuse_data and not args.database_url:
        parser.error("--reuse-data needs --database-url")

    with bench_app(args, "backdesk-bench-") as (app, count):
        from queue_app.extensions import db
        from queue_app.models.base import utcnow

        with app.app_context():
            backend = db.engine.url.get_backend_name()
            log(f"database: {backend}; {count:,} items, {EXECUTIVES} executives in {TEAMS} teams")
            from sqlalchemy import select

            from queue_app.models import SlaPolicy, Team, WorkItem

            if args.reuse_data:
                teams = db.session.scalars(select(Team.id).order_by(Team.name)).all()
                count = db.session.scalar(select(WorkItem.id).order_by(WorkItem.id.desc()).limit(1)) - SPIKE
                db.session.commit()
                generated = "data of an earlier run"
            else:
                reset_schema(db, args.reset or not args.database_url)
                now = utcnow()
                started = time.perf_counter()
                teams, execs, emails = make_people(db.session)
                policy_id = db.session.scalar(select(SlaPolicy.id))
                # End this session's transaction before the load: an open snapshot older than the
                # COPY keeps VACUUM from marking the new pages all-visible, and index-only scans
                # then read the table for every row (not what a settled production table does).
                db.session.commit()
                rows = generate(count, teams, execs, emails, policy_id, now)
                (load_postgres if backend == "postgresql" else load_sqlite)(db, rows)
                generated = f"generated in {time.perf_counter() - started:.0f} s"
            lines = [f"{backend}, {count:,} items over {DAYS} days, {EXECUTIVES} executives in {TEAMS} teams "
                     f"({generated})"]
            log(lines[-1])
            from sqlalchemy import text

            with db.engine.connect() as conn:
                open_items = conn.scalar(text("SELECT count(*) FROM work_items WHERE status IN "
                                              "('new', 'open', 'pending_customer')"))
                events = conn.scalar(text("SELECT count(*) FROM events"))
            lines.append(f"open items: {open_items:,}; events: {events:,}; load average before timing: "
                         f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
            log(lines[-1])
            users = Users()
            now = utcnow()
            bench_board(db, users, now, args.board_runs, lines)
            bench_board_http(db, app, args.board_runs, lines)
            explain_board(db, users, now, lines)
            if args.only == "all":
                bench_reports(db, users, app, now, args.report_runs, lines)
                explain_daily(db, users, now, lines)
                bench_bulk(db, users, teams, now, 5, lines)
                bench_arrival(db, teams, now, 50, lines)
            lines.append(f"load average after timing: {os.getloadavg()[0]:.1f}")
            log(lines[-1])
            db.session.remove()
            db.engine.dispose()
        if args.readme:
            append_readme(lines, count, backend)


@contextmanager
def bench_app(args, prefix):
    """The app on the bench's database, and how many items to generate: a throwaway PostgreSQL
    cluster (--throwaway-postgres), --database-url, or SQLite in a temporary directory, all
    removed afterwards (a given --database-url is left as it is)."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    pg = None
    try:
        pg = ThrowawayPostgres(args.postgres_port) if args.throwaway_postgres else None
        database_url = pg.url if pg else args.database_url or f"sqlite:///{tmp / 'bench.db'}"
        os.environ.update(BACKDESK_ENV="testing", DATABASE_URL=database_url,
                          BACKDESK_INSTANCE_DIR=str(tmp / "instance"))
        from queue_app import create_app

        app = create_app()
        app.config.update(OUTBOX_DELIVER_ON_COMMIT=False, WTF_CSRF_ENABLED=True)
        yield app, args.items or (1_000_000 if database_url.startswith("postgres") else 100_000)
    finally:
        if pg is not None:
            pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def append_readme(lines, count, backend):
    readme = ROOT / "bench" / "README.md"
    existing = readme.read_text(encoding="utf-8") if readme.exists() else ""
    header = "" if "## Supervisor" in existing else (
        "\n## Supervisor: assignment board, reports, bulk assignment (bench/supervisor.py)\n\n"
        "Targets (issue 6, 1,000,000 items on PostgreSQL, 200 executives in 10 teams): board p95 <= 100 ms, "
        "each report over a year <= 500 ms, bulk assignment of 500 items <= 1 s.\n")
    machine = f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}"
    body = [f"\n### {backend}, {count:,} items — {datetime.now(timezone.utc):%Y-%m-%d} ({machine})\n"]
    body += [f"- {line}" for line in lines]
    with readme.open("a", encoding="utf-8") as out:
        out.write(header + "\n".join(body) + "\n")
    log(f"appended to {readme}")


if __name__ == "__main__":
    main()
