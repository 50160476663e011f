"""Periodic work as data, run by `flask scheduler` in a plain loop.

Each entry runs in the scheduler process itself (it only moves rows to RQ) or is
enqueued with a deterministic job id, so two schedulers cannot double it up.
"""
import logging
import time

from queue_app.extensions import db

log = logging.getLogger(__name__)


def _relay():
    from workers.relay import relay_pending

    sent = relay_pending(db.session)
    if sent:
        log.info("outbox relay: enqueued %d pending jobs", sent)


def _sla_sweep():
    from workers.sla_timers import sweep

    taken = sweep()
    if taken:
        log.info("SLA sweep: took %d overdue steps the timers had not", taken)


def _intake_sweep():
    from workers.intake_jobs import sweep

    done = sweep()
    if done:
        log.info("intake sweep: processed %d stored emails nobody had processed", done)


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


def _imap_poll():
    from workers.intake_poll import enqueue_polls

    enqueue_polls()  # one RQ job per active IMAP mailbox; nothing at all when there is none


# (name, config key holding its interval in seconds, function)
PERIODIC = [
    ("outbox-relay", "OUTBOX_RELAY_SECONDS", _relay),
    ("sla-sweep", "SLA_SWEEP_SECONDS", _sla_sweep),
    ("intake-sweep", "SLA_SWEEP_SECONDS", _intake_sweep),
    ("imap-poll", "INTAKE_POLL_SECONDS", _imap_poll),
    ("audit-seal", "AUDIT_SEAL_SECONDS", _audit_seal),
]


def run_forever(app, stop=lambda: False, tick=0.5):
    last_run = {}
    with app.app_context():
        while not stop():
            now = time.monotonic()
            for name, interval_key, func in PERIODIC:
                every = app.config[interval_key]
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
