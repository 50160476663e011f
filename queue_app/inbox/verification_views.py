"""The verification workspace's actions on the item page: a verdict per document, and a
supervisor's override of failed checks."""
from flask import flash
from flask_login import login_required

from queue_app.extensions import db
from queue_app.inbox import bp
from queue_app.inbox.forms import OverrideForm, VerdictForm
from queue_app.inbox.item_views import back_to
from queue_app.services.items import lifecycle, verification
from queue_app.web.actions import attempt, flash_form_errors, me


@bp.route("/items/<ref>/documents/<int:attachment_id>/verdict", methods=["POST"])
@login_required
def record_verdict(ref, attachment_id):
    item = lifecycle.get_visible_item(db.session, me(), ref)
    form = VerdictForm()
    if not form.validate_on_submit():
        flash_form_errors(form)
        return back_to(item)
    verdict = form.verdict.data
    done = attempt(lambda: verification.record_verdict(db.session, item, attachment_id, actor=me(), verdict=verdict,
                                                       reason=form.reason.data, note=form.note.data))
    if done and verdict == "resubmission_needed":
        flash(f"Asked {item.requester_email} for a new document; {item.ref} waits for the customer.", "success")
    elif done:
        flash(f"Document marked {verification.VERDICT_LABELS[verdict].lower()}.", "success")
    return back_to(item)


@bp.route("/items/<ref>/checks/override", methods=["POST"])
@login_required
def override_checks(ref):
    item = lifecycle.get_visible_item(db.session, me(), ref)
    form = OverrideForm()
    if not form.validate_on_submit():
        flash_form_errors(form)
        return back_to(item)
    attempt(lambda: verification.override_failed_checks(db.session, item, actor=me(), reason=form.reason.data),
            success="Failed checks overridden: the item may be resolved as verified.", raise_forbidden=True)
    return back_to(item)
