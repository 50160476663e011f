"""API v1 endpoints. Each parses the request, calls one service function, commits and serialises."""
import sqlalchemy as sa
from flask import abort, jsonify, request, url_for
from sqlalchemy.orm import selectinload

from queue_app.api import bp, schemas
from queue_app.api.auth import current_user, needs
from queue_app.api.openapi import build_spec
from queue_app.extensions import db
from queue_app.models import Event, SlaPolicy, Team, WorkItem
from queue_app.models.base import utcnow
from queue_app.services import access
from queue_app.services.approvals import decisions
from queue_app.services.assignment import handing
from queue_app.services.checks import runner
from queue_app.services.errors import Invalid
from queue_app.services.items import attachments as items_attachments
from queue_app.services.items import checklists, lifecycle, requesters, state, tags, verification, watchers
from queue_app.web.security import has_control_characters

# Everything item_json touches, loaded in a few queries instead of a few per item.
ITEM_LOAD = (
    selectinload(WorkItem.team).selectinload(Team.calendar),
    selectinload(WorkItem.assignee),
    selectinload(WorkItem.sla_policy).selectinload(SlaPolicy.calendar),
    selectinload(WorkItem.tags),
)


def _team_named(name, field="team"):
    team = db.session.scalar(sa.select(Team).where(Team.name == name))
    if team is None:
        raise Invalid(f"no team named {name!r}", {field: "no such team"})
    return team


def _user_with_email(email, field="assignee"):
    user = lifecycle.user_by_email(db.session, email)
    if user is None:
        raise Invalid(f"no user with email {email!r}", {field: "no such user"})
    return user


def _item_response(item, status=200):
    response = jsonify(schemas.item_json(item, utcnow()))
    response.status_code = status
    return response


@bp.get("/openapi.json")
def openapi():
    return jsonify(build_spec())


@bp.post("/items")
@needs("intake", "write")
def create_item():
    body = schemas.read_body(schemas.CREATE_ITEM)
    team = _team_named(body["team"]) if body.get("team") else None
    assignee = _user_with_email(body["assignee"]) if body.get("assignee") else None
    requester_email = schemas.email_or_none(body.get("requester_email"), "requester_email")
    item = lifecycle.create_item(
        db.session, actor=current_user(), source="api", type=body.get("type"), subject=body.get("subject"),
        description=body.get("description") or "", fields=body.get("fields"), priority=body.get("priority"),
        team=team, requester_email=requester_email, requester_name=body.get("requester_name"),
        assignee=assignee,
    )
    db.session.commit()
    response = _item_response(item, 201)
    response.headers["Location"] = url_for("api.get_item", ref=item.ref)
    return response


@bp.get("/items")
@needs("read")
def list_items():
    """Newest first, keyset-paginated on id; only ever the items the caller may see."""
    user = current_user()
    filters = schemas.read_list_filters(request.args)
    team = _team_named(filters["team"]) if "team" in filters else None
    assignee = filters.get("assignee")
    if assignee is not None and assignee.lower() not in ("me", "none"):
        assignee = _user_with_email(assignee)
    limit = filters["limit"]
    rows = lifecycle.list_items(
        db.session, user, status=filters.get("status"), type=filters.get("type"),
        priority=filters.get("priority"), team=team, assignee=assignee, before_id=filters["after_id"],
        limit=limit + 1, options=ITEM_LOAD, tag=filters.get("tag"),
    )
    page = rows[:limit]
    next_cursor = schemas.encode_cursor(page[-1].id) if len(rows) > limit else None
    now = utcnow()
    return jsonify({"items": [schemas.item_json(item, now) for item in page], "next_cursor": next_cursor})


@bp.get("/items/<ref>")
@needs("read")
def get_item(ref):
    return _item_response(lifecycle.get_visible_item(db.session, current_user(), ref))


@bp.patch("/items/<ref>")
@needs("write")
def reclassify_item(ref):
    """Change type, priority or team; the SLA policy and due times follow."""
    body = schemas.read_reclassify_body()
    user = current_user()
    item = lifecycle.get_visible_item(db.session, user, ref)
    if body.get("team") is not None:
        # Permission first, so an executive learns "not allowed", not whether a team name exists.
        access.require_manage_team(user, item.team_id)
    team = _team_named(body["team"]) if body.get("team") is not None else None
    lifecycle.reclassify(db.session, item, actor=user, type=body.get("type"), priority=body.get("priority"),
                          team=team, expected_version=body.get("version"))
    db.session.commit()
    return _item_response(item)


@bp.post("/items/<ref>/assign")
@needs("write")
def assign_item(ref):
    body = schemas.read_body(schemas.ASSIGN, required=("assignee",))
    user = current_user()
    item = lifecycle.get_visible_item(db.session, user, ref)
    assignee = _user_with_email(body["assignee"]) if body["assignee"] else None
    state.assign(db.session, item, assignee, actor=user, expected_version=body.get("version"))
    db.session.commit()
    return _item_response(item)


@bp.post("/items/<ref>/status")
@needs("write")
def change_status(ref):
    body = schemas.read_body(schemas.CHANGE_STATUS, required=("status",))
    user = current_user()
    item = lifecycle.get_visible_item(db.session, user, ref)
    lifecycle.change_status(db.session, item, body["status"], actor=user, expected_version=body.get("version"),
                             comment=body.get("comment"))
    db.session.commit()
    return _item_response(item)


@bp.post("/items/<ref>/notes")
@needs("write")
def add_note(ref):
    body = schemas.read_body(schemas.ADD_NOTE, required=("body",))
    user = current_user()
    item = lifecycle.get_visible_item(db.session, user, ref)
    note = lifecycle.add_note(db.session, item, actor=user, body=body["body"])
    db.session.commit()
    response = jsonify(schemas.note_json(note))
    response.status_code = 201
    return response


@bp.get("/items/<ref>/events")
@needs("read")
def list_events(ref):
    item = lifecycle.get_visible_item(db.session, current_user(), ref)
    events = db.session.scalars(sa.select(Event).where(Event.work_item_id == item.id).order_by(Event.id))
    return jsonify({"events": [schemas.event_json(event) for event in events]})


@bp.get("/items/<ref>/checks")
@needs("read")
def list_checks(ref):
    item = lifecycle.get_visible_item(db.session, current_user(), ref)
    return jsonify({"checks": [schemas.check_json(result) for result in runner.latest_results(db.session, item)]})


@bp.post("/items/<ref>/checks/run")
@needs("write")
def run_checks(ref):
    """Run every check of the item again (after commit, on a worker); 202: the results come later."""
    user = current_user()
    item = lifecycle.get_visible_item(db.session, user, ref)
    run, names = runner.request_rerun(db.session, item, actor=user)
    db.session.commit()
    response = jsonify({"run": run, "checks": names, "results": url_for("api.list_checks", ref=item.ref)})
    response.status_code = 202
    return response


@bp.get("/items/<ref>/checklist")
@needs("read")
def get_checklist(ref):
    item = lifecycle.get_visible_item(db.session, current_user(), ref)
    return jsonify(schemas.checklist_json(checklists.checklist_of(db.session, item)))


@bp.post("/items/<ref>/checklist/<int:step_id>/tick")
@needs("write")
def tick_checklist_step(ref, step_id):
    """Tick one step (ticking it twice changes nothing); open mandatory steps block resolving."""
    user = current_user()
    item = lifecycle.get_visible_item(db.session, user, ref)
    checklists.tick(db.session, item, step_id, actor=user)
    db.session.commit()
    return jsonify(schemas.checklist_json(checklists.checklist_of(db.session, item)))


@bp.post("/items/<ref>/checklist/<int:step_id>/untick")
@needs("write")
def untick_checklist_step(ref, step_id):
    user = current_user()
    item = lifecycle.get_visible_item(db.session, user, ref)
    checklists.untick(db.session, item, step_id, actor=user)
    db.session.commit()
    return jsonify(schemas.checklist_json(checklists.checklist_of(db.session, item)))


@bp.patch("/items/<ref>/fields")
@needs("write")
def update_fields(ref):
    """Change type-specific fields; the checks run again."""
    body = schemas.read_body(schemas.UPDATE_FIELDS, required=("fields",))
    user = current_user()
    item = lifecycle.get_visible_item(db.session, user, ref)
    lifecycle.update_fields(db.session, item, actor=user, fields=body["fields"], expected_version=body.get("version"))
    db.session.commit()
    return _item_response(item)


@bp.post("/items/<ref>/attachments")
@needs("write")
def add_attachment(ref):
    """Upload a file (multipart/form-data, part `file`); the checks run again."""
    upload = schemas.read_upload()
    user = current_user()
    item = lifecycle.get_visible_item(db.session, user, ref)
    attachment = items_attachments.attach_file(db.session, item, actor=user, filename=upload.filename,
                                         data=upload.read(), declared_type=upload.mimetype or None)
    db.session.commit()
    response = jsonify(schemas.attachment_json(attachment))
    response.status_code = 201
    return response


@bp.get("/items/<ref>/documents")
@needs("read")
def list_documents(ref):
    """A document verification's documents, each with its current verdict."""
    item = lifecycle.get_visible_item(db.session, current_user(), ref)
    workspace = verification.workspace(db.session, item)
    if workspace is None:
        raise Invalid(f"{item.ref} is not a document verification", {"type": "not a document verification"})
    return jsonify(schemas.documents_json(workspace))


@bp.post("/items/<ref>/documents/<int:attachment_id>/verdict")
@needs("write")
def record_verdict(ref, attachment_id):
    body = schemas.read_body(schemas.VERDICT, required=("verdict",))
    user = current_user()
    item = lifecycle.get_visible_item(db.session, user, ref)
    verdict = verification.record_verdict(db.session, item, attachment_id, actor=user, verdict=body["verdict"],
                                          reason=body.get("reason"), note=body.get("note"))
    db.session.commit()
    response = jsonify(schemas.verdict_json(verdict))
    response.status_code = 201
    return response


@bp.post("/items/<ref>/checks/override")
@needs("write")
def override_checks(ref):
    """A supervisor of the team lets the item be resolved as verified despite its failed checks."""
    body = schemas.read_body(schemas.OVERRIDE, required=("reason",))
    user = current_user()
    item = lifecycle.get_visible_item(db.session, user, ref)
    override = verification.override_failed_checks(db.session, item, actor=user, reason=body["reason"])
    db.session.commit()
    response = jsonify(schemas.override_json(override))
    response.status_code = 201
    return response


@bp.post("/items/<ref>/approval")
@needs("write")
def decide_approval(ref):
    """Approve or reject the pending approval (maker-checker: never one's own request)."""
    body = schemas.read_body(schemas.DECIDE, required=("decision",))
    decision = schemas.read_decision(body)
    user = current_user()
    item = lifecycle.get_visible_item(db.session, user, ref)
    decisions.decide(db.session, item, actor=user, approve=decision == "approve", comment=body.get("comment"))
    db.session.commit()
    return _item_response(item)


@bp.put("/items/<ref>/tags")
@needs("write")
def change_tags(ref):
    """Add and remove tags (as typed: they are normalised); answers with the item's tags."""
    add, remove = schemas.read_tags_body()
    user = current_user()
    item = lifecycle.get_visible_item(db.session, user, ref)
    now_tagged = tags.change(db.session, item, actor=user, add=add, remove=remove)
    db.session.commit()
    return jsonify({"ref": item.ref, "tags": now_tagged})


@bp.get("/requesters/<path:email>/items")
@needs("read")
def list_requester_items(email):
    """A requester's items the caller may see, open and closed, newest first, keyset-paginated on id;
    a requester with none of them is a 404."""
    if has_control_characters(email):
        abort(400, "The address contains a character that is not allowed.")
    filters = schemas.read_page_args(request.args)
    limit = filters["limit"]
    rows = requesters.items_page(db.session, current_user(), email, before_id=filters["after_id"],
                                 limit=limit + 1, options=ITEM_LOAD)
    page = rows[:limit]
    now = utcnow()
    return jsonify({"items": [schemas.item_json(item, now) for item in page],
                    "next_cursor": schemas.encode_cursor(page[-1].id) if len(rows) > limit else None})


@bp.get("/approvals")
@needs("read")
def list_approvals():
    """Pending approvals the caller may decide (or asked for), oldest first, keyset-paginated."""
    filters = schemas.read_page_args(request.args)
    limit = filters["limit"]
    rows = decisions.pending_queue(db.session, current_user(), after_id=filters["after_id"], limit=limit + 1)
    page = rows[:limit]
    user = current_user()
    return jsonify({
        "approvals": [schemas.approval_json(a, decisions.may_decide_approval(db.session, user, a.work_item, a))
                      for a in page],
        "next_cursor": schemas.encode_cursor(page[-1].id) if len(rows) > limit else None,
    })


# --- handing on and watching --------------------------------------------------------------------

@bp.post("/items/<ref>/hand-back")
@needs("write")
def hand_back_item(ref):
    """Back to the team's unassigned queue, with the reason (the assignee or a supervisor of the team)."""
    body = schemas.read_body(schemas.HAND_BACK, required=("reason",))
    user = current_user()
    item = lifecycle.get_visible_item(db.session, user, ref)
    handing.hand_back(db.session, item, actor=user, reason=body["reason"], expected_version=body.get("version"))
    db.session.commit()
    return _item_response(item)


@bp.post("/items/<ref>/pass")
@needs("write")
def pass_item(ref):
    """The assignee passes the item to a colleague of the team, where the team allows it."""
    body = schemas.read_body(schemas.PASS, required=("to",))
    user = current_user()
    item = lifecycle.get_visible_item(db.session, user, ref)
    colleague = _user_with_email(body["to"] or "", field="to")
    handing.pass_to(db.session, item, colleague, actor=user, note=body.get("note"),
                    expected_version=body.get("version"))
    db.session.commit()
    return _item_response(item)


@bp.route("/items/<ref>/watch", methods=["POST", "DELETE"])
@needs("write")
def watch_item(ref):
    """POST: watch the item (its status changes, the requester's replies and notes are mailed); DELETE: stop."""
    user = current_user()
    item = lifecycle.get_visible_item(db.session, user, ref)
    if request.method == "POST":
        watchers.watch(db.session, item, actor=user)
    else:
        watchers.unwatch(db.session, item, actor=user)
    db.session.commit()
    return jsonify(schemas.watch_json(item, request.method == "POST", watchers.count(db.session, item)))
