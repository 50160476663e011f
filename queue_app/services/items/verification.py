"""The verification workspace: a verifier's verdict per document, the request for a new document,
the new document that brings the item back, a supervisor's override of failed checks, and the
re-verification item opened before a verified document expires.

Invariants:
- Verdicts are appended, never edited: the latest per document is the current one, and each is
  an Event naming the document, the verdict and the reason.
- A rejection names a reason from the team's list (services.checks.settings).
- "Resubmission needed" asks the requester for a new document through the reply path (threaded,
  sent by the mail job after commit) and waits in pending_customer; the next document that
  arrives (by email or upload) after that request puts the item back in the queue, once.
- Resolving as verified with failed mandatory checks is refused by the gate
  (services.items.verdicts); an override covers the failures it names and is an Event.
- A re-verification item is opened by an outbox timer, once per verdict, and only while that
  verdict is still the document's current one.
Like every service: flush, never commit.
"""
from datetime import datetime, time, timedelta, timezone

import sqlalchemy as sa
from flask import current_app

from queue_app.db.outbox import enqueue_after_commit
from queue_app.models import CheckOverride, DocumentVerdict, Event, WorkItem
from queue_app.models.base import utcnow
from queue_app.models.verification import VERDICTS
from queue_app.services import access
from queue_app.services.checks.settings import settings_for
from queue_app.services.errors import Invalid, NotFound, PermissionDenied
from queue_app.services.items import lifecycle, state
from queue_app.services.items.events import record_event
from queue_app.services.items.verdicts import (
    VERIFICATION,
    current_verdicts,
    documents_of,
    failed_checks,
    latest_override,
)

MAX_NOTE = 2000
MAX_OVERRIDE_REASON = 2000
REVERIFY_JOB = "workers.verification.open_reverification"
VERDICT_LABELS = {"verified": "Verified", "rejected": "Rejected", "resubmission_needed": "Resubmission needed"}


class Workspace:
    """What the item page shows: each document with its current verdict, the team's reasons, the
    failed checks and the override that covers them."""

    def __init__(self, session, item):
        self.item = item
        self.documents = documents_of(session, item)
        self.verdicts = current_verdicts(session, item)
        self.reasons = settings_for(session, item.team_id).document_rejection_reasons
        self.failed_checks = failed_checks(session, item) if item.needs_attention else []
        self.override = latest_override(session, item)
        self.waiting_for_document = request_outstanding(session, item)

    @property
    def overridden(self):
        return bool(self.override) and set(self.failed_checks) <= set(self.override.checks)


def workspace(session, item):
    return Workspace(session, item) if item.type == VERIFICATION else None


def _clean(text, name, limit, required=False):
    text = (text or "").strip()
    if required and not text:
        raise Invalid(f"{name} is required", {name: "is required"})
    if len(text) > limit:
        raise Invalid(f"{name} is longer than {limit} characters", {name: f"at most {limit} characters"})
    return text or None


def record_verdict(session, item, attachment_id, *, actor, verdict, reason=None, note=None, now=None,
                   expected_version=None):
    """Append the verifier's verdict on one document of the item; returns the DocumentVerdict."""
    now = now or utcnow()
    access.require_work(actor, item)
    state.check_version(item, expected_version)
    if item.type != VERIFICATION:
        raise Invalid(f"{item.ref} is not a document verification", {"type": "not a document verification"})
    if not item.is_open or item.status == "awaiting_approval":
        raise Invalid(f"{item.ref} is {item.status.replace('_', ' ')}; reopen it before giving a verdict",
                      {"status": item.status})
    if verdict not in VERDICTS:
        raise Invalid(f"unknown verdict {verdict!r}", {"verdict": f"must be one of {', '.join(VERDICTS)}"})
    document = next((d for d in documents_of(session, item) if d.id == attachment_id), None)
    if document is None:
        raise NotFound(f"{item.ref} has no document {attachment_id}")
    reasons = settings_for(session, item.team_id).document_rejection_reasons
    reason = (reason or "").strip() or None
    if verdict == "rejected" and reason not in reasons:
        raise Invalid("choose the reason for the rejection from the team's list", {"reason": "choose a reason"})
    if reason is not None and reason not in reasons:
        raise Invalid("choose a reason from the team's list", {"reason": "not in the team's list"})
    note = _clean(note, "note", MAX_NOTE)
    row = DocumentVerdict(work_item_id=item.id, attachment_id=document.id, verdict=verdict, reason=reason,
                          note=note, decided_by_id=actor.id, decided_at=now,
                          expires_on=item.expires_on if verdict == "verified" else None)
    session.add(row)
    session.flush()
    record_event(session, item, "document_verdict", actor,
                 {"attachment_id": document.id, "filename": document.filename, "verdict": verdict,
                  "reason": reason, "note": note}, now=now)
    state.touch(item, now)
    if verdict == "resubmission_needed":
        _request_new_document(session, item, document, reason, note, actor, now)
    elif verdict == "verified":
        _schedule_reverification(session, item, row)
    session.flush()
    return row


def _request_new_document(session, item, document, reason, note, actor, now):
    """The templated request, sent as a reply on the item's thread, and the wait for the customer."""
    if not item.requester_email:
        raise Invalid(f"{item.ref} has no requester email to ask for a new document",
                      {"requester_email": "missing"})
    body = current_app.jinja_env.get_template("email/resubmission_request.txt").render(
        item=item, document=document, reason=reason, note=note)
    message = lifecycle.add_reply(session, item, actor=actor, body=body, now=now)
    record_event(session, item, "resubmission_requested", actor,
                 {"attachment_id": document.id, "filename": document.filename, "message_id": message.id,
                  "reason": reason}, now=now)
    if item.status != "pending_customer":
        state.change_status(session, item, "pending_customer", actor=actor, now=now, check_access=False,
                            comment=f"waiting for a new copy of {document.filename}")


def request_outstanding(session, item):
    """True while a request for a new document has had no document in answer."""
    asked = session.scalar(sa.select(sa.func.max(Event.id)).where(Event.work_item_id == item.id,
                                                                 Event.kind == "resubmission_requested"))
    if asked is None:
        return False
    answered = session.scalar(sa.select(sa.func.max(Event.id)).where(Event.work_item_id == item.id,
                                                                    Event.kind == "new_document_received"))
    return answered is None or answered < asked


def on_new_documents(session, item, filenames, *, actor, now=None):
    """A file reached the item (email or upload): if it answers a request for a new document, the
    item goes back in the queue with "new document received". Returns True if it did."""
    if item.type != VERIFICATION or not filenames or not request_outstanding(session, item):
        return False
    now = now or utcnow()
    record_event(session, item, "new_document_received", actor, {"filenames": list(filenames)}, now=now)
    if item.status == "pending_customer":
        state.change_status(session, item, "open", actor=actor, now=now, check_access=False,
                            comment="new document received")
    return True


def override_failed_checks(session, item, *, actor, reason, now=None, expected_version=None):
    """A supervisor of the item's team lets it be resolved as verified despite its failed checks."""
    now = now or utcnow()
    access.require_view(actor, item)
    if not access.manages_team(actor, item.team_id):
        raise PermissionDenied("only a supervisor of the team can override failed checks")
    state.check_version(item, expected_version)
    if item.type != VERIFICATION:
        raise Invalid(f"{item.ref} is not a document verification", {"type": "not a document verification"})
    reason = _clean(reason, "reason", MAX_OVERRIDE_REASON, required=True)
    failed = failed_checks(session, item)
    if not item.needs_attention or not failed:
        raise Invalid(f"{item.ref} has no failed mandatory check to override", {"checks": "none failed"})
    override = CheckOverride(work_item_id=item.id, checks=failed, reason=reason, decided_by_id=actor.id,
                             decided_at=now)
    session.add(override)
    session.flush()
    record_event(session, item, "checks_overridden", actor, {"checks": failed, "reason": reason}, now=now)
    state.touch(item, now)
    session.flush()
    return override


# --- re-verification before expiry --------------------------------------------------------------

def reverification_due(verdict, days):
    """09:00 UTC, `days` before the document expires (at once if that is past)."""
    day = verdict.expires_on - timedelta(days=days)
    return datetime.combine(day, time(9, 0), tzinfo=timezone.utc)


def _schedule_reverification(session, item, verdict):
    days = settings_for(session, item.team_id).reverification_days
    if days is None or verdict.expires_on is None:
        return
    enqueue_after_commit(session, REVERIFY_JOB, verdict.id, run_at=reverification_due(verdict, days))


def open_reverification(session, verdict_id, now=None):
    """The timer's work: a new document verification item for the same requester and document,
    unless it was opened already or the verdict is no longer the document's current one."""
    now = now or utcnow()
    verdict = session.get(DocumentVerdict, verdict_id, with_for_update=True)
    if verdict is None or verdict.reverification_item_id is not None:
        return None
    item = session.get(WorkItem, verdict.work_item_id)
    if current_verdicts(session, item).get(verdict.attachment_id) is not verdict:
        return None
    kind = (item.document_type or "document").replace("_", " ")
    new = lifecycle.create_item(
        session, actor=None, source="manual", type=VERIFICATION, team=item.team, priority=item.priority,
        subject=f"Re-verify {kind} expiring {verdict.expires_on.isoformat()} (was {item.ref})",
        description=(f"The {kind} verified on {item.ref} expires on {verdict.expires_on.isoformat()}. "
                     f"Ask {item.requester_name or item.requester_email or 'the customer'} for a current one."),
        fields={"document_type": item.document_type}, requester_email=item.requester_email,
        requester_name=item.requester_name, require_fields=False, now=now)
    verdict.reverification_item_id = new.id
    record_event(session, new, "reverification_of", "scheduler",
                 {"ref": item.ref, "verdict_id": verdict.id, "expires_on": verdict.expires_on.isoformat()}, now=now)
    record_event(session, item, "reverification_opened", "scheduler", {"ref": new.ref}, now=now)
    session.flush()
    return new
