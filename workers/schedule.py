"""Periodic work as data, run by `flask scheduler` in a plain loop, by the leader only.

Any number of schedulers may run (workers.leadership); the one holding the lease runs the
tasks, the others stand by and take over within 15 s when it dies.
Each entry runs in the scheduler process itself (it only moves rows to RQ, or hands over again
what RQ lost) or is enqueued with a deterministic job id, so two schedulers cannot double it up.
"""
import logging
import time

from queue_app.extensions import db
from workers.leadership import SchedulerLease

log = logging.getLogger(__name__)

# A commit hands its own jobs over at once; the relay takes rows only once they are older than this.
RELAY_SETTLE_SECONDS = 2.0


def _relay():
    from workers.relay import relay_pending

    sent = relay_pending(db.session, settle=RELAY_SETTLE_SECONDS)
    if sent:
        log.info("outbox relay: enqueued %d pending jobs", sent)


def _reconcile():
    from redis.exceptions import RedisError

    from workers.reconciler import HANDED_OVER, reconcile

    try:
        counts = reconcile(db.session)
    except RedisError as exc:
        db.session.rollback()
        log.warning("outbox reconciler: Redis unavailable (%s); trying again next interval", exc)
        return
    if counts.get(HANDED_OVER):
        log.warning("outbox reconciler: handed over again %d jobs Redis had lost (%s)", counts[HANDED_OVER],
                    ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))


def _sla_sweep():
    from workers.sla_timers import sweep

    taken = sweep()
    if taken:
        log.info("SLA sweep: took %d overdue steps the timers had not", taken)


def _intake_sweep():
    from workers.intake_jobs import sweep

    waiting = sweep()
    if waiting:
        log.info("intake sweep: %d stored emails waited; the filer is queued", waiting)


def _approval_sweep():
    from workers.approvals import sweep

    done = sweep()
    if done:
        log.info("approval sweep: reminded the checkers of %d approvals the timers had not", done)


def _audit_seal(attempts=20):
    """Seal the audit trail's entries the after-commit seals left (a writer was in flight then)."""
    from queue_app.services.audit import chain

    total = 0
    for _ in range(attempts):
        sealed = chain.seal(db.session)
        db.session.commit()
        if sealed.busy:
            time.sleep(0.05)  # PostgreSQL: a writer is in flight; it is about to commit
            continue
        total += sealed.count
        if sealed.count < chain.SEAL_BATCH:
            break
    if total:
        log.info("audit seal: sealed %d entries", total)


def _auto_close():
    """Close resolved items past their team's auto-close days, one commit each: an item someone
    reopens meanwhile is a conflict for that item alone, left for the next run."""
    from sqlalchemy.orm.exc import StaleDataError

    from queue_app.services.items import housekeeping

    closed = 0
    for item_id in housekeeping.due_for_closing(db.session):
        try:
            closed += housekeeping.close_if_due(db.session, item_id)
            db.session.commit()
        except StaleDataError:
            db.session.rollback()
    if closed:
        log.info("auto-close: closed %d resolved items", closed)


def _notification_digests():
    from queue_app.services.people import notifications

    queued = notifications.enqueue_digests(db.session)
    db.session.commit()
    if queued:
        log.info("notification digests: %d to send", queued)


def _imap_poll():
    from workers.intake_poll import enqueue_polls

    enqueue_polls()  # one RQ job per active IMAP mailbox; nothing at all when there is none


# (name, config key holding its interval in seconds, function)
PERIODIC = [
    ("outbox-relay", "OUTBOX_RELAY_SECONDS", _relay),
    ("outbox-reconcile", "OUTBOX_RECONCILE_SECONDS", _reconcile),
    ("sla-sweep", "SLA_SWEEP_SECONDS", _sla_sweep),
    ("intake-sweep", "SLA_SWEEP_SECONDS", _intake_sweep),
    ("approval-sweep", "SLA_SWEEP_SECONDS", _approval_sweep),
    ("imap-poll", "INTAKE_POLL_SECONDS", _imap_poll),
    ("audit-seal", "AUDIT_SEAL_SECONDS", _audit_seal),
    ("auto-close", "AUTO_CLOSE_SECONDS", _auto_close),
    ("notification-digests", "NOTIFICATION_DIGEST_SECONDS", _notification_digests),
]


def run_forever(app, stop=lambda: False, tick=0.5, lease=None):
    """Run the tasks that are due while we hold the lease; release it on the way out.

    The lease is checked (and renewed or retried when due) before every task, so a leader that
    loses it stops before its next task; one cut off from Redis stops at its next renewal,
    before its key expires for the others, and while nobody reaches Redis nobody leads. Two
    schedulers overlap only when one task (or a stalled process) outlasts the TTL: a standby
    takes over while the old leader finishes it. That does no harm, as every task is idempotent:
    - outbox relay: each row is enqueued with the unique job id `outbox-<id>`, so RQ refuses a
      second copy (DuplicateJobError);
    - SLA sweep: each ladder step is claimed under the unique constraint uq_sla_escalations_step,
      so a step is taken once whoever gets there first;
    - intake sweep: it only queues the filer, and filers take turns under the filing lock
      (db.filing_lock), each filing what is still `received`;
    - IMAP polls: enqueued with the deterministic job id `imap-poll-<mailbox id>`.
    """
    last_run = {}
    with app.app_context():
        lease = lease or SchedulerLease.for_app(app)
        try:
            while not stop():
                if not lease.keep():
                    last_run.clear()  # a new leader runs every task at once
                for name, interval_key, func in PERIODIC:
                    if not lease.keep():
                        break
                    every = app.config[interval_key]
                    now = time.monotonic()
                    if now - last_run.get(name, -every) >= every:
                        last_run[name] = now
                        try:
                            func()
                        except Exception:
                            db.session.rollback()
                            log.exception("periodic task %s failed; it runs again in %ss", name, every)
                        finally:
                            db.session.remove()
                time.sleep(tick)
        finally:
            lease.release()
