#!/usr/bin/env python
"""Executive inbox benchmarks (not run by `make test`): My queue, search and the item page over a
large generated data set, timed through the Flask test client (server time), plus the query plans.
Prints the figures; --readme appends them to bench/README.md.

The issue's targets, for an executive with 200 open items:
  inbox page (My queue + team queue)  p95 <= 50 ms
  search                              p95 <= 150 ms
  item page                           p95 <= 50 ms
on 100,000 items (SQLite) and 1,000,000 items (PostgreSQL) across 200 executives.

Data: the items, people and events of bench/supervisor.py (10 teams of 20 executives, a year of
items, about 1.4% open), reused as they are, plus:
  - 200 open items assigned to exec000@bench.example.com (team 0), counted with the ones the
    generator gave them: due times from 6 h ago to 3 days ahead, 1 in 10 needing attention,
    1 in 8 waiting on the customer;
  - subjects and requester names drawn from a vocabulary, and messages with real text: every
    item has its inbound email (20-60 words), one in three an outbound reply, one in five an
    internal note. Words are drawn from about 2,500 words with a Zipf-like distribution (a
    domain vocabulary of common back-office words first, then a long tail), so some search
    words are common and others rare, as in real mail.
Rows go in with COPY on PostgreSQL (the full-text GIN indexes are built after the load, as a
bulk load would) and executemany on SQLite (the FTS5 triggers index them as they are inserted).

Timed, each run a GET through the test client with exec000 signed in (p50 / p95 / max):
  inbox      GET /                         (My queue, first page, and the team queue)
  inbox      GET /?view=due_today          (a saved view)
  refresh    GET /queue/refresh?stamp=...  (the poll when nothing changed: 204)
  search     GET /search?q=...             (a few realistic queries, in turn)
  item       GET /items/<ref>              (exec000's items, in turn)
The SQL statements of one GET / are counted (none of them per row). Then EXPLAIN (PostgreSQL) /
EXPLAIN QUERY PLAN (SQLite) of the queue, team queue, change stamp and search queries.

  .venv/bin/python bench/inbox.py                                      # SQLite, 100,000 items
  .venv/bin/python bench/inbox.py --throwaway-postgres --readme        # PostgreSQL, 1,000,000 items
  .venv/bin/python bench/inbox.py --database-url postgresql://... --reset
"""
import argparse
import os
import random
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import supervisor as base  # noqa: E402  (bench/supervisor.py: people, items, events, loaders, PostgreSQL)

TARGET_EMAIL = "exec000@bench.example.com"
TARGET_OPEN = 200
MESSAGE_COLUMNS = ("id", "work_item_id", "kind", "from_address", "subject", "body_text", "author_id",
                   "is_automatic", "flagged_for_review", "created_at")
SEARCHES = ("damaged parcel", "refund invoice", "passport expired", "courier tracking label", "warehouse",
            "duplicate charge statement")

DOMAIN_WORDS = """
refund return parcel damaged invoice order payment account balance charge statement card bank transfer
customer delivery courier tracking label warehouse stock item product replacement exchange broken missing
late delayed wrong colour size address postcode passport licence identity document expired scan photo
verification copy signature discrepancy duplicate amount ledger reconciliation credit debit fee interest
escalation complaint manager urgent please thanks hello regards kindly attached receipt number reference
week yesterday today tomorrow morning afternoon evening still again already never received sent shipped
box package inside outside front back screen battery charger cable kettle toaster blender vacuum lamp chair
table sofa cushion curtain mattress shoes jacket dress shirt trousers watch ring necklace bracelet phone
laptop tablet camera headphones speaker printer ink paper subscription renewal cancel cancellation contract
term notice letter email call phone number message reply answer question problem issue error fault
""".split()
SYLLABLES = ("ka", "lo", "mi", "ren", "tor", "vi", "sa", "nel", "qu", "dra", "bo", "fen", "gal", "hu", "jor",
             "pe", "ri", "sto", "ul", "wy", "xe", "zan", "ch", "mar", "tis")
FIRST_NAMES = ("Anna", "Ben", "Carla", "Dev", "Elif", "Femi", "Gita", "Hugo", "Ines", "Jonas", "Kemal", "Lucia",
               "Mateo", "Nora", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tara")
LAST_NAMES = ("Novak", "Okafor", "Schmidt", "Rossi", "Dubois", "Silva", "Kowalski", "Haddad", "Tanaka", "Murphy",
              "Jensen", "Costa", "Ivanova", "Nair", "Garcia", "Fischer", "Moreau", "Khan", "Larsen", "Weber")


def vocabulary(seed=11):
    rng = random.Random(seed)
    words = list(DOMAIN_WORDS)
    seen = set(words)
    while len(words) < 2500:
        word = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4)))
        if word not in seen:
            seen.add(word)
            words.append(word)
    weights = [1 / (rank + 8) ** 1.05 for rank in range(len(words))]
    return words, list(__import__("itertools").accumulate(weights))


class Text:
    def __init__(self, seed=5):
        self.rng = random.Random(seed)
        self.words, self.cum = vocabulary()

    def words_(self, count):
        return self.rng.choices(self.words, cum_weights=self.cum, k=count)

    def subject(self):
        return " ".join(self.words_(self.rng.randint(3, 7))).capitalize()

    def body(self, low=20, high=60):
        words = self.words_(self.rng.randint(low, high))
        return " ".join(words).capitalize() + "."


def rows(count, teams, execs, emails, policy_id, now, target_id):
    """(item, event, [messages]) rows: supervisor.generate's items with text, then the target's open items."""
    text = Text()
    rng = random.Random(3)
    target_open = 0
    message_id = 0
    columns = base.ITEM_COLUMNS
    at = {name: i for i, name in enumerate(columns)}
    last_id = 0

    def messages_for(item):
        nonlocal message_id
        created = item[at["created_at"]]
        who = item[at["requester_email"]]
        out = []
        message_id += 1
        out.append((message_id, item[0], "inbound", who, item[at["subject"]], text.body(), None, False, False,
                    created))
        if item[0] % 3 == 0:
            message_id += 1
            out.append((message_id, item[0], "outbound", None, "Re: " + item[at["subject"]], text.body(15, 40),
                        item[at["assignee_id"]], False, False, created + timedelta(hours=1)))
        if item[0] % 5 == 0:
            message_id += 1
            out.append((message_id, item[0], "note", None, None, text.body(8, 25), item[at["assignee_id"]], False,
                        False, created + timedelta(hours=2)))
        return out

    def dress(item):
        item = list(item)
        item[at["subject"]] = text.subject()
        n = item[0]
        item[at["requester_email"]] = f"{FIRST_NAMES[n % 20].lower()}.{LAST_NAMES[(n // 20) % 20].lower()}" \
                                      f"{n % 997}@customer.example.com"
        return tuple(item)

    for item, event in base.generate(count - TARGET_OPEN - base.SPIKE, teams, execs, emails, policy_id, now):
        item = dress(item)
        last_id = item[0]
        if item[at["assignee_id"]] == target_id and item[at["status"]] in ("new", "open", "pending_customer"):
            target_open += 1
        yield item, event, messages_for(item)
    # The target executive's open items, up to TARGET_OPEN (ids after the generator's).
    team_id = teams[0]
    for k in range(TARGET_OPEN - target_open):
        n = last_id + 1 + k
        created = now - timedelta(hours=rng.uniform(1, 96))
        due = now + timedelta(hours=rng.uniform(-6, 72))
        status = "pending_customer" if k % 8 == 0 else rng.choice(("new", "open"))
        state = "paused" if status == "pending_customer" else ("breached" if due <= now else "on_track")
        item = (n, f"BO-{n:06d}", base.TYPES[n % len(base.TYPES)], status, base.PRIORITIES[n % len(base.PRIORITIES)],
                "email", "", "", team_id, target_id, "", policy_id, created + base.FIRST_RESPONSE,
                created + base.RESOLUTION, None if status == "pending_customer" else due, None, state, 1, 0.0, 0, 0, 0,
                k % 10 == 0, created, created, created, None, None, 1)
        item = dress(item)
        event = (n, n, "assigned", "bench", created + timedelta(minutes=1), {"from": None, "to": TARGET_EMAIL})
        yield item, event, messages_for(item)


def load_postgres(db, data):
    """COPY items, events and messages, then build the search indexes and analyse."""
    from psycopg.types.json import Json

    from queue_app.db import search_index

    raw = db.engine.raw_connection()
    try:
        connection = raw.driver_connection
        cursor = connection.cursor()
        for statement in search_index.drop_statements("postgresql"):
            cursor.execute(statement)
        events, messages = [], 0
        with cursor.copy(f"COPY work_items ({', '.join(base.ITEM_COLUMNS)}) FROM STDIN") as copy:
            spooled = []
            for item, event, item_messages in data:
                copy.write_row(item)
                if event is not None:
                    events.append(event)
                spooled.extend(item_messages)
        with cursor.copy(f"COPY events ({', '.join(base.EVENT_COLUMNS)}) FROM STDIN") as copy:
            for event in events:
                copy.write_row(event[:-1] + (Json(event[-1]),))
        with cursor.copy(f"COPY messages ({', '.join(MESSAGE_COLUMNS)}) FROM STDIN") as copy:
            for message in spooled:
                copy.write_row(message)
                messages += 1
        del spooled
        for table in ("work_items", "events", "messages"):
            cursor.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
        connection.commit()
        started = time.perf_counter()
        cursor.execute("SET maintenance_work_mem = '512MB'")
        for statement in search_index.create_statements("postgresql"):
            cursor.execute(statement)
        connection.commit()
        index_seconds = time.perf_counter() - started
        connection.autocommit = True
        cursor.execute("VACUUM ANALYZE")
    finally:
        raw.close()
    return messages, index_seconds


def load_sqlite(db, data):
    import sqlalchemy as sa

    from queue_app.models import Event, Message, WorkItem

    session = db.session
    items, events, messages, total = [], [], [], 0

    def flush():
        if items:
            session.execute(sa.insert(WorkItem.__table__), items)
        if events:
            session.execute(sa.insert(Event.__table__), events)
        if messages:
            session.execute(sa.insert(Message.__table__), messages)

    for item, event, item_messages in data:
        items.append(dict(zip(base.ITEM_COLUMNS, item)))
        if event is not None:
            events.append(dict(zip(base.EVENT_COLUMNS, event)))
        messages.extend(dict(zip(MESSAGE_COLUMNS, m)) for m in item_messages)
        total += len(item_messages)
        if len(items) >= base.CHUNK:
            flush()
            items, events, messages = [], [], []
    flush()
    session.commit()
    session.execute(sa.text("ANALYZE"))
    session.commit()
    # Fold the bulk load's write-ahead log into the database file, as a running server's
    # checkpoints do, so reads are timed against the database and not a 100 MB WAL.
    session.execute(sa.text("PRAGMA wal_checkpoint(TRUNCATE)"))
    session.commit()
    return total, 0.0


def timed_get(client, runs, url_for_run, expect=200):
    times = []
    for n in range(runs):
        url = url_for_run(n)
        started = time.perf_counter()
        response = client.get(url)
        times.append(time.perf_counter() - started)
        assert response.status_code == expect, (url, response.status_code, response.get_data(as_text=True)[:300])
    return times


def summary(label, times):
    return (f"{label}: p50 {base.ms(statistics.median(times))}, p95 {base.ms(base.percentile(times, 95))}, "
            f"max {base.ms(max(times))} ({len(times)} runs)")


def plans(db, target_email, lines):
    import sqlalchemy as sa

    from queue_app.models import User
    from queue_app.services.assignment import worklists
    from queue_app.services.items import search as items_search
    from queue_app.web import paging

    session = db.session
    user = session.scalar(sa.select(User).where(User.email == target_email))
    my = paging.urgency_order(worklists.my_queue_query(user), attention_first=True).limit(paging.PAGE_SIZE + 1)
    team = paging.urgency_order(worklists.team_queue_query(user)).limit(paging.PAGE_SIZE + 1)
    searched = []
    for text in (SEARCHES[0], SEARCHES[2]):
        queries, params = items_search.search_queries(session, user, text)
        searched += [(f"search {text!r}, first page, items matched on their own fields", queries[0], params),
                     (f"search {text!r}, first page, items with a matching message", queries[1], params)]
    for label, q, p in [("My queue, first page", my, None), ("team queue, first page", team, None)] + searched:
        lines.append(f"plan of {label}:")
        lines.extend("    " + line for line in items_search.explain(session, q, p))
    db.session.remove()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=None, help="default 100,000 (1,000,000 on PostgreSQL)")
    parser.add_argument("--database-url", help="default: a fresh SQLite file in a temporary directory")
    parser.add_argument("--throwaway-postgres", action="store_true",
                        help="start a private PostgreSQL cluster as scripts/test.sh does, and remove it afterwards")
    parser.add_argument("--postgres-port", type=int, default=None,
                        help="port of the throwaway cluster (default: a free one)")
    parser.add_argument("--reset", action="store_true", help="allow dropping every table of --database-url")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--reuse", action="store_true",
                        help="time an already generated --database-url again instead of generating")
    parser.add_argument("--readme", action="store_true", help="append the figures to bench/README.md")
    args = parser.parse_args()

    with base.bench_app(args, "backdesk-bench-inbox-") as (app, count):
        import sqlalchemy as sa

        from queue_app.extensions import db
        from queue_app.models import SlaPolicy, User, WorkItem
        from queue_app.models.base import utcnow
        from queue_app.models.work_item import OPEN_STATUSES

        with app.app_context():
            backend = db.engine.url.get_backend_name()
            base.log(f"database: {backend}; {count:,} items, {base.EXECUTIVES} executives in {base.TEAMS} teams")
            started = time.perf_counter()
            if args.reuse:
                from queue_app.models import Message

                target_id = db.session.scalar(sa.select(User.id).where(User.email == TARGET_EMAIL))
                messages, index_seconds = db.session.scalar(sa.select(sa.func.count()).select_from(Message)), 0
                db.session.remove()
            else:
                base.reset_schema(db, args.reset or not args.database_url)
                now = utcnow()
                teams, execs, emails = base.make_people(db.session)
                policy_id = db.session.scalar(sa.select(SlaPolicy.id))
                target_id = db.session.scalar(sa.select(User.id).where(User.email == TARGET_EMAIL))
                data = rows(count, teams, execs, emails, policy_id, now, target_id)
                messages, index_seconds = (load_postgres if backend == "postgresql" else load_sqlite)(db, data)
            generation = time.perf_counter() - started
            with db.engine.connect() as conn:
                total = conn.scalar(sa.select(sa.func.count()).select_from(WorkItem))
                target_open = conn.scalar(sa.select(sa.func.count()).select_from(WorkItem).where(
                    WorkItem.assignee_id == target_id, WorkItem.status.in_(OPEN_STATUSES)))
            lines = [f"{backend}, {total:,} items, {messages:,} messages, {base.EXECUTIVES} executives in "
                     f"{base.TEAMS} teams; {TARGET_EMAIL} has {target_open} open items "
                     + ("(data generated by an earlier run)" if args.reuse else
                        f"(generated and loaded in {generation:.0f} s"
                        + (f", search indexes built in {index_seconds:.0f} s of it)" if index_seconds else ")"))]
            base.log(lines[-1])
            lines.append(f"load average before timing: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
            base.log(lines[-1])

            client = app.test_client()
            base.login(client, TARGET_EMAIL)
            client.get("/")  # warm-up: templates compiled, caches filled
            refs = [ref for ref, in db.session.execute(
                sa.select(WorkItem.ref).where(WorkItem.assignee_id == target_id,
                                              WorkItem.status.in_(OPEN_STATUSES)).order_by(WorkItem.id).limit(50))]
            db.session.remove()
            statements = []
            listener = lambda conn, cursor, statement, *rest: statements.append(statement)  # noqa: E731
            sa.event.listen(db.engine, "before_cursor_execute", listener)
            home = client.get("/").get_data(as_text=True)
            sa.event.remove(db.engine, "before_cursor_execute", listener)
            lines.append(f"inbox page GET /: {len(statements)} SQL statements")
            base.log(lines[-1])
            import re

            stamp = re.search(r'data-stamp="([^"]+)"', home).group(1)
            for label, make_url, expect in (
                ("inbox page GET / (My queue + team queue)", lambda n: "/", 200),
                ("inbox page GET /?view=due_today", lambda n: "/?view=due_today", 200),
                ("queue refresh poll, nothing changed (204)", lambda n: f"/queue/refresh?stamp={stamp}", 204),
                (f"search GET /search?q=... ({len(SEARCHES)} queries in turn)",
                 lambda n: f"/search?q={SEARCHES[n % len(SEARCHES)].replace(' ', '+')}", 200),
                ("item page GET /items/<ref> (50 of the executive's items in turn)",
                 lambda n: f"/items/{refs[n % len(refs)]}", 200),
            ):
                if "refresh" in label:  # the stamp has the minute in it: take it fresh
                    stamp = re.search(r'data-stamp="([^"]+)"', client.get("/").get_data(as_text=True)).group(1)
                times = timed_get(client, args.runs, make_url, expect)
                lines.append(summary(label, times))
                base.log(lines[-1])
            from queue_app.services.items import search as items_search

            user = db.session.scalar(sa.select(User).where(User.email == TARGET_EMAIL))
            for q in SEARCHES:
                started = time.perf_counter()
                found = items_search.search(db.session, user, q)
                took = time.perf_counter() - started
                lines.append(f"search {q!r}: first page {len(found.items)} items, "
                             f"{'more pages' if found.next_before else 'no more'} ({base.ms(took)})")
                base.log(lines[-1])
            db.session.remove()
            lines.append(f"load average after timing: {os.getloadavg()[0]:.2f}")
            base.log(lines[-1])
            plan_lines = []
            plans(db, TARGET_EMAIL, plan_lines)
            for line in plan_lines:
                base.log(line)
            if args.readme:
                append_readme(lines, plan_lines, backend)


def append_readme(lines, plan_lines, backend):
    path = ROOT / "bench" / "README.md"
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    with path.open("a") as readme:
        readme.write(f"\n#### `bench/inbox.py` on {backend}, {stamp}\n\n```\n")
        readme.write("\n".join(lines + plan_lines) + "\n```\n")


if __name__ == "__main__":
    main()
