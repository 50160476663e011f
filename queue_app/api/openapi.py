"""The OpenAPI 3.1 document served at /api/v1/openapi.json.

Enumerations and the type-specific fields come from the models and
services.items.work_types.FIELDS, so the document cannot drift from what the API accepts.
"""
from queue_app.api.schemas import DEFAULT_LIMIT, MAX_LIMIT, RECLASSIFY_CHANGES
from queue_app.models.base import MAX_ID
from queue_app.models.tag import MAX_TAG
from queue_app.models.approval import APPROVAL_STATUSES
from queue_app.models.check_result import CHECK_STATUSES
from queue_app.models.verification import VERDICTS
from queue_app.models.work_item import PRIORITIES, SLA_STATES, STATUSES, TYPES
from queue_app.services.approvals.decisions import MAX_COMMENT
from queue_app.services.assignment.handing import MAX_REASON as MAX_HAND_ON_TEXT
from queue_app.services.checks.settings import MAX_REASON
from queue_app.services.items.lifecycle import MAX_BODY, MAX_NAME, MAX_SUBJECT
from queue_app.services.items.requesters import MAX_EMAIL
from queue_app.services.items.tags import MAX_TAGS
from queue_app.services.items.verification import MAX_NOTE, MAX_OVERRIDE_REASON
from queue_app.services.items.work_types import FIELDS
from queue_app.web.security import CONTROL_CHARACTERS, CONTROL_CHARACTERS_SINGLE_LINE

DECIMAL_PATTERN = r"^-?\d+(\.\d{1,2})?$"
# More than 0 (a refund): a non-zero digit before the point, or zeros and then a non-zero fraction.
POSITIVE_DECIMAL_PATTERN = r"^(0*[1-9]\d*(\.\d{1,2})?|0+\.(0[1-9]|[1-9]\d?))$"


# What str.strip() takes away, spelled out: `\s` differs between JSON Schema's regular expressions
# and Python's (U+FEFF, U+0085). Tab, CR and LF are left to the control-character rule.
WHITE_SPACE = r"\t\n\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"


def _text(max_length=None, *, multiline=False, required=False, **extra):
    """A string as the API reads it: no control characters (tab, CR and LF only in multi-line text);
    a required one holds more than white space, which is stripped."""
    refused = CONTROL_CHARACTERS if multiline else CONTROL_CHARACTERS_SINGLE_LINE
    if required:
        schema = {"type": "string", "minLength": 1,
                  "pattern": f"^[^{refused}]*[^{WHITE_SPACE}{refused}][^{refused}]*$"}
    else:
        schema = {"type": "string", "pattern": f"^[^{refused}]*$"}
    if max_length is not None:
        schema["maxLength"] = max_length
    return {**schema, **extra}


VERSION = {"type": "integer", "minimum": 1, "maximum": MAX_ID,
           "description": "The item's `version` as read; another one is a 409."}


def _ref(name):
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema):
    """JSON Schema 2020-12 spelling of "or null" (an enum lists null too)."""
    kind = schema.get("type", "string")
    schema = {**schema, "type": [kind, "null"] if isinstance(kind, str) else [*kind, "null"]}
    if "enum" in schema:
        schema["enum"] = [*schema["enum"], None]
    return schema


def _optional(schema):
    """A request body key that may be null: the API reads null as not given."""
    return _nullable(schema)


def _empty_or(schema):
    """A request body key where null or an empty string means not given."""
    return {"anyOf": [schema, {"enum": ["", None]}], "description": schema.get("description", "")}


def _clearable(schema):
    """A type-specific field as a client sends it: null or blank (white space only) leaves it empty."""
    blank = f"^[{WHITE_SPACE}]*$"
    return {"anyOf": [schema, {"type": "null"}, {"type": "string", "pattern": blank}],
            "description": schema.get("description", "")}


def _field_schema(spec):
    schema = {"description": spec.help or spec.title}
    if spec.kind in ("string", "text"):
        schema.update(_text(spec.max_length, multiline=spec.kind == "text"))
        if spec.pattern:
            schema["pattern"] = spec.pattern
    elif spec.kind == "date":
        schema.update(type="string", format="date")
    elif spec.kind == "decimal":
        schema.update(type="string", pattern=POSITIVE_DECIMAL_PATTERN if spec.positive else DECIMAL_PATTERN,
                      description=f"{spec.title}: a decimal string with at most 2 decimal places, e.g. \"12.50\""
                                  + ("; more than 0" if spec.positive else ""))
    elif spec.kind == "currency":
        schema.update(type="string", pattern="^[A-Za-z]{3}$", description="ISO 4217 code, e.g. EUR")
    elif spec.kind == "choice":
        schema.update(type="string", enum=list(spec.choices))
    elif spec.kind == "ref":
        schema.update(type="string", pattern=r"^BO-\d{6,}$", description="A work item reference, e.g. BO-000123")
    else:
        raise AssertionError(f"no OpenAPI mapping for field kind {spec.kind}")
    return schema


def fields_schemas():
    """Per type: NewFields_<type> (what a client sends) and Fields_<type> (what an item carries);
    AnyFields, any type's fields, where the request does not say the item's type."""
    schemas = {}
    every_field = {}
    for work_type, specs in FIELDS.items():
        properties = {spec.name: _field_schema(spec) for spec in specs}
        every_field.update(properties)
        new = {"type": "object", "additionalProperties": False,
               "properties": {spec.name: properties[spec.name] if spec.required else _clearable(properties[spec.name])
                              for spec in specs},
               "description": f"Type-specific fields of a {work_type} item."}
        required = [spec.name for spec in specs if spec.required]
        if required:
            new["required"] = required
        schemas[f"NewFields_{work_type}"] = new
        schemas[f"Fields_{work_type}"] = {
            "type": "object", "additionalProperties": False,
            "properties": {name: _nullable(schema) for name, schema in properties.items()},
            "required": [spec.name for spec in specs],
        }
    schemas["AnyFields"] = {
        "type": "object", "additionalProperties": False,
        "properties": {name: _clearable(schema) for name, schema in sorted(every_field.items())},
        "description": "Fields of the item's type (see NewFields_<type>); a field of another type is a 422.",
    }
    schemas["FieldChanges"] = {"allOf": [_ref("AnyFields")], "minProperties": 1}
    return schemas


def _fields_by_type(prefix):
    """`fields` follows `type`: one if/then per work type; a new item of a type with required fields
    needs `fields`."""
    rules = []
    for work_type, specs in FIELDS.items():
        then = {"properties": {"fields": _ref(f"{prefix}_{work_type}")}}
        if prefix == "NewFields" and any(spec.required for spec in specs):
            then["required"] = ["fields"]
        rules.append({"if": {"properties": {"type": {"const": work_type}}, "required": ["type"]}, "then": then})
    return rules


def _error_response(description):
    return {"description": description, "content": {"application/json": {"schema": _ref("Error")}}}


def _json(schema_name, description):
    return {"description": description, "content": {"application/json": {"schema": _ref(schema_name)}}}


def _body(schema_name):
    return {"required": True, "content": {"application/json": {"schema": _ref(schema_name)}}}


REF_PARAM = {"name": "ref", "in": "path", "required": True, "description": "Work item reference, e.g. BO-000123",
             "schema": {"type": "string", "pattern": r"^[Bb][Oo]-\d{6,}$"}, "example": "BO-000123"}
ATTACHMENT_PARAM = {"name": "attachment_id", "in": "path", "required": True, "description": "A document's id",
                    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID}}
STEP_PARAM = {"name": "step_id", "in": "path", "required": True, "description": "A step's `id` in the checklist",
              "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID}, "example": 1}
ERRORS = {
    "401": {"$ref": "#/components/responses/Unauthorized"},
    "404": {"$ref": "#/components/responses/NotFound"},
}
QUERY_ERROR = {"$ref": "#/components/responses/BadQuery"}
BODY_ERRORS = {
    "400": {"$ref": "#/components/responses/BadRequest"},
    "415": {"$ref": "#/components/responses/UnsupportedMediaType"},
    "422": {"$ref": "#/components/responses/Invalid"},
}


def _list_parameters():
    def query(name, description, schema):
        return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}

    return [
        query("status", "Only items in this status.", {"type": "string", "enum": list(STATUSES)}),
        query("type", "Only items of this type.", {"type": "string", "enum": list(TYPES)}),
        query("team", "Only items of the team with this name.", _text(required=True)),
        query("assignee", "An email address, `me` for the caller, or `none` for unassigned items.",
              _text(required=True)),
        query("priority", "Only items with this priority.", {"type": "string", "enum": list(PRIORITIES)}),
        query("tag", "Only items carrying this tag (normalised as PUT /items/{ref}/tags does).", _text()),
        query("limit", "Page size.", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT,
                                      "default": DEFAULT_LIMIT}),
        query("cursor", "The `next_cursor` of the previous page (opaque).", _text()),
    ]


def _component_schemas():
    datetime = {"type": "string", "format": "date-time", "description": "ISO 8601, UTC, ending in Z"}
    email = {"type": "string", "format": "email"}
    schemas = {
        "Error": {
            "type": "object", "required": ["error"],
            "properties": {"error": {
                "type": "object", "required": ["code", "message", "fields"],
                "properties": {
                    "code": {"type": "string", "examples": ["invalid", "not_found", "conflict"]},
                    "message": {"type": "string"},
                    "fields": {"type": "object", "additionalProperties": {"type": "string"},
                               "description": "Problem per field; type-specific fields are named `fields.<name>`."},
                },
            }},
        },
        "Sla": {
            "type": "object",
            "required": ["policy", "state", "paused", "first_response_due", "resolution_due", "next_due",
                         "next_check_at", "first_responded_at", "remaining_minutes", "escalation_level"],
            "properties": {
                "policy": {"type": ["string", "null"]},
                "first_response_due": _nullable(datetime),
                "resolution_due": _nullable(datetime),
                "next_due": _nullable(datetime),
                "state": {"type": "string", "enum": list(SLA_STATES), "description": "As of the response."},
                "paused": {"type": "boolean", "description": "The clock is stopped (a pending status)."},
                "next_check_at": {**_nullable(datetime),
                                  "description": "When the next warning, breach or escalation step is due."},
                "first_responded_at": _nullable(datetime),
                "remaining_minutes": {"type": ["number", "null"],
                                      "description": "Business minutes to next_due, to one decimal; negative when "
                                                     "overdue, null when paused or stopped."},
                "escalation_level": {"type": "integer", "minimum": 0,
                                     "description": "0 until breached, then the highest ladder level reached."},
            },
        },
        "Item": {
            "type": "object",
            "required": ["ref", "type", "status", "priority", "team", "assignee", "requester", "subject",
                         "description", "fields", "created_at", "updated_at", "version", "needs_attention",
                         "escalation_level", "sla", "tags"],
            "properties": {
                "ref": {"type": "string", "examples": ["BO-000123"]},
                "type": {"type": "string", "enum": list(TYPES)},
                "status": {"type": "string", "enum": list(STATUSES)},
                "allowed_transitions": {"type": "array", "items": {"type": "string", "enum": list(STATUSES)}},
                "priority": {"type": "string", "enum": list(PRIORITIES)},
                "source": {"type": "string"},
                "team": {"type": "string", "description": "Team name"},
                "assignee": _nullable(email),
                "requester": {"type": "object", "properties": {"email": _nullable(email),
                                                               "name": {"type": ["string", "null"]}}},
                "subject": {"type": "string"},
                "description": {"type": "string"},
                "fields": {"type": "object", "description": "Type-specific fields; see Fields_<type>."},
                "created_at": datetime,
                "updated_at": datetime,
                "version": {"type": "integer", "description": "Send back as `version` to detect concurrent edits."},
                "needs_attention": {"type": "boolean"},
                "escalation_level": {"type": "integer"},
                "sla": _ref("Sla"),
                "tags": {"type": "array", "items": {"type": "string"}, "description": "In alphabetical order."},
            },
            "allOf": _fields_by_type("Fields"),
        },
        "ItemList": {
            "type": "object", "required": ["items", "next_cursor"],
            "properties": {"items": {"type": "array", "items": _ref("Item")},
                           "next_cursor": {"type": ["string", "null"],
                                           "description": "Pass as `cursor` for the next page; null on the last."}},
        },
        "NewItem": {
            "type": "object", "additionalProperties": False, "required": ["subject"],
            "properties": {
                "type": _optional({"type": "string", "enum": list(TYPES),
                                   "description": "Left out, routing rules decide (default general)."}),
                "subject": _text(MAX_SUBJECT, required=True),
                "description": _optional(_text(MAX_BODY, multiline=True)),
                "priority": _optional({"type": "string", "enum": list(PRIORITIES)}),
                "team": _optional(_text(description="Team name; left out or empty, routing decides.")),
                "requester_email": _empty_or(email),
                "requester_name": _optional(_text(MAX_NAME)),
                "assignee": _empty_or({**email, "description": "Email of a member of the item's team."}),
                "fields": {"anyOf": [_ref("AnyFields"), {"type": "null"}],
                           "description": "Type-specific fields; see NewFields_<type>. Without `type`, those of "
                                          "the type routing decides."},
            },
            "allOf": _fields_by_type("NewFields"),
            "examples": [{"type": "return", "subject": "Broken kettle", "description": "It leaks.", "priority": "high",
                          "team": "Returns", "requester_email": "ann@example.com", "requester_name": "Ann Customer",
                          "fields": {"order_number": "ORD-1001", "purchase_date": "2026-11-01", "amount": "49.90",
                                     "currency": "EUR", "reason": "Wrong size"}}],
        },
        "Assign": {
            "type": "object", "additionalProperties": False, "required": ["assignee"],
            "properties": {"assignee": {**_nullable(email), "description": "null unassigns"},
                           "version": _optional(VERSION)},
            "examples": [{"assignee": "priya@example.com"}, {"assignee": None, "version": 4}],
        },
        "Reclassify": {
            "type": "object", "additionalProperties": False, "minProperties": 1,
            "description": "At least one of type, priority and team. Changing the team needs a supervisor of "
                           "the item's current team; an assignee who is not a member of the new team is dropped.",
            "properties": {"type": _optional({"type": "string", "enum": list(TYPES)}),
                           "priority": _optional({"type": "string", "enum": list(PRIORITIES)}),
                           "team": _optional(_text(required=True, description="Team name")),
                           "version": _optional(VERSION)},
            "anyOf": [{"required": [key], "properties": {key: {"type": "string"}}} for key in RECLASSIFY_CHANGES],
            "examples": [{"priority": "urgent"}, {"team": "Payments", "type": "discrepancy_fix", "version": 4}],
        },
        "ChangeStatus": {
            "type": "object", "additionalProperties": False, "required": ["status"],
            "properties": {"status": {"type": "string", "enum": list(STATUSES)},
                           "comment": _optional(_text(multiline=True)), "version": _optional(VERSION)},
            "examples": [{"status": "open"}, {"status": "pending_customer", "comment": "Asked for photos."}],
        },
        "NewNote": {
            "type": "object", "additionalProperties": False, "required": ["body"],
            "properties": {"body": _text(MAX_BODY, multiline=True, required=True)},
            "examples": [{"body": "Called the customer; photos are on the way."}],
        },
        "Note": {
            "type": "object", "required": ["id", "kind", "body", "author", "created_at"],
            "properties": {"id": {"type": "integer"}, "kind": {"type": "string", "const": "note"},
                           "body": {"type": "string"}, "author": _nullable(email), "created_at": datetime},
        },
        "Event": {
            "type": "object", "required": ["id", "kind", "at", "actor", "data"],
            "properties": {"id": {"type": "integer"},
                           "kind": {"type": "string", "examples": ["created", "assigned", "status_changed"]},
                           "at": datetime,
                           "actor": {"type": "string", "description": "User email, `system` or `worker`"},
                           "data": {"type": "object"}},
        },
        "EventList": {"type": "object", "required": ["events"],
                      "properties": {"events": {"type": "array", "items": _ref("Event")}}},
        "Check": {
            "type": "object", "required": ["name", "status", "message", "data", "mandatory", "run", "at"],
            "properties": {"name": {"type": "string"}, "status": {"type": "string", "enum": list(CHECK_STATUSES)},
                           "message": {"type": "string"},
                           "data": {"type": "object", "description": "Details; `related_refs` lists other items "
                                                                     "the result points at (duplicates)."},
                           "mandatory": {"type": "boolean",
                                         "description": "A failed mandatory check marks the item needs_attention."},
                           "run": {"type": ["string", "null"],
                                   "description": "v<version> for automatic runs, rerun-<key> for re-runs"},
                           "at": datetime},
        },
        "CheckList": {"type": "object", "required": ["checks"],
                      "properties": {"checks": {"type": "array", "items": _ref("Check"),
                                                "description": "The latest result of each check."}}},
        "CheckRun": {
            "type": "object", "required": ["run", "checks", "results"],
            "properties": {"run": {"type": "string", "description": "The key of this run (see Check.run)."},
                           "checks": {"type": "array", "items": {"type": "string"},
                                      "description": "The checks that will run, in order."},
                           "results": {"type": "string", "description": "Where the results will appear."}},
        },
        "ChecklistStep": {
            "type": "object", "required": ["id", "position", "text", "mandatory", "ticked", "ticked_by", "ticked_at"],
            "properties": {"id": {"type": "integer"}, "position": {"type": "integer"}, "text": {"type": "string"},
                           "mandatory": {"type": "boolean",
                                         "description": "An open mandatory step blocks resolving the item."},
                           "ticked": {"type": "boolean"}, "ticked_by": _nullable(email),
                           "ticked_at": _nullable(datetime)},
        },
        "Checklist": {
            "type": "object", "required": ["steps", "open_mandatory"],
            "properties": {"steps": {"type": "array", "items": _ref("ChecklistStep"),
                                     "description": "The active steps of the item's team and type, in order."},
                           "open_mandatory": {"type": "integer", "minimum": 0,
                                              "description": "Mandatory steps not ticked; resolving waits for 0."}},
        },
        "UpdateFields": {
            "type": "object", "additionalProperties": False, "required": ["fields"],
            "description": "Only the fields given change; an empty string or null clears a field. Items "
                           "awaiting approval cannot change.",
            "properties": {"fields": _ref("FieldChanges"), "version": _optional(VERSION)},
            "examples": [{"fields": {"amount": "39.90", "reason": ""}}],
        },
        "Upload": {
            "type": "object", "required": ["file"],
            "properties": {"file": {"type": "string", "format": "binary",
                                    "description": "The document: one of the team's allowed types by content "
                                                   "(PDF, PNG, JPEG or TIFF by default), within its size limit."}},
        },
        "Attachment": {
            "type": "object", "required": ["id", "filename", "content_type", "size", "sha256", "created_at"],
            "properties": {"id": {"type": "integer"}, "filename": {"type": "string"},
                           "content_type": {"type": "string", "description": "Sniffed from the content"},
                           "size": {"type": "integer"}, "sha256": {"type": "string"}, "created_at": datetime},
        },
        "NewVerdict": {
            "type": "object", "additionalProperties": False, "required": ["verdict"],
            "description": "Rejected needs a reason from the team's list (see DocumentList.rejection_reasons); "
                           "resubmission_needed emails the requester for a new document and waits for them.",
            "properties": {"verdict": {"type": "string", "enum": list(VERDICTS)},
                           "reason": _optional(_text(MAX_REASON, multiline=True)),
                           "note": _optional(_text(MAX_NOTE, multiline=True))},
            "examples": [{"verdict": "verified"}, {"verdict": "rejected", "reason": "Expired"}],
        },
        "Verdict": {
            "type": "object", "required": ["id", "attachment_id", "verdict", "reason", "note", "decided_by",
                                           "decided_at"],
            "properties": {"id": {"type": "integer"}, "attachment_id": {"type": "integer"},
                           "verdict": {"type": "string", "enum": list(VERDICTS)},
                           "reason": _nullable({"type": "string"}), "note": _nullable({"type": "string"}),
                           "decided_by": _nullable({"type": "string"}), "decided_at": datetime},
        },
        "Document": {
            "allOf": [_ref("Attachment"), {"type": "object", "required": ["verdict"],
                                           "properties": {"verdict": {"anyOf": [_ref("Verdict"),
                                                                                {"type": "null"}]}}}],
        },
        "DocumentList": {
            "type": "object",
            "required": ["documents", "rejection_reasons", "failed_checks", "overridden", "waiting_for_document"],
            "properties": {"documents": {"type": "array", "items": _ref("Document")},
                           "rejection_reasons": {"type": "array", "items": {"type": "string"}},
                           "failed_checks": {"type": "array", "items": {"type": "string"}},
                           "overridden": {"type": "boolean"}, "waiting_for_document": {"type": "boolean"}},
        },
        "NewOverride": {
            "type": "object", "additionalProperties": False, "required": ["reason"],
            "properties": {"reason": _text(MAX_OVERRIDE_REASON, multiline=True, required=True)},
            "examples": [{"reason": "Renewal confirmed by the passport office on the phone."}],
        },
        "Override": {
            "type": "object", "required": ["id", "checks", "reason", "decided_by", "decided_at"],
            "properties": {"id": {"type": "integer"}, "checks": {"type": "array", "items": {"type": "string"}},
                           "reason": {"type": "string"}, "decided_by": _nullable({"type": "string"}),
                           "decided_at": datetime},
        },
        "Decision": {
            "type": "object", "additionalProperties": False, "required": ["decision"],
            "properties": {"decision": {"type": "string", "enum": ["approve", "reject"]},
                           "comment": _optional(_text(MAX_COMMENT, multiline=True, description="Required to reject."))},
            "if": {"properties": {"decision": {"const": "reject"}}, "required": ["decision"]},
            "examples": [{"decision": "approve"}, {"decision": "reject", "comment": "The receipt is for another order."}],
            "then": {"required": ["comment"],
                     "properties": {"comment": _text(MAX_COMMENT, multiline=True, required=True)}},
        },
        "Approval": {
            "type": "object",
            "required": ["id", "ref", "team", "type", "action", "status", "requested_by", "requested_at", "comment",
                         "amount", "currency", "base_amount", "base_currency", "threshold", "may_decide"],
            "properties": {
                "id": {"type": "integer"}, "ref": {"type": "string"}, "team": {"type": "string"},
                "type": {"type": "string", "enum": list(TYPES)}, "action": {"type": "string"},
                "status": {"type": "string", "enum": list(APPROVAL_STATUSES)},
                "requested_by": _nullable(email), "requested_at": datetime, "comment": {"type": ["string", "null"]},
                "amount": {"type": ["string", "null"], "pattern": DECIMAL_PATTERN},
                "currency": {"type": ["string", "null"]},
                "base_amount": {"type": ["string", "null"], "description": "null when no exchange rate converts it"},
                "base_currency": {"type": ["string", "null"]},
                "threshold": {"type": ["string", "null"], "description": "The team's limit, in base_currency"},
                "may_decide": {"type": "boolean",
                               "description": "The caller may decide it (false for their own request)."},
            },
        },
        "HandBack": {
            "type": "object", "additionalProperties": False, "required": ["reason"],
            "properties": {"reason": _text(MAX_HAND_ON_TEXT, multiline=True, required=True),
                           "version": _optional(VERSION)},
            "examples": [{"reason": "Needs someone who speaks German."}],
        },
        "Pass": {
            "type": "object", "additionalProperties": False, "required": ["to"],
            "properties": {"to": {**email, "description": "An active member of the item's team with room"},
                           "note": _optional(_text(MAX_HAND_ON_TEXT, multiline=True)),
                           "version": _optional(VERSION)},
            "examples": [{"to": "priya@example.com", "note": "You handled their last return."}],
        },
        "Watching": {
            "type": "object", "required": ["ref", "watching", "watchers"],
            "properties": {"ref": {"type": "string"}, "watching": {"type": "boolean"},
                           "watchers": {"type": "integer", "minimum": 0}},
        },
        "ApprovalList": {
            "type": "object", "required": ["approvals", "next_cursor"],
            "properties": {"approvals": {"type": "array", "items": _ref("Approval")},
                           "next_cursor": {"type": ["string", "null"]}},
        },
    }
    schemas.update(fields_schemas())
    return schemas


def _tick_operation(operation_id, verb):
    return {
        "operationId": operation_id, "summary": f"{verb} a step of the item's checklist",
        "description": "Doing it twice changes nothing. Only the assignee, a supervisor of the item's team or an "
                       "admin, and only while the item is open and not awaiting approval (422).",
        "parameters": [REF_PARAM, STEP_PARAM],
        "responses": {"200": _json("Checklist", "The checklist"), **ERRORS,
                      "403": {"$ref": "#/components/responses/Forbidden"}, "422": BODY_ERRORS["422"]},
    }


def build_spec():
    item_ops = {
        "get": {
            "operationId": "getItem", "summary": "One work item", "parameters": [REF_PARAM],
            "responses": {"200": _json("Item", "The item"), **ERRORS},
        },
        "patch": {
            "operationId": "reclassifyItem",
            "summary": "Change type, priority or team; the SLA policy and due times are recalculated",
            "parameters": [REF_PARAM], "requestBody": _body("Reclassify"),
            "responses": {"200": _json("Item", "The updated item"), **ERRORS, **BODY_ERRORS,
                          "403": {"$ref": "#/components/responses/Forbidden"},
                          "409": {"$ref": "#/components/responses/Conflict"}},
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Backdesk API", "version": "1",
                 "description": "Work items for back-office queues. Every endpoint except this document needs "
                                "`Authorization: Bearer <token>` (create one with `flask --app wsgi users token "
                                "EMAIL`). Items of teams the token's user is not in are reported as not found. "
                                "A token expires (API_TOKEN_DAYS) and can be revoked (401); it carries scopes: "
                                "`read` for GET, `write` for changes, `intake` or `write` to create items, "
                                "else 403."},
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearerAuth": []}],
        "paths": {
            "/openapi.json": {"get": {
                "operationId": "getOpenApi", "summary": "This document", "security": [],
                "responses": {"200": {"description": "OpenAPI document",
                                      "content": {"application/json": {"schema": {"type": "object"}}}}},
            }},
            "/items": {
                "post": {
                    "operationId": "createItem", "summary": "Create a work item",
                    "requestBody": _body("NewItem"),
                    "responses": {
                        "201": {**_json("Item", "Created"),
                                "headers": {"Location": {"schema": {"type": "string"},
                                                         "description": "URL of the new item"}}},
                        **BODY_ERRORS, "401": ERRORS["401"],
                        "403": {"$ref": "#/components/responses/Forbidden"},
                    },
                },
                "get": {
                    "operationId": "listItems", "summary": "Visible work items, newest first",
                    "parameters": _list_parameters(),
                    "responses": {"200": _json("ItemList", "A page of items"), "401": ERRORS["401"],
                                  "400": QUERY_ERROR, "422": BODY_ERRORS["422"]},
                },
            },
            "/items/{ref}": item_ops,
            "/items/{ref}/assign": {"post": {
                "operationId": "assignItem", "summary": "Assign, reassign or unassign",
                "parameters": [REF_PARAM], "requestBody": _body("Assign"),
                "responses": {"200": _json("Item", "The updated item"), **ERRORS, **BODY_ERRORS,
                              "403": {"$ref": "#/components/responses/Forbidden"},
                              "409": {"$ref": "#/components/responses/Conflict"}},
            }},
            "/items/{ref}/status": {"post": {
                "operationId": "changeStatus",
                "summary": "Change status (resolving above the team's threshold asks for approval)",
                "parameters": [REF_PARAM], "requestBody": _body("ChangeStatus"),
                "responses": {"200": _json("Item", "The updated item"), **ERRORS, **BODY_ERRORS,
                              "403": {"$ref": "#/components/responses/Forbidden"},
                              "409": {"$ref": "#/components/responses/Conflict"}},
            }},
            "/items/{ref}/notes": {"post": {
                "operationId": "addNote", "summary": "Add an internal note (never sent to the requester)",
                "parameters": [REF_PARAM], "requestBody": _body("NewNote"),
                "responses": {"201": _json("Note", "The note"), **ERRORS, **BODY_ERRORS},
            }},
            "/items/{ref}/events": {"get": {
                "operationId": "listEvents", "summary": "The item's history, oldest first",
                "parameters": [REF_PARAM], "responses": {"200": _json("EventList", "Events"), **ERRORS},
            }},
            "/items/{ref}/checks": {"get": {
                "operationId": "listChecks", "summary": "Latest result of each automated check",
                "parameters": [REF_PARAM], "responses": {"200": _json("CheckList", "Check results"), **ERRORS},
            }},
            "/items/{ref}/checks/run": {"post": {
                "operationId": "runChecks",
                "summary": "Run every check of the item again, on a worker after the request",
                "parameters": [REF_PARAM], "responses": {"202": _json("CheckRun", "The run is queued"), **ERRORS},
            }},
            "/items/{ref}/checks/override": {"post": {
                "operationId": "overrideChecks",
                "summary": "Let a document verification be resolved as verified despite its failed checks",
                "description": "A supervisor of the item's team only; covers the checks failing now.",
                "parameters": [REF_PARAM], "requestBody": _body("NewOverride"),
                "responses": {"201": _json("Override", "The override"), **ERRORS, **BODY_ERRORS,
                              "403": {"$ref": "#/components/responses/Forbidden"}},
            }},
            "/items/{ref}/documents": {"get": {
                "operationId": "listDocuments",
                "summary": "A document verification's documents, each with its current verdict",
                "parameters": [REF_PARAM],
                "responses": {"200": _json("DocumentList", "The documents"), **ERRORS,
                              "422": {"$ref": "#/components/responses/Invalid"}},
            }},
            "/items/{ref}/documents/{attachment_id}/verdict": {"post": {
                "operationId": "recordVerdict", "summary": "Give a document of the item a verdict",
                "parameters": [REF_PARAM, ATTACHMENT_PARAM], "requestBody": _body("NewVerdict"),
                "responses": {"201": _json("Verdict", "The verdict"), **ERRORS, **BODY_ERRORS,
                              "403": {"$ref": "#/components/responses/Forbidden"}},
            }},
            "/items/{ref}/checklist": {"get": {
                "operationId": "getChecklist", "summary": "The item's checklist: its team's steps for its type",
                "parameters": [REF_PARAM], "responses": {"200": _json("Checklist", "The checklist"), **ERRORS},
            }},
            "/items/{ref}/checklist/{step_id}/tick": {"post": _tick_operation("tickChecklistStep", "Tick")},
            "/items/{ref}/checklist/{step_id}/untick": {"post": _tick_operation("untickChecklistStep", "Untick")},
            "/items/{ref}/fields": {"patch": {
                "operationId": "updateFields", "summary": "Change type-specific fields; the checks run again",
                "parameters": [REF_PARAM], "requestBody": _body("UpdateFields"),
                "responses": {"200": _json("Item", "The updated item"), **ERRORS, **BODY_ERRORS,
                              "403": {"$ref": "#/components/responses/Forbidden"},
                              "409": {"$ref": "#/components/responses/Conflict"}},
            }},
            "/items/{ref}/attachments": {"post": {
                "operationId": "addAttachment", "summary": "Upload a file to the item; the checks run again",
                "description": "The team's allowed document types and size limit apply, the type sniffed from the "
                               "content; executables and empty files are refused (422, saying why). Only the "
                               "assignee, a supervisor of the item's team or an admin may add files, and only to "
                               "an open item.",
                "parameters": [REF_PARAM],
                "requestBody": {"required": True,
                                "content": {"multipart/form-data": {"schema": _ref("Upload")}}},
                "responses": {"201": _json("Attachment", "The stored file"), **ERRORS, **BODY_ERRORS,
                              "403": {"$ref": "#/components/responses/Forbidden"},
                              "413": _error_response("The file is larger than the request limit")},
            }},
            "/items/{ref}/approval": {"post": {
                "operationId": "decideApproval",
                "summary": "Approve (the item is resolved) or reject (it is open again) its pending approval",
                "description": "Only a supervisor or designated checker of the item's team, never the person who "
                               "asked for the approval (403).",
                "parameters": [REF_PARAM], "requestBody": _body("Decision"),
                "responses": {"200": _json("Item", "The decided item"), **ERRORS, **BODY_ERRORS,
                              "403": {"$ref": "#/components/responses/Forbidden"}},
            }},
            "/items/{ref}/tags": {"put": {
                "operationId": "changeTags", "summary": "Add and remove the item's tags",
                "description": f"Tags are stored normalised: lower case, white space inside as `-`, at most {MAX_TAG} "
                               f"characters of letters (any alphabet), digits, `-` and `_`; anything else is a 422. "
                               f"An item carries at most {MAX_TAGS} tags. Adding a tag it has or removing one it "
                               "lacks changes nothing. Only the assignee, a supervisor of the item's team or an "
                               "admin (403).",
                "parameters": [REF_PARAM],
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "additionalProperties": False,
                    "properties": {key: _optional({"type": "array", "items": _text(required=True)})
                                   for key in ("add", "remove")},
                    "anyOf": [{"required": [key], "properties": {key: {"type": "array", "minItems": 1}}}
                              for key in ("add", "remove")],
                    "examples": [{"add": ["vip", "Fraud check"]}, {"remove": ["chargeback"]}],
                }}}},
                "responses": {"200": {"description": "The item's tags", "content": {"application/json": {"schema": {
                    "type": "object", "required": ["ref", "tags"],
                    "properties": {"ref": {"type": "string"},
                                   "tags": {"type": "array", "items": {"type": "string"},
                                            "description": "In alphabetical order."}}}}}},
                              **ERRORS, **BODY_ERRORS, "403": {"$ref": "#/components/responses/Forbidden"}},
            }},
            # Handing on and watching (services.assignment.handing, services.items.watchers).
            "/items/{ref}/hand-back": {"post": {
                "operationId": "handBackItem", "summary": "Hand the item back to the team's unassigned queue",
                "description": "The assignee or a supervisor of the item's team (403); the item must be open "
                               "and assigned (422). The reason is kept in the `handed_back` event.",
                "parameters": [REF_PARAM], "requestBody": _body("HandBack"),
                "responses": {"200": _json("Item", "The updated item"), **ERRORS, **BODY_ERRORS,
                              "403": {"$ref": "#/components/responses/Forbidden"},
                              "409": {"$ref": "#/components/responses/Conflict"}},
            }},
            "/items/{ref}/pass": {"post": {
                "operationId": "passItem", "summary": "Pass the item to a colleague of its team",
                "description": "The assignee only (403), where the team lets executives pass items; the colleague "
                               "must be an active member, in the office, with room (422). They are notified.",
                "parameters": [REF_PARAM], "requestBody": _body("Pass"),
                "responses": {"200": _json("Item", "The updated item"), **ERRORS, **BODY_ERRORS,
                              "403": {"$ref": "#/components/responses/Forbidden"},
                              "409": {"$ref": "#/components/responses/Conflict"}},
            }},
            "/items/{ref}/watch": {
                "post": {"operationId": "watchItem", "summary": "Watch the item: be told of its status changes, "
                                                                "the requester's replies and notes",
                         "parameters": [REF_PARAM],
                         "responses": {"200": _json("Watching", "Now watching"), **ERRORS,
                                       "403": {"$ref": "#/components/responses/Forbidden"}}},
                "delete": {"operationId": "unwatchItem", "summary": "Stop watching the item",
                           "parameters": [REF_PARAM],
                           "responses": {"200": _json("Watching", "Not watching"), **ERRORS,
                                         "403": {"$ref": "#/components/responses/Forbidden"}}},
            },
            "/requesters/{email}/items": {"get": {
                "operationId": "listRequesterItems",
                "summary": "A requester's visible items, open and closed, newest first",
                "description": "The items whose requester is `email` (URL-encoded; as given or in lower case) in "
                               "the teams the caller may see. A requester with no such item is a 404, whether "
                               "or not other teams have items from them.",
                "parameters": [
                    {"name": "email", "in": "path", "required": True, "description": "The requester's address",
                     "schema": _text(MAX_EMAIL), "example": "anna@customer.example.com"},
                    {"name": "limit", "in": "query", "required": False, "description": "Page size.",
                     "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT}},
                    {"name": "cursor", "in": "query", "required": False,
                     "description": "The `next_cursor` of the previous page (opaque).", "schema": _text()},
                ],
                "responses": {"200": _json("ItemList", "A page of items"), **ERRORS,
                              "400": _error_response("A control character in the address or the query string"),
                              "422": BODY_ERRORS["422"]},
            }},
            "/approvals": {"get": {
                "operationId": "listApprovals",
                "summary": "Pending approvals the caller may decide or asked for, oldest first",
                "parameters": [
                    {"name": "limit", "in": "query", "required": False, "description": "Page size.",
                     "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT}},
                    {"name": "cursor", "in": "query", "required": False,
                     "description": "The `next_cursor` of the previous page (opaque).", "schema": _text()},
                ],
                "responses": {"200": _json("ApprovalList", "A page of approvals"), "401": ERRORS["401"],
                              "400": QUERY_ERROR, "422": BODY_ERRORS["422"]},
            }},
        },
        "components": {
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer",
                                               "description": "An API token from `flask users token EMAIL` or the "
                                                              "settings page, with scopes read, write, intake"}},
            "schemas": _component_schemas(),
            "responses": {
                "BadRequest": _error_response("Malformed JSON, or a body that is not a JSON object"),
                "BadQuery": _error_response("A query string with a control character, or with a number larger than "
                                            "any id (2147483647) outside free text"),
                "Unauthorized": _error_response("Missing, invalid or revoked token (see WWW-Authenticate)"),
                "Forbidden": _error_response("The token's user may not do this"),
                "NotFound": _error_response("No such item, or an item the user may not see"),
                "Conflict": _error_response("The item changed since `version` was read"),
                "UnsupportedMediaType": _error_response("The body was not sent as application/json"),
                "Invalid": _error_response("Well-formed but invalid; `error.fields` names each problem"),
            },
        },
    }
