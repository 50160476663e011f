"""The migration chain builds exactly the schema the models describe, and unwinds cleanly.

Runs against a database of its own (a new SQLite file, or a new PostgreSQL database on
the server DATABASE_URL points at), never the session's test database.
"""
import uuid
from pathlib import Path

import flask_migrate
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from config import TestingConfig
from queue_app import create_app
from queue_app.db import search_index
from queue_app.extensions import db
from queue_app.services.items import search as items_search
from tests.conftest import database_is

MIGRATIONS = str(Path(__file__).resolve().parents[2] / "migrations")


@pytest.fixture
def fresh_database_url(app, tmp_path):
    """The URL of an empty database of the same kind as the test database."""
    if not database_is("postgresql"):
        yield f"sqlite:///{tmp_path / 'migrations.db'}"
        return
    server_url = sa.make_url(app.config["SQLALCHEMY_DATABASE_URI"])
    name = f"backdesk_migrations_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield server_url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture
def migration_app(fresh_database_url, tmp_path):
    cfg = TestingConfig.load()
    cfg.SQLALCHEMY_DATABASE_URI = fresh_database_url
    cfg.INSTANCE_DIR = str(tmp_path)
    cfg.OUTBOX_DELIVER_ON_COMMIT = False
    app = create_app(cfg)
    with app.app_context():
        yield app
        db.session.remove()
        db.engine.dispose()


def table_names():
    """The tables, less the full-text search index's own (FTS5 tables on SQLite), which no model describes."""
    return {name for name in sa.inspect(db.engine).get_table_names() if not search_index.is_search_object(name)}


def _not_search_object(name, _type, _parent_names):
    return not search_index.is_search_object(name)


def schema_drift():
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "include_name": _not_search_object})
        return compare_metadata(context, db.metadata)


def search_objects():
    """The search index's tables, triggers and indexes present in the database."""
    with db.engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            rows = conn.execute(sa.text("SELECT name FROM sqlite_master WHERE type IN ('table', 'trigger') "
                                        "AND name LIKE '%\\_fts%' ESCAPE '\\'"))  # not item_drafts
        else:
            rows = conn.execute(sa.text("SELECT indexname FROM pg_indexes "
                                        "WHERE indexname LIKE '%\\_fts%' ESCAPE '\\'"))
        return {name for name, in rows if not name.startswith(("work_items_fts_", "messages_fts_"))
                or name.endswith(("_ai", "_ad", "_au"))}


def test_upgrade_from_empty_matches_the_models_and_downgrade_unwinds(migration_app):
    assert table_names() == set()

    flask_migrate.upgrade(directory=MIGRATIONS)

    assert table_names() == set(db.metadata.tables) | {"alembic_version"}
    assert schema_drift() == [], "models and migrations differ: run `flask --app wsgi db migrate -m '...'`"

    flask_migrate.downgrade(directory=MIGRATIONS, revision="base")

    assert table_names() == {"alembic_version"}
    assert search_objects() == set()


def test_the_search_index_is_built_for_existing_rows_and_kept_current(migration_app):
    """The search migration indexes the rows already there, and what create_all builds is the same."""
    from tests import factories

    flask_migrate.upgrade(directory=MIGRATIONS, revision="16585e9bff31")
    with db.engine.begin() as conn:  # plain SQL: the models may describe later revisions
        conn.execute(sa.text("INSERT INTO teams (id, name, work_types, created_at) "
                             "VALUES (900, 'Old team', '[]', '2026-01-01 00:00:00')"))
        conn.execute(sa.text(
            "INSERT INTO work_items (id, ref, type, status, priority, source, subject, description, team_id, "
            "sla_state, created_at, updated_at, last_activity_at) VALUES (900, 'BO-000900', 'return', 'new', "
            "'normal', 'api', 'Cracked porcelain teapot', '', 900, 'on_track', '2026-01-01 00:00:00', "
            "'2026-01-01 00:00:00', '2026-01-01 00:00:00')"))
    flask_migrate.upgrade(directory=MIGRATIONS)
    expected = set(search_index.SQLITE_OBJECTS + search_index.SQLITE_TRIGGERS) if database_is("sqlite") \
        else set(search_index.PG_INDEXES)
    assert search_objects() == expected
    admin = factories.make_user(db.session, role="admin")
    new = factories.make_item(db.session, subject="Porcelain vase chipped")
    db.session.commit()

    found = items_search.search(db.session, admin, "porcelain").items

    assert {item.ref for item in found} == {"BO-000900", new.ref}


def test_constraint_names_follow_the_naming_convention(migration_app):
    flask_migrate.upgrade(directory=MIGRATIONS)
    inspector = sa.inspect(db.engine)

    assert inspector.get_pk_constraint("work_items")["name"] == "pk_work_items"
    assert {fk["name"] for fk in inspector.get_foreign_keys("events")} == {
        "fk_events_work_item_id_work_items", "fk_events_actor_id_users"}
    assert {uq["name"] for uq in inspector.get_unique_constraints("users")} == {"uq_users_email"}
    assert {ck["name"] for ck in inspector.get_check_constraints("work_items")} == {
        "ck_work_items_type", "ck_work_items_status", "ck_work_items_priority"}


def test_server_defaults_are_valid_on_this_database(migration_app):
    """Rows written by plain SQL (no ORM defaults) get the server defaults, booleans included."""
    flask_migrate.upgrade(directory=MIGRATIONS)
    with db.engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO users (email, name, password_hash, role, skills, session_nonce, created_at) "
            "VALUES ('a@example.com', 'A', 'x', 'admin', '[]', 'n', '2026-01-01 00:00:00')"))
        row = conn.execute(sa.text("SELECT is_active_user, timezone, capacity FROM users")).one()
    assert (bool(row.is_active_user), row.timezone, row.capacity) == (True, "UTC", 20)


def test_the_migrated_schema_accepts_a_work_item(migration_app):
    from tests import factories

    flask_migrate.upgrade(directory=MIGRATIONS)
    item = factories.make_item(db.session)
    db.session.commit()
    db.session.expire_all()
    row = db.session.execute(sa.text("SELECT ref, needs_attention, version FROM work_items WHERE id = :id"),
                             {"id": item.id}).one()
    assert (row.ref, bool(row.needs_attention), row.version) == (item.ref, False, item.version)


@pytest.mark.skipif(not database_is("sqlite"), reason="SQLite triggers")
def test_an_upgrade_restores_triggers_a_table_rebuild_dropped(migration_app):
    """Batch mode rebuilds tables on SQLite, which drops their triggers; the next upgrade puts them back."""
    from tests import factories

    flask_migrate.upgrade(directory=MIGRATIONS)
    with db.engine.begin() as conn:  # what dropping the table in a rebuild does
        for name in ("work_items_fts_ai", "work_items_fts_ad", "work_items_fts_au"):
            conn.exec_driver_sql(f"DROP TRIGGER {name}")
    item = factories.make_item(db.session, subject="Unindexed walrus")  # written while the trigger is missing
    admin = factories.make_user(db.session, role="admin")
    db.session.commit()
    assert items_search.search(db.session, admin, "walrus").items == []

    flask_migrate.upgrade(directory=MIGRATIONS)

    assert "work_items_fts_ai" in search_objects()
    assert [found.ref for found in items_search.search(db.session, admin, "walrus").items] == [item.ref]
