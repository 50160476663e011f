"""Queue names in one place, in priority order, and the Redis connection they share."""
import redis
from flask import current_app
from rq import Queue, Retry

QUEUES = ("sla", "checks", "mail_out", "intake", "default")

# Which queue each job goes to, by the job's dotted path (module part).
JOB_QUEUES = {
    "workers.checks": "checks",
    "workers.mail_out": "mail_out",
    "workers.sla_timers": "sla",
    "workers.intake_jobs": "intake",
    "workers.approvals": "sla",  # timers, like the SLA's
    "workers.verification": "sla",
}

JOB_TIMEOUTS = {"sla": 60, "checks": 120, "mail_out": 60, "intake": 300, "default": 180}

# Retries with backoff for transient failures (SMTP down, a locked database), per queue.
RETRY_INTERVALS = {"sla": [1, 5, 15], "checks": [5, 30, 120], "mail_out": [10, 60, 300, 900, 3600], "intake": [10, 60, 300]}


def retry_for(queue_name):
    intervals = RETRY_INTERVALS.get(queue_name)
    return Retry(max=len(intervals), interval=intervals) if intervals else None


def queue_for(job_path):
    module = job_path.rsplit(".", 1)[0]
    return JOB_QUEUES.get(module, "default")


def redis_connection(url=None):
    """The app's Redis connection; short timeouts so a Redis outage fails fast instead of hanging a request."""
    app = current_app._get_current_object() if url is None else None
    if app is not None:
        conn = app.extensions.get("backdesk_redis")
        if conn is None:
            conn = redis.Redis.from_url(app.config["REDIS_URL"], socket_connect_timeout=2, socket_timeout=10,
                                        health_check_interval=30)
            app.extensions["backdesk_redis"] = conn
        return conn
    return redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=10)


def get_queue(name, connection=None):
    if name not in QUEUES:
        raise ValueError(f"unknown queue {name!r}")
    return Queue(name, connection=connection or redis_connection(), default_timeout=JOB_TIMEOUTS[name])
