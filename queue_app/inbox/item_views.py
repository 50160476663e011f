"""The item page and what an executive does on it: reply, note, status, fields, classification,
approval, checks, attachments. Each post makes one service call, commits and redirects."""
import re
import unicodedata
from urllib.parse import quote

import sqlalchemy as sa
from flask import abort, flash, make_response, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy.orm import selectinload

from queue_app.auth.views import safe_next
from queue_app.extensions import db
from queue_app.inbox import bp
from queue_app.inbox.forms import ClassifyForm, DecisionForm, FieldsForm, NoteForm, ReplyForm, RerunForm, StatusForm
from queue_app.inbox.views import attempt, flash_form_errors, me
from queue_app.models import Attachment, Event, Message, Team
from queue_app.services import access, approvals, checks, work_items, work_types
from queue_app.services.errors import PermissionDenied

# Events that are steps of the SLA ladder, shown on the item page's SLA panel.
LADDER_EVENTS = ("sla_warning", "sla_breached", "escalated")


def _may_work(item):
    try:
        access.require_work(current_user, item)
    except PermissionDenied:
        return False
    return True


@bp.route("/items/<ref>")
@login_required
def item(ref):
    item = work_items.get_visible_item(db.session, me(), ref)
    events = db.session.scalars(sa.select(Event).where(Event.work_item_id == item.id).order_by(Event.id)).all()
    approval = approvals.pending_approval(db.session, item)
    manages = access.manages_team(current_user, item.team_id)
    check_views = checks.results_for_display(db.session, item)
    may_work = _may_work(item)
    members = [u for u in item.team.members if u.is_active] if manages else []
    teams = db.session.scalars(sa.select(Team).order_by(Team.name)).all() if manages else []
    return render_template(
        "inbox/item.html", item=item, specs=work_types.FIELDS[item.type], fields=work_types.fields_of(item),
        checks=check_views, failed_mandatory=[c for c in check_views if c.mandatory and c.status == "failed"],
        messages=thread_of(item), events=events,
        approval=approval, may_work=may_work, manages=manages, members=members,
        transitions=work_items.allowed_transitions(item) if may_work else [],
        may_take=item.is_open and item.assignee_id is None and item.team_id in current_user.team_ids,
        may_decide=approvals.may_decide_approval(db.session, me(), item, approval),
        may_edit_fields=may_work and item.is_open and item.status != "awaiting_approval" and bool(
            work_types.FIELDS[item.type]),
        may_reply=may_work and bool(item.requester_email),
        note_form=NoteForm(), reply_form=ReplyForm(),
        classify_form=ClassifyForm(obj=item) if may_work and item.is_open else None, teams=teams,
        ladder=[e for e in events if e.kind in LADDER_EVENTS],
    )


def thread_of(item):
    """The item's messages with their attachments and authors, in three queries whatever the thread's length."""
    return db.session.scalars(
        sa.select(Message).where(Message.work_item_id == item.id)
        .options(selectinload(Message.attachments), selectinload(Message.author)).order_by(Message.id)).all()


def back_to(item):
    return redirect(url_for("inbox.item", ref=item.ref))


@bp.route("/items/<ref>/notes", methods=["POST"])
@login_required
def add_note(ref):
    item = work_items.get_visible_item(db.session, me(), ref)
    form = NoteForm()
    if form.validate_on_submit():
        attempt(lambda: work_items.add_note(db.session, item, actor=me(), body=form.note.data),
                "Note added.")
    else:
        flash_form_errors(form)
    return back_to(item)


@bp.route("/items/<ref>/replies", methods=["POST"])
@login_required
def add_reply(ref):
    item = work_items.get_visible_item(db.session, me(), ref)
    form = ReplyForm()
    if form.validate_on_submit():
        attempt(lambda: work_items.add_reply(db.session, item, actor=me(), body=form.reply.data),
                f"Reply queued for {item.requester_email}.")
    else:
        flash_form_errors(form)
    return back_to(item)


@bp.route("/items/<ref>/status", methods=["POST"])
@login_required
def change_status(ref):
    item = work_items.get_visible_item(db.session, me(), ref)
    form = StatusForm()
    if form.validate_on_submit():
        new_status = form.status.data
        done = attempt(lambda: work_items.change_status(db.session, item, new_status, actor=me(),
                                                        expected_version=form.version.data,
                                                        comment=form.comment.data or None))
        if done and item.status == "awaiting_approval":
            flash("The amount is above the team's threshold, so a supervisor must approve the resolution.", "info")
        elif done:
            flash(f"{item.ref} is now {new_status.replace('_', ' ')}.", "success")
    else:
        flash_form_errors(form)
    return back_to(item)


@bp.route("/items/<ref>/approval", methods=["POST"])
@login_required
def decide(ref):
    """Approve or reject. Deciding one's own request, or without the right, is a 403 page, as in the API."""
    item = work_items.get_visible_item(db.session, me(), ref)
    form = DecisionForm()
    if form.validate_on_submit() and form.decision.data in ("approve", "reject"):
        approve = form.decision.data == "approve"
        attempt(lambda: approvals.decide(db.session, item, actor=me(), approve=approve,
                                         comment=form.comment.data or None),
                f"Approved: {item.ref} is resolved." if approve else f"Rejected: {item.ref} is open again.",
                raise_forbidden=True)
    else:
        flash("Choose approve or reject.", "error")
    if form.next.data:
        return redirect(safe_next(form.next.data))
    return back_to(item)


@bp.route("/items/<ref>/checks/run", methods=["POST"])
@login_required
def rerun_checks(ref):
    item = work_items.get_visible_item(db.session, me(), ref)
    form = RerunForm()
    if form.validate_on_submit():
        attempt(lambda: checks.request_rerun(db.session, item, actor=me()),
                "The checks will run again in a moment; reload the page to see the results.")
    else:
        flash_form_errors(form)
    return back_to(item)


@bp.route("/items/<ref>/fields", methods=["POST"])
@login_required
def update_fields(ref):
    item = work_items.get_visible_item(db.session, me(), ref)
    form = FieldsForm()
    if not form.validate_on_submit():
        flash_form_errors(form)
        return back_to(item)
    submitted = {spec.name: request.form.get(f"field-{spec.name}", "") for spec in work_types.FIELDS[item.type]}
    before = item.version
    done = attempt(lambda: work_items.update_fields(db.session, item, actor=me(), fields=submitted,
                                                    expected_version=form.version.data))
    if done:
        flash("Details saved; the checks run again." if item.version != before else "Nothing changed.",
              "success" if item.version != before else "info")
    return back_to(item)


@bp.route("/items/<ref>/classification", methods=["POST"])
@login_required
def reclassify(ref):
    item = work_items.get_visible_item(db.session, me(), ref)
    form = ClassifyForm()
    if not form.validate_on_submit():
        flash_form_errors(form)
        return back_to(item)
    team = None
    if form.team_id.data is not None:
        team = db.session.get(Team, form.team_id.data)
        if team is None:
            flash("That team does not exist any more.", "error")
            return back_to(item)
    before = (item.type, item.priority, item.team_id)
    done = attempt(lambda: work_items.reclassify(db.session, item, actor=me(), type=form.type.data,
                                                 priority=form.priority.data, team=team,
                                                 expected_version=form.version.data))
    if not done:
        return back_to(item)
    if before == (item.type, item.priority, item.team_id):
        flash("Nothing changed.", "info")
        return back_to(item)
    flash(f"{item.ref} is now {item.type.replace('_', ' ')}, {item.priority} priority, in {item.team.name}.",
          "success")
    if not access.can_view(current_user, item):
        # Moved to a team this supervisor is not in: the item page would be a 404 now.
        return redirect(url_for("inbox.index"))
    return back_to(item)


# --- attachments ------------------------------------------------------------------------
# Attachments come from strangers' email, so they are never rendered as pages of this site:
# downloads are always `attachment`, typed by the sniffed content (not the sender's claim),
# and only the plain image types below are ever shown inline.

INLINE_IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif")


def attachment_of(ref, attachment_id):
    """The item (if the viewer may see it) and its attachment; anything else is a 404."""
    item = work_items.get_visible_item(db.session, me(), ref)
    attachment = db.session.get(Attachment, attachment_id)
    if attachment is None or attachment.message.work_item_id != item.id or attachment.blob is None:
        abort(404)
    return item, attachment


def safe_filename(name):
    """The name without path parts or control characters, and an ASCII-only fallback of it."""
    name = re.split(r"[/\\]", name or "")[-1]
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C").strip().lstrip(".")[:200]
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    ascii_name = re.sub(r"[^A-Za-z0-9._ ()+-]", "_", ascii_name).strip(" .") or "attachment"
    return name or ascii_name, ascii_name


def file_response(attachment, content_type, disposition):
    unicode_name, ascii_name = safe_filename(attachment.filename)
    response = make_response(attachment.blob.data)
    response.headers["Content-Type"] = content_type
    response.headers["Content-Disposition"] = (
        f'{disposition}; filename="{ascii_name}"; filename*=UTF-8\'\'{quote(unicode_name, safe="")}')
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "default-src 'none'"
    response.headers["Cache-Control"] = "private, max-age=300"
    return response


@bp.route("/items/<ref>/attachments/<int:attachment_id>")
@login_required
def attachment_download(ref, attachment_id):
    """Always a download. Plain images keep their sniffed type; everything else (HTML, SVG, PDF, ...)
    is application/octet-stream, so no browser ever renders it as part of this site."""
    _item, attachment = attachment_of(ref, attachment_id)
    content_type = attachment.content_type if attachment.content_type in INLINE_IMAGE_TYPES \
        else "application/octet-stream"
    return file_response(attachment, content_type, "attachment")


@bp.route("/items/<ref>/attachments/<int:attachment_id>/inline")
@login_required
def attachment_inline(ref, attachment_id):
    """Shown in the page (inline `cid:` images of HTML mail, previews): PNG, JPEG and GIF only."""
    _item, attachment = attachment_of(ref, attachment_id)
    if attachment.content_type not in INLINE_IMAGE_TYPES:
        abort(404)
    return file_response(attachment, attachment.content_type, "inline")
