"""The commands that run worker code: `flask worker`, `scheduler`, `run-all`, `intake smtp|imap`,
`sla sweep|recalculate` and `outbox relay|reconcile|status`.

`register_cli(app)` adds them to the app's CLI (into its `intake` and `sla` groups), so the
application package never imports the workers; wsgi.py does it through workers.init_app.
"""
import logging
import os
import signal
import subprocess
import sys
import threading
import time

import click
from flask import current_app
from flask.cli import AppGroup, with_appcontext
from sqlalchemy.orm import configure_mappers

from workers.queues import JOB_QUEUES, QUEUES, get_queue, redis_connection

log = logging.getLogger(__name__)


def heartbeat_seconds(lease_seconds):
    """How often a busy worker tells Redis it is alive: several times per lease, so only a worker
    that is really gone stays silent for a whole lease (the reconciler's test for a dead worker)."""
    return max(1, min(30, lease_seconds // 6))


def heartbeat_simple_worker_class():
    """RQ's SimpleWorker, which sends no heartbeat while a job runs (the forking Worker's parent does,
    every job_monitoring_interval), made to keep beating during the job from a thread of its own."""
    from redis.exceptions import RedisError
    from rq import SimpleWorker

    class HeartbeatSimpleWorker(SimpleWorker):
        def execute_job(self, job, queue):
            done = threading.Event()

            def beat():
                while not done.wait(self.job_monitoring_interval):
                    try:
                        self.heartbeat(self.job_monitoring_interval + 60)
                    except RedisError as exc:  # the job goes on; the reconciler may think us gone
                        log.warning("worker %s: heartbeat failed: %s", self.name, exc)

            beater = threading.Thread(target=beat, name=f"heartbeat-{job.id}", daemon=True)
            beater.start()
            try:
                return super().execute_job(job, queue)
            finally:
                done.set()
                beater.join()

    return HeartbeatSimpleWorker


@click.command("worker")
@click.argument("queues", nargs=-1)
@click.option("--burst", is_flag=True, help="Exit when the queues are empty.")
@click.option("--no-fork", "no_fork", is_flag=True,
              help="Run jobs in this process (for the short SLA timer and check jobs: no fork per job).")
@with_appcontext
def worker(queues, burst, no_fork):
    """Run an RQ worker (with RQ's scheduler) on QUEUES, default: all, in priority order."""
    from rq import Worker

    from queue_app.extensions import db

    configure_mappers()  # prepare the ORM once before forking work horses
    preload_job_modules()  # and import the jobs once, not again in every forked work horse
    db.engine.dispose()  # no pooled connection may be shared with the forked work horses
    names = queues or QUEUES
    for name in names:
        if name not in QUEUES:
            raise click.BadParameter(f"unknown queue {name!r}; known: {', '.join(QUEUES)}")
    conn = redis_connection()
    worker_class = heartbeat_simple_worker_class() if no_fork else Worker
    w = worker_class([get_queue(n, connection=conn) for n in names], connection=conn,
                     job_monitoring_interval=heartbeat_seconds(current_app.config["OUTBOX_LEASE_SECONDS"]))
    level = "DEBUG" if current_app.config.get("LOG_LEVEL", "INFO").upper() == "DEBUG" else "WARNING"
    w.work(with_scheduler=True, burst=burst, logging_level=level)  # RQ's per-job lines only when debugging


def preload_job_modules():
    """A forked work horse inherits what its parent imported; importing a job module in each horse costs
    more than most jobs (the checks import pypdf, for one)."""
    import importlib

    for module in JOB_QUEUES:
        importlib.import_module(module)


@click.command("scheduler")
@with_appcontext
def scheduler():
    """Run the periodic tasks (outbox relay and reconciler, sweeps) until interrupted; run two or more: one leads."""
    from workers.schedule import run_forever

    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    click.echo(f"scheduler running (pid {os.getpid()}); the leader runs the periodic tasks, the others stand by")
    try:
        run_forever(current_app._get_current_object(), stop=lambda: bool(stopping))
    except KeyboardInterrupt:
        pass


@click.command("run-all")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--web-workers", default=2, show_default=True, type=int)
def run_all(host, port, web_workers):
    """Start web (gunicorn), worker and scheduler (plus later the SMTP intake); Ctrl-C stops them all."""
    python = sys.executable
    flask = [python, "-m", "flask", "--app", "wsgi"]
    children = {
        "web": [python, "-m", "gunicorn", "-w", str(web_workers), "-b", f"{host}:{port}", "--access-logfile", "-",
                "wsgi:app"],
        "worker": flask + ["worker", "mail_out", "default", "--no-fork"],
        # The filer has a worker of its own, so outgoing mail never holds up filing (and the other
        # way round). Every job runs in its worker process: a fork per job would cost more than
        # most jobs (a mail or a check takes a few milliseconds, a fork about 20).
        "intake-worker": flask + ["worker", "intake", "--no-fork"],
        "checks-worker": flask + ["worker", "checks", "--no-fork"],
        "sla-worker": flask + ["worker", "sla", "--no-fork"],
        "scheduler": flask + ["scheduler"],
    }
    children.update(extra_children(flask))
    procs = {}
    for name, cmd in children.items():
        procs[name] = subprocess.Popen(cmd, env=os.environ.copy())
        click.echo(f"started {name} (pid {procs[name].pid})")
    click.echo(f"\nBackdesk is running at http://{host}:{port}/  (Ctrl-C stops everything)\n")

    def stop_all(*_):
        for proc in procs.values():
            if proc.poll() is None:
                proc.terminate()
        deadline = time.time() + 10
        for proc in procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                proc.kill()

    signal.signal(signal.SIGTERM, lambda *_: (stop_all(), sys.exit(0)))
    try:
        while True:
            for name, proc in procs.items():
                if proc.poll() is not None:
                    click.echo(f"{name} exited with {proc.returncode}; stopping everything", err=True)
                    stop_all()
                    sys.exit(1)
            time.sleep(1)
    except KeyboardInterrupt:
        click.echo("\nstopping...")
        stop_all()


def extra_children(flask):
    """Other long-running parts started by run-all: the SMTP intake server (SMTP_INTAKE_HOST/PORT).

    IMAP mailboxes need no process of their own: the scheduler queues their polls.
    """
    return {"smtp-intake": flask + ["intake", "smtp"]}


# --- worker code behind the application's command groups -------------------------------------

@click.command("smtp")
@click.option("--host", default=None, help="Default: SMTP_INTAKE_HOST.")
@click.option("--port", default=None, type=int, help="Default: SMTP_INTAKE_PORT.")
@with_appcontext
def intake_smtp(host, port):
    """Run the SMTP intake server until interrupted."""
    from workers.smtp_server import serve

    serve(current_app._get_current_object(), host or current_app.config["SMTP_INTAKE_HOST"],
          port or current_app.config["SMTP_INTAKE_PORT"])


@click.command("imap")
@click.option("--once", is_flag=True, help="Poll every mailbox once and exit.")
@with_appcontext
def intake_imap(once):
    """Poll the IMAP mailboxes: fetch unseen messages, store and mark them, then file them."""
    from workers.intake_poll import poll_all, poll_forever

    if once:
        for address, counts in poll_all().items():
            click.echo(f"{address}: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    else:
        poll_forever(current_app._get_current_object())


@click.command("sweep")
@with_appcontext
def sla_sweep():
    """Take every warning, breach and escalation that is due now (the scheduler does this every 30 s)."""
    from workers.sla_timers import sweep

    click.echo(f"{sweep()} SLA steps taken")


@click.command("recalculate")
@with_appcontext
def sla_recalculate():
    """Re-derive the due times of every open item from the current policies and calendars."""
    from workers.sla_timers import recalculate_open_items

    click.echo(f"{recalculate_open_items()} open items changed")


outbox = AppGroup("outbox", help="The outbox: jobs handed to RQ, and handed over again when RQ lost them.")


@outbox.command("relay")
def outbox_relay():
    """Enqueue every pending job now (the scheduler does it every few seconds)."""
    from workers.relay import pending_count, relay_pending

    sent = relay_pending()
    click.echo(f"enqueued {sent} jobs; {pending_count()} still pending")


@outbox.command("reconcile")
def outbox_reconcile():
    """Hand over again the jobs Redis lost (the scheduler does it every OUTBOX_RECONCILE_SECONDS)."""
    from workers.reconciler import reconcile

    counts = reconcile()
    click.echo(", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "nothing in flight")


@outbox.command("status")
def outbox_status():
    """Count the jobs not yet handed to RQ."""
    from workers.relay import pending_count

    click.echo(f"{pending_count()} jobs pending")


def register_cli(app):
    """Add the worker commands to the app's CLI; `intake` and `sla` are the app's own groups."""
    for command in (worker, scheduler, run_all, outbox):
        app.cli.add_command(command)
    for group, commands in (("intake", (intake_smtp, intake_imap)), ("sla", (sla_sweep, sla_recalculate))):
        for command in commands:
            app.cli.commands[group].add_command(command)
