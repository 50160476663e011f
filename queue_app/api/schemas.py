"""Request parsing and JSON serialisation for the API.

Parsing turns every malformed request into a clear 400/415/422 instead of a 500;
serialisation keeps one JSON shape per object (datetimes ISO 8601 UTC with "Z",
decimals as strings) so clients never see two spellings of the same thing.
"""
import base64
import binascii
import json
from datetime import timezone

from flask import request
from werkzeug.exceptions import BadRequest, UnsupportedMediaType

from queue_app.models.work_item import PRIORITIES, STATUSES, TYPES
from queue_app.services.checks import runner
from queue_app.services.errors import Invalid
from queue_app.services.items import state as items_state
from queue_app.services.items import tags
from queue_app.services.items.work_types import fields_of
from queue_app.services.people.users import normalise_email
from queue_app.services.sla import policies
from queue_app.web.security import MAX_ID, has_control_characters, out_of_range

DEFAULT_LIMIT = 50
MAX_LIMIT = 200

CREATE_ITEM = {
    "type": "string", "subject": "string", "description": "string", "priority": "string", "team": "string",
    "requester_email": "string", "requester_name": "string", "assignee": "string", "fields": "object",
}
ASSIGN = {"assignee": "string", "version": "integer"}
CHANGE_STATUS = {"status": "string", "comment": "string", "version": "integer"}
ADD_NOTE = {"body": "string"}
RECLASSIFY = {"type": "string", "priority": "string", "team": "string", "version": "integer"}
UPDATE_FIELDS = {"fields": "object", "version": "integer"}
DECIDE = {"decision": "string", "comment": "string"}
VERDICT = {"verdict": "string", "reason": "string", "note": "string"}
OVERRIDE = {"reason": "string"}
HAND_BACK = {"reason": "string", "version": "integer"}
PASS = {"to": "string", "note": "string", "version": "integer"}
DECISIONS = ("approve", "reject")
PAGE_ARGS = ("limit", "cursor")
RECLASSIFY_CHANGES = ("type", "priority", "team")
LIST_FILTERS = ("status", "type", "team", "assignee", "priority", "tag", "limit", "cursor")
TAGS = {"add": "array", "remove": "array"}

# Keys whose text may run over several lines (tab, CR and LF allowed); any other text is one line.
MULTILINE_KEYS = {"description", "body", "comment", "fields", "note", "reason"}

_JSON_TYPES = {"string": (str, "a string"), "integer": (int, "an integer"), "object": (dict, "an object"),
               "array": (list, "an array")}


def _reject_constant(name):
    raise ValueError(f"{name} is not valid JSON")


def json_object():
    """The request body as a dict; anything else is the client's mistake (400/415), not ours."""
    if not request.is_json:
        raise UnsupportedMediaType(
            f"the body must be JSON sent with 'Content-Type: application/json' (got {request.mimetype or 'none'})")
    raw = request.get_data(cache=True)
    try:
        data = json.loads(raw, parse_constant=_reject_constant)
    except ValueError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise BadRequest("the body is nested too deeply") from None
    if not isinstance(data, dict):
        raise BadRequest(f"the body must be a JSON object, not {_json_type_name(data)}")
    return data


def _json_type_name(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _matches(kind, value):
    if kind == "integer" and isinstance(value, bool):
        return False
    return isinstance(value, _JSON_TYPES[kind][0])


def read_body(spec, required=()):
    """Parse the JSON body against {key: json type}; unknown keys and wrong types are 422s naming the key.

    null is accepted for every key and means "not given" (or "nobody" for an assignee).
    """
    data = json_object()
    errors = {}
    for key, value in data.items():
        if spec.get(key) == "integer" and isinstance(value, float) and value.is_integer():
            value = data[key] = int(value)  # JSON Schema's integer: 3.0 is 3
        if key not in spec:
            errors[key] = f"unknown key (allowed: {', '.join(spec)})"
        elif value is not None and not _matches(spec[key], value):
            errors[key] = f"must be {_JSON_TYPES[spec[key]][1]}, not {_json_type_name(value)}"
        else:
            problem = value is not None and _input_problem(spec[key], value, key in MULTILINE_KEYS)
            if problem:
                errors[key] = problem
    for key in required:
        if key not in data:
            errors[key] = "is required"
    if errors:
        listed = "; ".join(f"{key} {problem}" for key, problem in errors.items())
        raise Invalid(f"invalid request body: {listed}", errors)
    return data


def _input_problem(kind, value, multiline):
    """What no client sends on purpose: control characters anywhere in a value (tab, CR and LF only
    in multi-line text; PostgreSQL cannot store NUL) and an integer larger than its column holds."""
    if kind == "integer":
        return f"is out of range (at most {MAX_ID})" if out_of_range(value) else None
    if isinstance(value, str):
        return "contains a control character that is not allowed" if has_control_characters(value, multiline) \
            else None
    if isinstance(value, dict):
        value = [*value.keys(), *value.values()]
    if isinstance(value, list):
        return next((p for p in (_input_problem(None, v, multiline) for v in value) if p), None)
    return None


def read_list_filters(args):
    """Validate the query string of GET /items; names are checked, references resolved by the view."""
    errors = {}
    for key in args:
        if key not in LIST_FILTERS:
            errors[key] = f"unknown parameter (allowed: {', '.join(LIST_FILTERS)})"
    filters = {}
    for key, allowed in (("status", STATUSES), ("type", TYPES), ("priority", PRIORITIES)):
        value = args.get(key)
        if value is not None:
            if value not in allowed:
                errors[key] = f"must be one of {', '.join(allowed)}"
            filters[key] = value
    for key in ("team", "assignee"):
        value = args.get(key)
        if value is not None:
            filters[key] = value.strip()
    try:
        filters["tag"] = tags.parse_filter(args.get("tag"))
    except Invalid as exc:
        errors["tag"] = exc.fields["tag"]
    raw_limit = args.get("limit", str(DEFAULT_LIMIT))
    try:
        filters["limit"] = int(raw_limit)
        if not 1 <= filters["limit"] <= MAX_LIMIT:
            raise ValueError
    except ValueError:
        errors["limit"] = f"must be a whole number from 1 to {MAX_LIMIT}"
    cursor = args.get("cursor")
    filters["after_id"] = None
    if cursor:
        try:
            filters["after_id"] = decode_cursor(cursor)
        except ValueError:
            errors["cursor"] = "is not a cursor returned by this API"
    if errors:
        listed = "; ".join(f"{key} {problem}" for key, problem in errors.items())
        raise Invalid(f"invalid query: {listed}", errors)
    return filters


def read_tags_body():
    """The PUT .../tags body: `add` and `remove`, each a list of tags as typed (at least one given)."""
    body = read_body(TAGS)
    errors = {}
    for key in TAGS:
        values = body.get(key) or []
        if not all(isinstance(value, str) for value in values):
            errors[key] = "must be an array of strings"
    if not errors and not (body.get("add") or body.get("remove")):
        errors = {key: "give at least one tag to add or remove" for key in TAGS}
    if errors:
        listed = "; ".join(f"{key} {problem}" for key, problem in errors.items())
        raise Invalid(f"invalid request body: {listed}", errors)
    return body.get("add") or [], body.get("remove") or []


def read_decision(body):
    decision = body.get("decision")
    if decision not in DECISIONS:
        raise Invalid("decision must be approve or reject", {"decision": "must be approve or reject"})
    return decision


def read_upload():
    """The uploaded file of a multipart/form-data request (part `file`)."""
    if request.mimetype != "multipart/form-data":
        raise UnsupportedMediaType(
            f"send the file as multipart/form-data with a part named 'file' (got {request.mimetype or 'none'})")
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        raise Invalid("no file: send it in a part named 'file' with a filename", {"file": "is required"})
    return upload


def read_page_args(args):
    """limit and cursor of a keyset-paginated list; anything else is a 422 naming the parameter."""
    errors = {key: f"unknown parameter (allowed: {', '.join(PAGE_ARGS)})" for key in args if key not in PAGE_ARGS}
    filters = {"after_id": None}
    try:
        filters["limit"] = int(args.get("limit", str(DEFAULT_LIMIT)))
        if not 1 <= filters["limit"] <= MAX_LIMIT:
            raise ValueError
    except ValueError:
        errors["limit"] = f"must be a whole number from 1 to {MAX_LIMIT}"
    if args.get("cursor"):
        try:
            filters["after_id"] = decode_cursor(args["cursor"])
        except ValueError:
            errors["cursor"] = "is not a cursor returned by this API"
    if errors:
        listed = "; ".join(f"{key} {problem}" for key, problem in errors.items())
        raise Invalid(f"invalid query: {listed}", errors)
    return filters


def email_or_none(value, field):
    """A normalised email address, or None when not given; a malformed one is a 422 naming the field."""
    if not value:
        return None
    try:
        return normalise_email(value)
    except Invalid as exc:
        raise Invalid(f"{field}: {exc.message}", {field: "is not a valid email address"}) from None


def encode_cursor(item_id):
    """Opaque to clients so the keyset can change without breaking them."""
    return base64.urlsafe_b64encode(json.dumps({"id": item_id}).encode()).decode().rstrip("=")


def decode_cursor(cursor):
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))["id"]
    except (binascii.Error, UnicodeError, ValueError, KeyError, TypeError):
        raise ValueError("bad cursor") from None
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_ID:
        raise ValueError("bad cursor")
    return value


def iso(value):
    """ISO 8601 in UTC with a trailing Z, or None."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _minutes(value):
    """Business minutes to one decimal: enough for a countdown, free of float noise."""
    return None if value is None else round(value, 1)


def read_reclassify_body():
    """The PATCH body; it must name at least one of type, priority and team (a bare version changes nothing)."""
    body = read_body(RECLASSIFY)
    if not any(body.get(key) is not None for key in RECLASSIFY_CHANGES):
        message = f"give at least one of {', '.join(RECLASSIFY_CHANGES)}"
        raise Invalid(f"invalid request body: {message}", {key: message for key in RECLASSIFY_CHANGES})
    return body


def sla_json(item, now):
    state = policies.state_at(item, now)
    return {
        "policy": item.sla_policy.name if item.sla_policy else None,
        "state": state,
        "paused": state == "paused",
        "first_response_due": iso(item.first_response_due),
        "resolution_due": iso(item.resolution_due),
        "next_due": iso(item.sla_next_due),
        "next_check_at": iso(item.sla_next_check_at),
        "first_responded_at": iso(item.first_responded_at),
        "remaining_minutes": _minutes(policies.remaining_minutes(item, now)),
        "escalation_level": item.escalation_level or 0,
    }


def item_json(item, now):
    return {
        "ref": item.ref,
        "type": item.type,
        "status": item.status,
        "allowed_transitions": items_state.allowed_transitions(item),
        "priority": item.priority,
        "source": item.source,
        "team": item.team.name,
        "assignee": item.assignee.email if item.assignee else None,
        "requester": {"email": item.requester_email, "name": item.requester_name},
        "subject": item.subject,
        "description": item.description,
        "fields": fields_of(item),
        "created_at": iso(item.created_at),
        "updated_at": iso(item.updated_at),
        "version": item.version,
        "needs_attention": item.needs_attention,
        "escalation_level": item.escalation_level,
        "sla": sla_json(item, now),
        "tags": [row.tag for row in item.tags],
    }


def event_json(event):
    return {"id": event.id, "kind": event.kind, "at": iso(event.at), "actor": event.actor_label,
            "data": event.data or {}}


def check_json(result):
    return {"name": result.name, "status": result.status, "message": result.message, "data": result.data or {},
            "mandatory": runner.is_mandatory(result.name), "run": result.run_key, "at": iso(result.created_at)}


def checklist_json(lines):
    """An item's checklist (services.items.checklists.checklist_of): each step, whether and by whom it is ticked."""
    return {
        "steps": [{"id": line.step.id, "position": line.step.position, "text": line.step.text,
                   "mandatory": line.step.mandatory, "ticked": line.done,
                   "ticked_by": line.tick.ticked_by.email if line.done else None,
                   "ticked_at": iso(line.tick.ticked_at) if line.done else None} for line in lines],
        "open_mandatory": sum(1 for line in lines if line.step.mandatory and not line.done),
    }


def attachment_json(attachment):
    return {"id": attachment.id, "filename": attachment.filename, "content_type": attachment.content_type,
            "size": attachment.size, "sha256": attachment.sha256, "created_at": iso(attachment.created_at)}


def verdict_json(verdict):
    return {"id": verdict.id, "attachment_id": verdict.attachment_id, "verdict": verdict.verdict,
            "reason": verdict.reason, "note": verdict.note,
            "decided_by": verdict.decided_by.email if verdict.decided_by else None,
            "decided_at": iso(verdict.decided_at)}


def documents_json(workspace):
    return {"documents": [{**attachment_json(a), "verdict": verdict_json(workspace.verdicts[a.id])
                           if a.id in workspace.verdicts else None} for a in workspace.documents],
            "rejection_reasons": list(workspace.reasons), "failed_checks": workspace.failed_checks,
            "overridden": workspace.overridden, "waiting_for_document": workspace.waiting_for_document}


def override_json(override):
    return {"id": override.id, "checks": override.checks, "reason": override.reason,
            "decided_by": override.decided_by.email if override.decided_by else None,
            "decided_at": iso(override.decided_at)}


def approval_json(approval, may_decide):
    item = approval.work_item
    data = approval.data or {}
    return {
        "id": approval.id, "ref": item.ref, "team": item.team.name, "type": item.type, "action": approval.action,
        "status": approval.status, "requested_by": approval.requested_by.email if approval.requested_by else None,
        "requested_at": iso(approval.requested_at), "comment": approval.comment,
        "amount": data.get("amount"), "currency": data.get("currency"), "base_amount": data.get("base_amount"),
        "base_currency": data.get("base_currency"), "threshold": data.get("threshold"), "may_decide": may_decide,
    }


def note_json(message):
    return {"id": message.id, "kind": message.kind, "body": message.body_text,
            "author": message.author.email if message.author else None, "created_at": iso(message.created_at)}


def watch_json(item, watching, watchers):
    return {"ref": item.ref, "watching": watching, "watchers": watchers}
