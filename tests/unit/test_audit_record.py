"""The audit trail's writer and the chain's hashing, without the web or the command line."""
from datetime import date, datetime, timezone
from decimal import Decimal
from types import SimpleNamespace

import sqlalchemy as sa

from queue_app.models import ConfigChange
from queue_app.services.audit import chain
from queue_app.services.audit import record as audit


def test_only_the_values_that_differ_are_kept(session, make_team):
    team = make_team(name="Returns")
    entry = audit.changed(session, "cli:root", "team", team, {"name": "Returns", "approval_threshold": None,
                                                                "work_types": ["return"]},
                          {"name": "Returns", "approval_threshold": Decimal("500.00"), "work_types": ["return"]})
    session.flush()
    assert (entry.action, entry.object_type, entry.object_id, entry.object_label) == (
        "updated", "team", team.id, "Returns")
    assert (entry.before, entry.after) == ({"approval_threshold": None}, {"approval_threshold": "500.00"})
    assert (entry.actor_id, entry.actor_label) == (None, "cli:root")


def test_nothing_changed_records_nothing(session, make_team):
    team = make_team()
    assert audit.changed(session, None, "team", team, {"name": team.name}, {"name": team.name}) is None
    session.flush()
    assert session.scalar(sa.select(sa.func.count()).select_from(ConfigChange)) == 0


def test_created_and_deleted_objects_have_no_before_or_no_after(session, make_user):
    user = make_user(email="nina@example.com")
    created = session.scalars(sa.select(ConfigChange).where(ConfigChange.object_type == "user")).one()
    assert created.before is None and created.after["email"] == "nina@example.com"
    deleted = audit.changed(session, user, "routing_rule", 7, {"name": "Refunds"}, None, label="Refunds")
    assert (deleted.action, deleted.object_id, deleted.before, deleted.after, deleted.actor_label) == (
        "deleted", 7, {"name": "Refunds"}, None, "nina@example.com")


def test_secrets_are_masked_and_only_said_to_have_changed(session):
    box = SimpleNamespace(id=3, address="in@example.com")
    entry = audit.changed(session, None, "mailbox", box, {"imap_password": audit.Secret(None), "imap_user": "a"},
                          {"imap_password": audit.Secret("pw-1"), "imap_user": "a"})
    assert (entry.before, entry.after) == ({"imap_password": None}, {"imap_password": "[hidden]"})
    entry = audit.changed(session, None, "mailbox", box, {"imap_password": audit.Secret("pw-1")},
                          {"imap_password": audit.Secret("pw-2")})
    assert (entry.before, entry.after) == ({"imap_password": "[hidden]"}, {"imap_password": "[hidden, changed]"})
    assert audit.changed(session, None, "mailbox", box, {"imap_password": audit.Secret("pw-2")},
                         {"imap_password": audit.Secret("pw-2")}) is None
    assert entry.object_label == "in@example.com"


def test_values_are_stored_as_json():
    assert audit.plain({"rate": Decimal("0.9200"), "from": date(2026, 11, 1), "days": {3, 4}}) == {
        "rate": "0.9200", "from": "2026-11-01", "days": [3, 4]}


def test_the_canonical_text_of_an_entry():
    at = datetime(2026, 12, 1, 11, 0, 0, 123456, tzinfo=timezone.utc)
    row = (12, 3, "status_changed", None, "ann\u00e9@example.com", at, '{"to": "open"}')
    assert chain.canonical("events", 5, row) == (
        '["events",5,12,3,"status_changed",null,"ann\\u00e9@example.com",1796122800123456,"{\\"to\\": \\"open\\"}"]')
    first = chain.entry_hash(chain.GENESIS, "events", 5, row)
    assert len(first) == 64 and first != chain.entry_hash("1" * 64, "events", 5, row)
    assert first != chain.entry_hash(chain.GENESIS, "events", 6, row)  # the position is part of it
