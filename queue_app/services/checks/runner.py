"""Automated checks: running an item's checks, storing the results, and what they mean for the item.

The checks themselves live in services/checks/rules (a registry per work type).

Invariants:
- One result per (item, check, run). An automatic run is keyed by the item version it
  found ("v<version>"), a re-run someone asked for by its own key, so a re-delivered or
  retried job stores nothing twice while a re-run always runs afresh.
- Every stored result is also a "check_result" Event by the worker.
- A check raising TransientCheckError is not stored: the error goes up and RQ retries the
  job with backoff; on the job's last attempt it is stored as `error`. Database errors
  always go up (nothing could be stored anyway). Any other exception is a bug in the check
  and is stored as `error`, so one broken check never hides the others.
- `needs_attention` is true exactly when the latest result of a mandatory check of the
  item's type failed. It is written without bumping the item's version, so a worker never
  turns a person's edit into a conflict; raising or clearing it is an Event.
- Jobs are recorded with dispatch.enqueue_after_commit: they reach RQ only after the commit.
"""
import logging
import uuid
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.exc import StaleDataError

from queue_app.db.outbox import enqueue_after_commit
from queue_app.models import CheckResult, WorkItem
from queue_app.models.base import utcnow
from queue_app.services import access
from queue_app.services.checks.rules import (
    CHECKS,
    CHECKS_BY_TYPE,
    CheckContext,
    CheckOutcome,
    TransientCheckError,
)
from queue_app.services.items.events import record_event

log = logging.getLogger(__name__)
RUN_JOB = "workers.checks.run_checks"
# Raised through to the job (and so retried by RQ), never stored as a result.
DATABASE_ERRORS = (sa.exc.OperationalError, sa.exc.InterfaceError, StaleDataError)

__all__ = ["CHECKS", "CHECKS_BY_TYPE", "CheckOutcome", "TransientCheckError", "checks_for", "run_check",
           "run_checks", "enqueue_checks", "request_rerun", "latest_results", "results_for_display"]


def checks_for(item):
    return CHECKS_BY_TYPE.get(item.type, [])


def automatic_run_key(item):
    return f"v{item.version}"


def enqueue_checks(session, item):
    """Run the item's checks after the caller's commit (creation, a field or attachment changed)."""
    enqueue_after_commit(session, RUN_JOB, item.id, item.version)


def request_rerun(session, item, *, actor, now=None):
    """A person asked to run every check again (rates changed, the related item breached, ...)."""
    now = now or utcnow()
    access.require_change(actor, item)
    key = f"rerun-{uuid.uuid4().hex[:16]}"
    names = checks_for(item)
    record_event(session, item, "checks_requested", actor, {"run": key, "checks": names}, now=now)
    enqueue_after_commit(session, RUN_JOB, item.id, item.version, key)
    session.flush()
    return key, names


def _outcome(definition, ctx, final_attempt):
    try:
        return definition.func(ctx)
    except TransientCheckError as exc:
        if not final_attempt:
            raise
        return CheckOutcome("error", f"The check could not run, even after retries: {exc}", {"transient": True})
    except DATABASE_ERRORS:
        raise
    except Exception as exc:  # a bug in a check must not lose the other results; it shows as an error
        log.exception("check %s crashed on item %s", definition.name, ctx.item.id)
        return CheckOutcome("error", f"The check crashed: {exc.__class__.__name__}: {exc}")


def run_checks(session, item_id, names=None, *, run_key=None, now=None, final_attempt=True):
    """Run checks (default: all of the item's type) and store each result once per run.

    Returns the results of this run (including ones stored by an earlier delivery of the
    same job), or None when the item is gone. The caller commits.
    """
    now = now or utcnow()
    item = session.get(WorkItem, item_id)
    if item is None:
        return None
    key = run_key or automatic_run_key(item)
    names = list(checks_for(item) if names is None else names)
    done = {r.name: r for r in session.scalars(
        sa.select(CheckResult).where(CheckResult.work_item_id == item.id, CheckResult.run_key == key,
                                     CheckResult.name.in_(names)))}
    ctx = CheckContext(session, item, now)
    # Every check reads first; the results are written together afterwards (one batched INSERT each for
    # results and events instead of a flush per check), then the effects of the new results are applied.
    outcomes = [(CHECKS[name], _outcome(CHECKS[name], ctx, final_attempt)) for name in names if name not in done]
    stored = {}
    for definition, outcome in outcomes:
        stored[definition.name] = CheckResult(
            work_item_id=item.id, name=definition.name, status=outcome.status, message=outcome.message,
            data=outcome.data, item_version=item.version, run_key=key, created_at=now)
        session.add(stored[definition.name])
        record_event(session, item, "check_result", "worker", {"check": definition.name, "status": outcome.status,
                                                              "message": outcome.message, "run": key}, now=now)
    session.flush()
    for definition, outcome in outcomes:
        if definition.apply is not None and outcome.status != "error":
            definition.apply(ctx, outcome)
    refresh_needs_attention(session, item, now, fresh=None if done else stored)
    return [stored.get(name) or done[name] for name in names]


def run_check(session, item_id, name, now=None, *, run_key=None, final_attempt=True):
    """Run one check and store its result; returns the CheckResult, or None if the item is gone."""
    results = run_checks(session, item_id, [name], run_key=run_key, now=now, final_attempt=final_attempt)
    return results[0] if results else None


def _latest(session, item, names):
    """{name: CheckResult}: the newest result of each named check (one indexed query)."""
    if not names:
        return {}
    newest = (sa.select(sa.func.max(CheckResult.id)).where(CheckResult.work_item_id == item.id,
                                                           CheckResult.name.in_(names))
              .group_by(CheckResult.name))
    return {r.name: r for r in session.scalars(sa.select(CheckResult).where(CheckResult.id.in_(newest)))}


def refresh_needs_attention(session, item, now=None, fresh=None):
    """`fresh`: results of the run just made; when it covers every mandatory check they are the latest."""
    mandatory = [name for name in checks_for(item) if CHECKS[name].mandatory]
    latest = fresh if fresh is not None and all(name in fresh for name in mandatory) else \
        _latest(session, item, mandatory)
    failed = sorted(name for name in mandatory if name in latest and latest[name].status == "failed")
    flag = bool(failed)
    if flag == bool(item.needs_attention):
        return flag
    session.execute(sa.update(WorkItem).where(WorkItem.id == item.id).values(needs_attention=flag)
                    .execution_options(synchronize_session=False))
    set_committed_value(item, "needs_attention", flag)
    record_event(session, item, "attention_needed" if flag else "attention_cleared", "worker",
                 {"failed_checks": failed}, now=now)
    return flag


def latest_results(session, item):
    """The newest result of each check of the item's type, in the order the type lists them."""
    latest = _latest(session, item, checks_for(item))
    return [latest[name] for name in checks_for(item) if name in latest]


@dataclass
class ResultView:
    """One line of the checks panel: the check, whether it is mandatory, its latest result (or None)."""

    name: str
    label: str
    mandatory: bool
    result: CheckResult | None

    @property
    def status(self):
        return self.result.status if self.result else "pending"

    @property
    def related_refs(self):
        return (self.result.data or {}).get("related_refs", []) if self.result else []


def results_for_display(session, item):
    latest = _latest(session, item, checks_for(item))
    return [ResultView(name, CHECKS[name].label, CHECKS[name].mandatory, latest.get(name))
            for name in checks_for(item)]


def is_mandatory(name):
    definition = CHECKS.get(name)
    return definition is not None and definition.mandatory
