"""Two schedulers, one leader: the lease in Redis (workers.leadership) and a takeover end to end.

The lease tests use SchedulerLease objects in this process on the tests' own Redis database
(short TTLs, or a clock of the test's own); the end-to-end test starts two real
`flask --app wsgi scheduler` processes with the production lease timings, SIGKILLs the
leader and watches the other take over and run the periodic tasks.
"""
import logging
import socket
import time
from datetime import timedelta

import redis
import sqlalchemy as sa
from rq import Queue

from queue_app.models import OutboxJob, SlaEscalation
from queue_app.models.base import utcnow
from tests.factories import make_policy
from tests.integration.conftest import wait_for
from workers.leadership import LEASE_SECONDS, SCHEDULER_LEASE_KEY, STANDBY_RETRY_EVERY, SchedulerLease

TAKEOVER_LIMIT = 15  # seconds, from the leader's SIGKILL to a standby holding the lease


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def short_lease(conn, **options):
    options = {"ttl": 0.5, "renew_every": 0.1, "retry_every": 0.1, **options}
    return SchedulerLease(conn, **options)


def holder(conn):
    value = conn.get(SCHEDULER_LEASE_KEY)
    return value.decode() if value is not None else None


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the lease -------------------------------------------------------------------------

def test_only_one_acquires_and_the_holder_renews(rconn, caplog):
    caplog.set_level(logging.INFO, logger="workers.leadership")
    first, second = short_lease(rconn, ttl=5), short_lease(rconn, ttl=5)
    assert first.token != second.token

    assert first.acquire() is True
    assert second.acquire() is False
    assert (first.held, second.held) == (True, False)
    assert holder(rconn) == first.token

    rconn.pexpire(SCHEDULER_LEASE_KEY, 1000)
    assert first.renew() is True
    assert rconn.pttl(SCHEDULER_LEASE_KEY) > 4000  # a whole TTL again
    assert first.acquire() is True  # still ours: taking it again just extends it
    assert second.renew() is False and holder(rconn) == first.token

    log = caplog.text
    assert f"scheduler pid {first.pid}: acquired the leader lease as {first.token}" in log
    assert f"scheduler pid {second.pid}: standing by: the leader is {first.token}" in log
    assert log.count("acquired the leader lease") == 1


def test_after_the_holders_key_expires_the_other_acquires_and_the_old_holder_has_lost_it(rconn, caplog):
    caplog.set_level(logging.INFO, logger="workers.leadership")
    first, second = short_lease(rconn), short_lease(rconn, ttl=5)  # only the first one's key is to expire
    assert first.acquire() and not second.acquire()

    wait_for(lambda: not rconn.exists(SCHEDULER_LEASE_KEY), 3, "the unrenewed lease to expire")
    assert not first.held  # it stopped counting itself leader before Redis let the key go
    assert second.acquire() is True
    assert holder(rconn) == second.token

    assert first.renew() is False  # compare-and-set: the key is someone else's now
    assert not first.keep()
    assert holder(rconn) == second.token and second.held
    assert f"scheduler pid {first.pid}: lost the leader lease: the leader is {second.token}" in caplog.text


def test_a_holder_whose_key_was_taken_cannot_renew_nor_release_it(rconn, caplog):
    caplog.set_level(logging.INFO, logger="workers.leadership")
    lease = short_lease(rconn, ttl=5)
    assert lease.acquire()
    rconn.set(SCHEDULER_LEASE_KEY, "other-host:4242:cafe", px=5000)  # e.g. after a stall past the TTL

    assert lease.renew() is False
    assert not lease.held and not lease.keep()
    assert "lost the leader lease: the leader is other-host:4242:cafe" in caplog.text
    assert lease.release() is False
    assert holder(rconn) == "other-host:4242:cafe"


def test_keep_renews_well_before_expiry_and_standbys_retry_on_their_own_interval(rconn, caplog):
    """The production timings (TTL 10 s, renew every 3 s, retry every 2 s) on a clock of the test's own."""
    caplog.set_level(logging.INFO, logger="workers.leadership")
    clock = Clock()
    leader, standby = SchedulerLease(rconn, clock=clock), SchedulerLease(rconn, clock=clock)
    assert leader.keep() and not standby.keep()

    rconn.pexpire(SCHEDULER_LEASE_KEY, 5000)
    clock.now += 2.5
    assert leader.keep() and rconn.pttl(SCHEDULER_LEASE_KEY) <= 5000  # not due yet: Redis is not asked
    clock.now += 0.5
    assert leader.keep() and rconn.pttl(SCHEDULER_LEASE_KEY) > 9000  # renewed, 7 s before it would expire
    assert not standby.keep()  # its next try (2 s after the first) finds the leader still there

    rconn.delete(SCHEDULER_LEASE_KEY)  # as if the leader had died and its key expired
    clock.now += 1.5
    assert not standby.keep() and not rconn.exists(SCHEDULER_LEASE_KEY)  # 1.5 s after its last try: waits
    clock.now += 0.5
    assert standby.keep() and holder(rconn) == standby.token  # 2 s: it tries and leads

    clock.now += 1
    assert not leader.keep()  # its next renewal (3 s after the last) finds the other's token: it stops
    assert standby.keep()
    assert f"scheduler pid {leader.pid}: lost the leader lease: the leader is {standby.token}" in caplog.text


def test_a_leader_cut_off_from_redis_stops_at_once_and_leads_again_when_it_is_back(worker_redis_url, rconn, caplog):
    caplog.set_level(logging.INFO, logger="workers.leadership")
    conn = redis.Redis.from_url(worker_redis_url, socket_connect_timeout=1, socket_timeout=2)
    lease = short_lease(conn, ttl=5, renew_every=0.1)
    assert lease.keep()
    port = conn.connection_pool.connection_kwargs["port"]

    conn.connection_pool.connection_kwargs["port"] = closed_port()  # Redis unreachable from now on
    conn.connection_pool.reset()
    time.sleep(0.15)
    assert lease.keep() is False
    assert "lost the leader lease: Redis unreachable (ConnectionError" in caplog.text
    assert holder(rconn) == lease.token  # nobody else took it meanwhile

    conn.connection_pool.connection_kwargs["port"] = port
    conn.connection_pool.reset()
    time.sleep(0.15)
    assert lease.keep() is True  # the key still holds our token: ours again
    assert lease.release() is True and not rconn.exists(SCHEDULER_LEASE_KEY)
    conn.close()


class ScriptedLease:
    """What keep() answers, call by call; records the release."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.released = False

    def keep(self):
        return self.answers.pop(0)

    def release(self):
        self.released = True


def test_the_loop_runs_tasks_only_while_it_holds_the_lease(app, monkeypatch):
    from workers import schedule

    ran = []
    monkeypatch.setattr(schedule, "PERIODIC", [(name, "SLA_SWEEP_SECONDS", lambda name=name: ran.append(name))
                                               for name in ("relay", "sweep")])
    # Per round: keep() once at the top, then once before each task.
    lease = ScriptedLease([True, True, False,  # leads, runs the relay, loses the lease: no sweep
                           False, False,  # stands by: nothing
                           True, True, True])  # leads again: both at once, though not due by the clock
    rounds = iter(range(3))
    schedule.run_forever(app, stop=lambda: next(rounds, None) is None, tick=0, lease=lease)
    assert ran == ["relay", "relay", "sweep"]
    assert lease.answers == [] and lease.released


# --- two real schedulers ---------------------------------------------------------------

def make_due_item(session, team, executive, make_item):
    """An item whose first-response warning and breach are both due, committed: outbox rows
    (its checks, its SLA timer) wait for the relay and its steps for the sweep."""
    item = make_item(team=team, assignee=executive, now=utcnow() - timedelta(minutes=2))
    session.commit()
    return item.id


def pending_outbox(session, item_id):
    session.expire_all()
    rows = session.scalars(sa.select(OutboxJob).order_by(OutboxJob.id)).all()
    return [row.id for row in rows if row.args and row.args[0] == item_id and row.enqueued_at is None]


def outbox_ids(session, item_id):
    session.expire_all()
    return [row.id for row in session.scalars(sa.select(OutboxJob)).all() if row.args and row.args[0] == item_id]


def steps_taken(session, item_id):
    session.expire_all()
    return session.scalars(sa.select(SlaEscalation).where(SlaEscalation.work_item_id == item_id)
                           .order_by(SlaEscalation.stage)).all()


def leader_pid(rconn):
    token = holder(rconn)
    return int(token.split(":")[1]) if token else None


def test_two_schedulers_one_leads_and_the_other_takes_over_within_15_s_of_a_sigkill(
        session, rconn, procs, make_team, make_user, make_item):
    team = make_team(name="Returns")
    make_user(teams=[team], role="supervisor", email="sup@example.com")
    executive = make_user(teams=[team], email="exec@example.com")
    make_policy(session, name="One minute", first_response_minutes=1, resolution_minutes=600)
    session.commit()

    fast = dict(OUTBOX_RELAY_SECONDS=1, SLA_SWEEP_SECONDS=1)  # the lease keeps its production timings
    schedulers = [procs.flask("scheduler-a", "scheduler", **fast), procs.flask("scheduler-b", "scheduler", **fast)]
    try:
        wait_for(lambda: leader_pid(rconn) and all("scheduler running" in s.output() for s in schedulers), 30,
                 "both schedulers to start and one to lead", procs, schedulers)
        [leader] = [s for s in schedulers if s.pid == leader_pid(rconn)]
        [standby] = [s for s in schedulers if s is not leader]
        token = holder(rconn)
        wait_for(lambda: f"scheduler pid {standby.pid}: standing by: the leader is {token}" in standby.output(), 10,
                 "the other to stand by", procs, schedulers)
        assert f"scheduler pid {leader.pid}: acquired the leader lease as {token}" in leader.output()

        # Only the leader runs the periodic tasks.
        before = make_due_item(session, team, executive, make_item)
        wait_for(lambda: not pending_outbox(session, before) and len(steps_taken(session, before)) == 2
                 and "outbox relay: enqueued" in leader.output() and "SLA sweep: took" in leader.output(), 10,
                 "the leader's relay and sweep", procs, schedulers)
        assert {row.fired_by for row in steps_taken(session, before)} == {"sweep"}
        assert "outbox relay" not in standby.output() and "SLA sweep" not in standby.output()
        assert "acquired the leader lease" not in standby.output()

        leader.kill()  # SIGKILL: no release, the lease has to expire
        killed_at = time.monotonic()
        after = make_due_item(session, team, executive, make_item)
        assert pending_outbox(session, after)  # nobody leads for now
        wait_for(lambda: leader_pid(rconn) == standby.pid, TAKEOVER_LIMIT, "the standby to take over", procs,
                 [standby], interval=0.02)
        takeover = time.monotonic() - killed_at
        print(f"takeover {takeover:.2f}s after the leader's SIGKILL "
              f"(lease {LEASE_SECONDS:g}s, standbys retry every {STANDBY_RETRY_EVERY:g}s)")
        assert takeover < TAKEOVER_LIMIT

        # The new leader runs the periodic tasks at once: the relay hands over what waited, the
        # sweep takes the steps that fell due after the kill.
        wait_for(lambda: not pending_outbox(session, after) and len(steps_taken(session, after)) == 2
                 and "SLA sweep: took" in standby.output(), 10, "the new leader's relay and sweep", procs, [standby])
        assert {row.fired_by for row in steps_taken(session, after)} == {"sweep"}
        assert f"scheduler pid {standby.pid}: acquired the leader lease" in standby.output()
        assert "outbox relay: enqueued" in standby.output()
        queued = set(Queue("checks", connection=rconn).get_job_ids())
        assert {f"outbox-{row_id}" for row_id in outbox_ids(session, after)} & queued

        standby.stop()  # SIGTERM: a clean exit releases the lease
        assert standby.popen.returncode is not None and not rconn.exists(SCHEDULER_LEASE_KEY)
        assert f"scheduler pid {standby.pid}: released the leader lease" in standby.output()
    finally:
        for scheduler in schedulers:
            scheduler.kill()
