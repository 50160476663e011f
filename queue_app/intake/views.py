"""File a new request: one form, one service call (the item and the customer's acknowledgement
email), then a confirmation with the reference."""
from flask import flash, redirect, render_template, session, url_for
from flask_login import current_user, login_required

from queue_app.extensions import db
from queue_app.intake import bp
from queue_app.intake.forms import TYPE_LABELS, IntakeForm, input_name
from queue_app.services import access
from queue_app.services.errors import Invalid, NotFound
from queue_app.services.intake import front_office
from queue_app.services.items import lifecycle
from queue_app.services.items.work_types import FIELDS

LAST_SUBMITTED = "intake_last_submitted"


def attach_errors(form, work_type, exc):
    """Put the service's field errors next to the inputs they are about; return what has no input."""
    leftover = []
    for key, problem in exc.fields.items():
        if key.startswith("fields."):
            name = input_name(work_type, key.split(".", 1)[1])
        else:
            name = key
        field = form._fields.get(name)
        if field is not None:
            field.errors = list(field.errors) + [problem[:1].upper() + problem[1:]]
        else:
            leftover.append(f"{key}: {problem}")
    return leftover


@bp.route("/submit", methods=["GET", "POST"])
@login_required
def submit():
    form = IntakeForm()
    if form.validate_on_submit():
        work_type = form.type.data
        try:
            item, uploaded = front_office.file_request_with_files(
                db.session, actor=current_user._get_current_object(), files=form.uploads(), type=work_type,
                subject=form.subject.data, description=form.description.data or "",
                fields=form.field_values(work_type), priority=form.priority.data or None,
                requester_email=form.requester_email.data.strip(),
                requester_name=(form.requester_name.data or "").strip() or None, require_fields=True,
            )
            db.session.commit()
        except Invalid as exc:
            db.session.rollback()
            leftover = attach_errors(form, work_type, exc)
            flash(exc.message[:1].upper() + exc.message[1:] + ("" if not leftover else f" ({'; '.join(leftover)})")
                  + ". Please correct the marked fields.", "error")
        else:
            session[LAST_SUBMITTED] = {"ref": item.ref, "subject": item.subject, "type": item.type,
                                       "team": item.team.name, "priority": item.priority,
                                       "requester_email": item.requester_email,
                                       "files": [a.filename for a in uploaded.added] if uploaded else []}
            for name, reason in (uploaded.refused if uploaded else []):
                flash(f"{name} was not added to {item.ref}: {reason}.", "error")
            return redirect(url_for("intake.submitted", ref=item.ref))
    elif form.is_submitted():
        flash("Please correct the marked fields.", "error")
    if form.is_submitted() and any(f and f.filename for f in (form.files.data or [])):
        flash("Choose the documents again: the browser does not keep chosen files when the form comes back.",
              "info")
    status = 422 if form.is_submitted() else 200
    return render_template("intake/submit.html", form=form, types=FIELDS, type_labels=TYPE_LABELS), status


@bp.route("/submit/<ref>")
@login_required
def submitted(ref):
    """The confirmation. It shows what this browser just filed, so filing for another team reveals nothing more."""
    last = session.get(LAST_SUBMITTED)
    if not last or last.get("ref") != ref:
        return redirect(url_for("intake.submit"))
    try:
        item = lifecycle.get_visible_item(db.session, current_user, ref)
    except NotFound:
        item = None
    return render_template("intake/submitted.html", last=last, item=item, type_labels=TYPE_LABELS,
                           can_view=item is not None and access.can_view(current_user, item))
