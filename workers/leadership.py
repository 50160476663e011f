"""Which `flask scheduler` leads: a lease in Redis, so any number can run and one does the work.

The leader holds the key SCHEDULER_LEASE_KEY (SET NX PX, a TTL of 10 s) and renews it every
3 s with a compare-and-set (a Lua script that extends the key only while it still holds our
token); a clean exit deletes it the same way. Standbys try to take it every 2 s, so after a
leader dies without a word (SIGKILL, a lost host) one of them leads within TTL + 2 s, about 12 s.

Why Redis and not a PostgreSQL advisory lock:
- it works on every database Backdesk runs on (SQLite in development and the tests, too);
- the scheduler's main task, handing outbox jobs to RQ, needs Redis anyway: a scheduler that
  cannot reach Redis could not do it, so it loses nothing by standing by. (While Redis is down
  the sweeps wait as well; the SLA timers live in RQ and stop then too, and the first sweep
  after Redis returns takes whatever fell due meanwhile.)
- the TTL bounds the takeover time by itself. An advisory lock lives as long as its database
  session: behind a transaction-pooling PgBouncer it is not held at all, and a half-open TCP
  connection keeps it until the server's keepalive gives up, minutes rather than seconds.

The lease is renewed from the scheduler loop itself, before each task, not from a thread: a
leader that hangs stops renewing and is replaced like a dead one. A task that runs longer than
the TTL may let a standby take over while it finishes; see workers.schedule for why that
overlap does no harm.
"""
import logging
import os
import socket
import time
import uuid

import redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

SCHEDULER_LEASE_KEY = "backdesk:scheduler:leader"
LEASE_SECONDS = 10.0
RENEW_EVERY = 3.0
STANDBY_RETRY_EVERY = 2.0

# Extend the lease only if it is still ours; delete it only if it is still ours.
_EXTEND_IF_OURS = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE_IF_OURS = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""


def lease_connection(url):
    """A Redis connection of the lease's own with short timeouts (and, from a URL, no retries): a
    renewal that cannot get through in two seconds has failed, and the leader must stop at once."""
    return redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)


class SchedulerLease:
    """The leader's lease. Call `keep()` before each periodic task: it renews or tries to take the
    lease when that is due, logs every change, and says whether this scheduler may run tasks now."""

    def __init__(self, conn, key=SCHEDULER_LEASE_KEY, ttl=LEASE_SECONDS, renew_every=RENEW_EVERY,
                 retry_every=STANDBY_RETRY_EVERY, clock=time.monotonic):
        if not renew_every < ttl:
            raise ValueError("the lease must be renewed before it expires")
        self.conn = conn
        self.key = key
        self.ttl = ttl
        self.renew_every = renew_every
        self.retry_every = retry_every
        self.clock = clock
        self.pid = os.getpid()
        self.token = f"{socket.gethostname()}:{self.pid}:{uuid.uuid4().hex[:8]}"
        self._extend = conn.register_script(_EXTEND_IF_OURS)
        self._release = conn.register_script(_RELEASE_IF_OURS)
        self._valid_until = None  # monotonic instant until which we may act as leader; None: not leader
        self._last_try = None  # when we last asked Redis (to renew or to acquire)
        self._standing_by_for = None  # the holder we last reported standing by for

    @classmethod
    def for_app(cls, app, **options):
        return cls(lease_connection(app.config["REDIS_URL"]), **options)

    @property
    def held(self):
        """Leader now: the last successful claim, counted from before it was sent, is younger than
        the TTL less a tenth (Redis counts it from when it ran the command, a little later)."""
        return self._valid_until is not None and self.clock() < self._valid_until

    def acquire(self):
        """Take the lease if nobody holds it (or it is still ours); True when we hold it."""
        started = self.clock()
        self._last_try = started
        try:
            taken = self.conn.set(self.key, self.token, nx=True, px=self._ttl_ms()) or self._extend_ours()
        except RedisError as exc:
            self._not_leading(f"Redis unreachable ({exc.__class__.__name__}: {exc})")
            return False
        if taken:
            was_leading = self._valid_until is not None
            self._valid_until = started + self.ttl * 0.9
            self._standing_by_for = None
            if not was_leading:
                log.info("scheduler pid %d: acquired the leader lease as %s (ttl %gs); running the periodic tasks",
                         self.pid, self.token, self.ttl)
            return True
        self._not_leading(None)
        return False

    def renew(self):
        """Extend the lease if it is still ours (compare-and-set); False, and logged as lost, if not."""
        started = self.clock()
        self._last_try = started
        try:
            extended = self._extend_ours()
        except RedisError as exc:
            self._not_leading(f"Redis unreachable ({exc.__class__.__name__}: {exc})")
            return False
        if extended:
            self._valid_until = started + self.ttl * 0.9
            return True
        self._not_leading(None)
        return False

    def keep(self):
        """Renew when due if leading, try to take over when due if standing by; True while we lead."""
        now = self.clock()
        if self._valid_until is not None:
            if now - self._last_try >= self.renew_every or now >= self._valid_until:
                self.renew()
        elif self._last_try is None or now - self._last_try >= self.retry_every:
            self.acquire()
        return self.held

    def release(self):
        """On a clean exit: delete the lease if it is still ours, so a standby takes over at its next try."""
        was_leading = self._valid_until is not None
        self._valid_until = None
        try:
            released = self._release(keys=[self.key], args=[self.token])
        except RedisError as exc:
            if was_leading:
                log.warning("scheduler pid %d: could not release the leader lease (%s); it expires within %gs",
                            self.pid, exc, self.ttl)
            return False
        if was_leading and released:
            log.info("scheduler pid %d: released the leader lease", self.pid)
        return bool(released)

    def holder(self):
        """The token of whoever holds the lease (host:pid:nonce), or None."""
        value = self.conn.get(self.key)
        return value.decode() if isinstance(value, bytes) else value

    def _extend_ours(self):
        return bool(self._extend(keys=[self.key], args=[self.token, self._ttl_ms()]))

    def _ttl_ms(self):
        return int(self.ttl * 1000)

    def _not_leading(self, trouble):
        """Stop leading (if we were) and say so once per change: lost, or standing by for whom."""
        was_leading = self._valid_until is not None
        self._valid_until = None
        if trouble is None:
            try:
                holder = self.holder()
            except RedisError as exc:
                holder, trouble = None, f"Redis unreachable ({exc.__class__.__name__}: {exc})"
        else:
            holder = None
        situation = trouble or (f"the leader is {holder}" if holder else
                                "the lease expired before we renewed it" if was_leading else "nobody leads")
        if was_leading:
            log.warning("scheduler pid %d: lost the leader lease: %s; periodic tasks stop until it is ours again",
                        self.pid, situation)
        elif situation != self._standing_by_for:
            log.info("scheduler pid %d: standing by: %s", self.pid, situation)
        self._standing_by_for = situation
