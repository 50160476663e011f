"""The only writer of ConfigChange rows (`audit_entries`): every change to what decides who may do
what (people's roles, teams and memberships, checkers, thresholds, SLA policies and calendars,
routing rules, mailboxes, mail field patterns, check settings, exchange rates, canned responses, checklist steps,
API tokens, two-step sign-in and the roles that require it, password links) and every security event
(sign-ins and their second step, failed sign-ins, lockouts, sign-outs, passwords changed or reset),
with actor, time, the object (kind, id and a readable label) and its values before and after.

The service that makes a change calls `changed` once, with `snapshot`s taken before and after
it: only the values that differ are kept (a save that changes nothing records nothing), a new
object has no before and a deleted one no after. Secrets (password and token hashes, IMAP
passwords) go in wrapped as Secret and are never stored: the entry says "[hidden]", and
"[hidden, changed]" when a new one replaced it. Values are stored as JSON (amounts and dates as
text). The caller commits, as always; the chain (services.audit.chain) seals the entry after.
"""
from datetime import date, datetime
from decimal import Decimal

from queue_app.db import sealing
from queue_app.models import ConfigChange
from queue_app.models.base import utcnow
from queue_app.services.items.events import actor_label

HIDDEN = "[hidden]"
HIDDEN_CHANGED = "[hidden, changed]"
MAX_LABEL = 255

# object_type -> what the admin page calls it
KINDS = {
    "user": "Person",
    "team": "Team",
    "checker": "Checker designation",
    "sla_policy": "SLA policy",
    "calendar": "Calendar",
    "routing_rule": "Routing rule",
    "mailbox": "Mailbox",
    "mail_field_pattern": "Mail field pattern",
    "check_settings": "Check settings",
    "exchange_rate": "Exchange rate",
    "canned_response": "Canned response",
    "checklist_step": "Checklist step",
    "api_token": "API token",
    "sign_in": "Sign-in",
    "mfa_policy": "Two-step sign-in requirement",
    "account_link": "Password link",
}
ACTIONS = ("created", "updated", "deleted", "sign_in", "sign_in_failed", "sign_in_locked", "sign_out",
           "password_changed", "sign_in_password", "mfa_enabled", "mfa_reset", "recovery_codes_regenerated",
           "recovery_code_used", "password_reset_requested", "password_reset", "invitation_sent",
           "invitation_accepted")


class Secret:
    """A secret value in a snapshot: compared by value, stored masked."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __eq__(self, other):
        return isinstance(other, Secret) and self.value == other.value

    def __hash__(self):
        return hash(self.value)


def plain(value):
    """A value as JSON stores it: amounts and dates as text, sets and tuples as lists."""
    if isinstance(value, Decimal):
        return f"{value:f}"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v) for v in value]
    return value


def snapshot(obj, fields, **extra):
    """The values of `fields` of `obj` (plus `extra`), for `changed`."""
    values = {name: getattr(obj, name) for name in fields}
    values.update(extra)
    return values


def _stored(values, other, side):
    out = {}
    for key, value in values.items():
        if isinstance(value, Secret):
            if not value.value:
                out[key] = None
            elif side == "after" and isinstance(other.get(key), Secret) and other[key].value and other[key] != value:
                out[key] = HIDDEN_CHANGED
            else:
                out[key] = HIDDEN
        else:
            out[key] = plain(value)
    return out


def label_of(obj):
    for name in ("email", "address", "name", "title"):
        value = getattr(obj, name, None)
        if value:
            return str(value)
    return f"#{getattr(obj, 'id', '?')}"


def changed(session, actor, kind, obj, before, after, *, label=None, action=None, now=None):
    """Record that `obj` (a model instance, or its id with `label`) of `kind` went from `before` to
    `after` (snapshots; None: it did not exist / no longer does). Returns the entry, or None when
    nothing differs."""
    if before is not None and after is not None:
        keys = [key for key in dict.fromkeys([*before, *after]) if before.get(key) != after.get(key)]
        if not keys and action is None:
            return None
        before = {key: before.get(key) for key in keys}
        after = {key: after.get(key) for key in keys}
    stored_before = _stored(before, after or {}, "before") if before is not None else None
    stored_after = _stored(after, before or {}, "after") if after is not None else None
    object_id = obj if isinstance(obj, int) or obj is None else obj.id
    if action is None:
        action = "created" if before is None else "deleted" if after is None else "updated"
    return _write(session, actor, action, kind, object_id, label or label_of(obj), stored_before, stored_after, now)


def security_event(session, actor, action, user, *, email, details=None, now=None):
    """A sign-in (action sign_in), failed sign-in (sign_in_failed, `user` None when no account has
    that email), lockout (sign_in_locked), sign-out or password change, of the account `user` or
    the `email` tried."""
    return _write(session, actor, action, "sign_in", user.id if user is not None else None,
                  (user.email if user is not None else (email or "").strip()) or "(no email)", None,
                  plain(dict(details or {})), now)


def _write(session, actor, action, kind, object_id, label, before, after, now):
    sealing.writing(session)
    entry = ConfigChange(at=now or utcnow(), actor_id=None if actor is None or isinstance(actor, str) else actor.id,
                         actor_label=actor_label(actor)[:MAX_LABEL], action=action, object_type=kind,
                         object_id=object_id, object_label=label[:MAX_LABEL], before=before, after=after)
    session.add(entry)
    return entry
