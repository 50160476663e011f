"""The item page and what an executive does on it: reply, note, status, fields, classification,
approval, checks, attachments. Each post makes one service call, commits and redirects.

Forms that change the item carry the version and the last event the person saw; when a
conflicting change was made meanwhile (services.items.changes), the page comes back with
status 409 showing what changed, with their unsent input kept. Notes and replies posted by
htmx get the new thread and history back as fragments instead of a redirect.
"""
import re
import unicodedata
from urllib.parse import quote

import sqlalchemy as sa
from flask import (
    abort,
    current_app,
    flash,
    jsonify,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user, login_required
from sqlalchemy.orm import selectinload

from queue_app.extensions import db
from queue_app.inbox import bp
from queue_app.inbox.forms import (
    ChecklistForm,
    ClassifyForm,
    DraftForm,
    FieldsForm,
    NoteForm,
    OverrideForm,
    ReplyForm,
    RerunForm,
    StatusForm,
    UploadForm,
    VerdictForm,
)
from queue_app.models import Attachment, Event, Message, Team
from queue_app.services import access
from queue_app.services.approvals import decisions
from queue_app.services.checks import runner
from queue_app.services.checks.settings import settings_for
from queue_app.services.errors import NotFound, PermissionDenied
from queue_app.services.items import attachments as item_files
from queue_app.services.items import canned_responses, checklists, lifecycle, state, verification, work_types
from queue_app.services.items import drafts as item_drafts
from queue_app.services.items import changes as items_changes
from queue_app.web.actions import attempt, flash_form_errors, me
from queue_app.web.forms import NOT_ALLOWED, DecisionForm
from queue_app.web.navigation import safe_next
from queue_app.web.security import has_control_characters

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
    item = lifecycle.get_visible_item(db.session, me(), ref)
    drafts = {}
    if request.args.get("canned", "").isdigit():
        # Without JavaScript, "Insert" reloads the page with the response filled into the reply box.
        drafts["reply"] = canned_text(item, int(request.args["canned"]))
    return render_item(item, drafts=drafts)


def render_item(item, *, status=200, changes=None, drafts=None):
    """The item page; after a conflict (status 409) with what changed and the person's unsent input.

    `drafts` holds what the person typed and has not been saved: "reply", "status" and
    "comment", "fields" (name -> text), "type", "priority" and "team_id".
    """
    drafts = drafts or {}
    saved = item_drafts.for_item(db.session, me(), item)  # what they typed and have not sent
    events = db.session.scalars(sa.select(Event).where(Event.work_item_id == item.id).order_by(Event.id)).all()
    approval = decisions.pending_approval(db.session, item)
    manages = access.manages_team(current_user, item.team_id)
    check_views = runner.results_for_display(db.session, item)
    may_work = _may_work(item)
    may_reply = may_work and bool(item.requester_email)
    members = [u for u in item.team.members if u.is_active] if manages else []
    teams = db.session.scalars(sa.select(Team).order_by(Team.name)).all() if manages else []
    fields = work_types.fields_of(item)
    messages = thread_of(item)
    classify_form = None
    if may_work and item.is_open:
        classify_form = ClassifyForm(formdata=None, obj=item)
        for name in ("type", "priority"):
            if drafts.get(name):
                classify_form[name].data = drafts[name]
    return render_template(
        "inbox/item.html", item=item, specs=work_types.FIELDS[item.type], fields=fields,
        field_values={**fields, **(drafts.get("fields") or {})},
        checks=check_views, failed_mandatory=[c for c in check_views if c.mandatory and c.status == "failed"],
        messages=messages, events=events, seen_event=events[-1].id if events else 0,
        approval=approval, may_work=may_work, manages=manages, members=members,
        transitions=state.allowed_transitions(item) if may_work else [],
        may_take=item.is_open and item.assignee_id is None and item.team_id in current_user.team_ids,
        may_decide=decisions.may_decide_approval(db.session, me(), item, approval),
        may_edit_fields=may_work and item.is_open and item.status != "awaiting_approval" and bool(
            work_types.FIELDS[item.type]),
        may_reply=may_reply, canned=canned_responses.list_for_item(db.session, item) if may_reply else [],
        may_manage_canned=current_user.role in ("supervisor", "admin"),
        note_form=NoteForm(formdata=None, note=saved.get("note")),
        reply_form=ReplyForm(formdata=None, reply=drafts.get("reply") or saved.get("reply")),
        classify_form=classify_form, teams=teams, draft_team_id=drafts.get("team_id"),
        ladder=[e for e in events if e.kind in LADDER_EVENTS], changes=changes, drafts=drafts,
        upload=upload_panel(item, may_work), previews=item_files.previews_of(messages),
        workspace=verification.workspace(db.session, item), verdict_form=VerdictForm(formdata=None),
        override_form=OverrideForm(formdata=None), verdict_labels=verification.VERDICT_LABELS,
        checklist=checklist_panel(item),
    ), status


def thread_of(item):
    """The item's messages with their attachments and authors, in three queries whatever the thread's length."""
    return db.session.scalars(
        sa.select(Message).where(Message.work_item_id == item.id)
        .options(selectinload(Message.attachments), selectinload(Message.author)).order_by(Message.id)).all()


def back_to(item):
    return redirect(url_for("inbox.item", ref=item.ref))


def is_htmx():
    return request.headers.get("HX-Request") == "true"


def changed_meanwhile(item, form):
    """What changed since the person's page was rendered (services.items.changes)."""
    return items_changes.since(db.session, item, seen_version=form.version.data,
                              seen_event_id=form.seen_event.data)


def conflict_page(item, changes, drafts):
    """The item page as it is now with "While you were looking, this changed", their input kept (409).

    An htmx post gets the same page, swapped in for <main>, so the person sees it in place."""
    body, status = render_item(item, status=409, changes=changes, drafts=drafts)
    response = make_response(body, status)
    if is_htmx():
        response.headers.update({"HX-Retarget": "#main", "HX-Reswap": "outerHTML", "HX-Reselect": "#main"})
    return response


def posted(item, done):
    """After a note or reply: a redirect for a normal post; for htmx, the new thread and history
    (swapped into the page) or, when refused, only the message saying why (422)."""
    if not is_htmx():
        return back_to(item)
    if not done:
        response = make_response(render_template("inbox/_item_live.html"), 422)
        response.headers.update({"HX-Retarget": "#item-live", "HX-Reswap": "outerHTML"})
        return response
    events = db.session.scalars(sa.select(Event).where(Event.work_item_id == item.id).order_by(Event.id)).all()
    return render_template("inbox/_item_posted.html", item=item, messages=thread_of(item), events=events)


@bp.route("/items/<ref>/notes", methods=["POST"])
@login_required
def add_note(ref):
    item = lifecycle.get_visible_item(db.session, me(), ref)
    form = NoteForm()
    if form.validate_on_submit():
        done = attempt(lambda: lifecycle.add_note(db.session, item, actor=me(), body=form.note.data),
                       "Note added.")
    else:
        flash_form_errors(form)
        done = False
    return posted(item, done)


@bp.route("/items/<ref>/replies", methods=["POST"])
@login_required
def add_reply(ref):
    item = lifecycle.get_visible_item(db.session, me(), ref)
    form = ReplyForm()
    if not form.validate_on_submit():
        flash_form_errors(form)
        return posted(item, False)
    changes = changed_meanwhile(item, form)
    if changes.conflict:
        return conflict_page(item, changes, {"reply": form.reply.data})
    done = attempt(lambda: lifecycle.add_reply(db.session, item, actor=me(), body=form.reply.data,
                                                expected_version=changes.expected_version),
                   f"Reply queued for {item.requester_email}.")
    return posted(item, done)


@bp.route("/items/<ref>/drafts/<box>", methods=["POST"])
@login_required
def save_draft(ref, box):
    """Keep what is typed in the reply or note box (the page posts it as they type): 204, or 422 with why."""
    item = lifecycle.get_visible_item(db.session, me(), ref)
    form = DraftForm()
    if not form.validate_on_submit():
        return {"errors": form.errors}, 422
    item_drafts.save(db.session, me(), item, box, form.body.data)
    db.session.commit()
    return "", 204


@bp.route("/items/<ref>/canned/<int:response_id>")
@login_required
def canned_response(ref, response_id):
    """A canned response filled in for this item, as text for the reply box (JSON: title and text)."""
    item = lifecycle.get_visible_item(db.session, me(), ref)
    response = canned_responses.get_for_item(db.session, item, response_id)
    return {"title": response.title, "text": canned_responses.render(response.body, item, me())}


def canned_text(item, response_id):
    try:
        response = canned_responses.get_for_item(db.session, item, response_id)
    except NotFound:
        flash("That canned response is not available for this item.", "error")
        return None
    return canned_responses.render(response.body, item, me())


@bp.route("/items/<ref>/status", methods=["POST"])
@login_required
def change_status(ref):
    item = lifecycle.get_visible_item(db.session, me(), ref)
    form = StatusForm()
    if not form.validate_on_submit():
        flash_form_errors(form)
        return back_to(item)
    new_status = form.status.data
    changes = changed_meanwhile(item, form)
    if changes.conflict:
        return conflict_page(item, changes, {"status": new_status, "comment": form.comment.data})
    done = attempt(lambda: lifecycle.change_status(db.session, item, new_status, actor=me(),
                                                    expected_version=changes.expected_version,
                                                    comment=form.comment.data or None))
    if done and item.status == "awaiting_approval":
        flash("The amount is above the team's threshold, so a supervisor must approve the resolution.", "info")
    elif done:
        flash(f"{item.ref} is now {new_status.replace('_', ' ')}.", "success")
    return back_to(item)


@bp.route("/items/<ref>/approval", methods=["POST"])
@login_required
def decide(ref):
    """Approve or reject. Deciding one's own request, or without the right, is a 403 page, as in the API."""
    item = lifecycle.get_visible_item(db.session, me(), ref)
    form = DecisionForm()
    if form.validate_on_submit() and form.decision.data in ("approve", "reject"):
        approve = form.decision.data == "approve"
        attempt(lambda: decisions.decide(db.session, item, actor=me(), approve=approve,
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
    item = lifecycle.get_visible_item(db.session, me(), ref)
    form = RerunForm()
    if form.validate_on_submit():
        attempt(lambda: runner.request_rerun(db.session, item, actor=me()),
                "The checks will run again in a moment; reload the page to see the results.")
    else:
        flash_form_errors(form)
    return back_to(item)


@bp.route("/items/<ref>/fields", methods=["POST"])
@login_required
def update_fields(ref):
    item = lifecycle.get_visible_item(db.session, me(), ref)
    form = FieldsForm()
    if not form.validate_on_submit():
        flash_form_errors(form)
        return back_to(item)
    submitted = {spec.name: request.form.get(f"field-{spec.name}", "") for spec in work_types.FIELDS[item.type]}
    if any(has_control_characters(value, multiline=True) for value in submitted.values()):
        flash(f"Details: {NOT_ALLOWED}", "error")  # the fields are built from the type, outside the form
        return back_to(item)
    changes = changed_meanwhile(item, form)
    if changes.conflict:
        return conflict_page(item, changes, {"fields": submitted})
    before = item.version
    done = attempt(lambda: lifecycle.update_fields(db.session, item, actor=me(), fields=submitted,
                                                    expected_version=changes.expected_version))
    if done:
        flash("Details saved; the checks run again." if item.version != before else "Nothing changed.",
              "success" if item.version != before else "info")
    return back_to(item)


@bp.route("/items/<ref>/classification", methods=["POST"])
@login_required
def reclassify(ref):
    item = lifecycle.get_visible_item(db.session, me(), ref)
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
    changes = changed_meanwhile(item, form)
    if changes.conflict:
        return conflict_page(item, changes, {"type": form.type.data, "priority": form.priority.data,
                                             "team_id": form.team_id.data})
    before = (item.type, item.priority, item.team_id)
    done = attempt(lambda: lifecycle.reclassify(db.session, item, actor=me(), type=form.type.data,
                                                 priority=form.priority.data, team=team,
                                                 expected_version=changes.expected_version))
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


# --- checklist ---------------------------------------------------------------------------

def checklist_panel(item):
    """The item's checklist, whether the viewer may tick it, and the form (None when they may not)."""
    lines = checklists.checklist_of(db.session, item)
    may_tick = bool(lines) and checklists.may_tick(current_user, item)
    return {"lines": lines, "form": ChecklistForm(formdata=None) if may_tick else None,
            "open_mandatory": [line for line in lines if line.step.mandatory and not line.done]}


@bp.route("/items/<ref>/checklist", methods=["POST"])
@login_required
def save_checklist(ref):
    """The checklist form: only the steps whose box the person changed are ticked or unticked, so a
    step someone else ticked meanwhile is left as it is."""
    item = lifecycle.get_visible_item(db.session, me(), ref)
    form = ChecklistForm()
    if not form.validate_on_submit():
        flash_form_errors(form)
        return back_to(item)
    wanted = form.changes()
    if not wanted:
        flash("Nothing changed on the checklist.", "info")
        return back_to(item)
    attempt(lambda: checklists.set_ticks(db.session, item, wanted, actor=me()), "Checklist saved.")
    return back_to(item)


# --- attachments ------------------------------------------------------------------------

def upload_panel(item, may_work):
    """What the upload box shows: the form, or why there is none, and the limits that apply."""
    if not may_work:
        return {"form": None, "closed": False}
    settings = settings_for(db.session, item.team_id)
    max_request = current_app.config.get("MAX_CONTENT_LENGTH") or 0
    return {"form": UploadForm(formdata=None) if item.is_open else None, "closed": not item.is_open, "max_bytes": settings.max_document_bytes,
            "max_size": item_files.megabytes(settings.max_document_bytes),
            "types": [item_files.type_label(t) for t in settings.allowed_document_types],
            "accept": ",".join(settings.allowed_document_types),
            "max_request": max_request, "max_request_size": item_files.megabytes(max_request) if max_request else None,
            "max_files": item_files.MAX_FILES}


def wants_json_reply():
    """The upload script asks for JSON (it shows the outcome itself); a plain form post gets a redirect."""
    return request.accept_mimetypes.best == "application/json"


@bp.route("/items/<ref>/attachments", methods=["POST"])
@login_required
def upload_files(ref):
    """Files from the item page (a multipart form, with or without the upload script). Each refused
    file is a message of its own; the others go in."""
    item = lifecycle.get_visible_item(db.session, me(), ref)
    form = UploadForm()
    outcome = {}
    if not form.validate_on_submit():
        flash_form_errors(form)
    elif not (uploads := form.uploads()):
        flash("Choose at least one file to upload.", "error")
    else:
        attempt(lambda: outcome.update(result=item_files.add_files(db.session, item, actor=me(), files=uploads)))
    result = outcome.get("result")
    if result is not None:
        if result.added:
            names = ", ".join(a.filename for a in result.added)
            flash(f"Added {names}. The checks run again." if len(result.added) == 1 else
                  f"Added {len(result.added)} files: {names}. The checks run again.", "success")
        for name, reason in result.refused:
            flash(f"{name} was not added: {reason}.", "error")
    if wants_json_reply():
        body = {"redirect": url_for("inbox.item", ref=item.ref),
                "added": [{"id": a.id, "filename": a.filename} for a in result.added] if result else [],
                "refused": [{"filename": n, "reason": r} for n, r in result.refused] if result else []}
        return jsonify(body), 200 if result is not None and result.added else 422
    return back_to(item)

# Attachments come from strangers' email, so they are never rendered as pages of this site:
# downloads are always `attachment`, typed by the sniffed content (not the sender's claim),
# and only the plain image types below are ever shown inline. A PDF's preview is drawn by the
# page's script (pdf.js) from bytes that are still served as an attachment.

INLINE_IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif")


def attachment_of(ref, attachment_id):
    """The item (if the viewer may see it) and its attachment; anything else is a 404."""
    item = lifecycle.get_visible_item(db.session, me(), ref)
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


@bp.route("/items/<ref>/attachments/<int:attachment_id>/preview")
@login_required
def attachment_preview(ref, attachment_id):
    """A PDF's bytes for the item page's viewer (pdf.js fetches them), under the download's access
    rules. Typed application/pdf for the script, but still `attachment`: opened as an address, the file
    is downloaded, never shown as a page of this site. Any other type is a 404; a PDF the checks found too
    costly to open (a decompression bomb) is a 422, which the viewer says."""
    _item, attachment = attachment_of(ref, attachment_id)
    if attachment.content_type != "application/pdf":
        abort(404)
    refused = item_files.preview_refusal(db.session, attachment)
    if refused:
        abort(422, description=f"Not previewed: the file {refused}")
    response = file_response(attachment, "application/pdf", "attachment")
    response.headers["Cross-Origin-Resource-Policy"] = "same-origin"
    return response


@bp.route("/items/<ref>/attachments/<int:attachment_id>/inline")
@login_required
def attachment_inline(ref, attachment_id):
    """Shown in the page (inline `cid:` images of HTML mail, previews): PNG, JPEG and GIF only, and not one
    whose header is damaged or declares absurd dimensions (a pixel bomb; the check "Image size" says why)."""
    _item, attachment = attachment_of(ref, attachment_id)
    if attachment.content_type not in INLINE_IMAGE_TYPES or item_files.inline_problem(attachment):
        abort(404)
    return file_response(attachment, attachment.content_type, "inline")
