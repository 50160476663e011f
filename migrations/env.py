"""Alembic environment, driven by Flask-Migrate (`flask --app wsgi db ...`).

- The database URL and metadata come from the Flask app, so DATABASE_URL selects the target.
- Batch mode is on (SQLite cannot ALTER most things), and column types are compared.
- Custom column types (UtcDateTime) are written into migrations as their plain SQLAlchemy type,
  so migration files never import application code.
- On SQLite, foreign keys are switched off while migrating: batch mode recreates tables, and
  dropping a table with ON DELETE CASCADE children would otherwise delete their rows.
"""
import logging
from logging.config import fileConfig

import sqlalchemy as sa
from alembic import context
from flask import current_app

config = context.config

# The app configures logging (queue_app/logging.py); the ini's logging sections only apply
# when nothing has configured it, e.g. Alembic run on its own.
if config.config_file_name is not None and not logging.getLogger().handlers:
    fileConfig(config.config_file_name, disable_existing_loggers=False)
logger = logging.getLogger("alembic.env")


def get_engine():
    return current_app.extensions["migrate"].db.engine


def get_engine_url():
    return get_engine().url.render_as_string(hide_password=False).replace("%", "%%")


config.set_main_option("sqlalchemy.url", get_engine_url())
target_db = current_app.extensions["migrate"].db


def get_metadata():
    if hasattr(target_db, "metadatas"):
        return target_db.metadatas[None]
    return target_db.metadata


def render_item(type_, obj, autogen_context):
    """Render TypeDecorators (e.g. UtcDateTime) as the SQLAlchemy type they store."""
    if type_ == "type" and isinstance(obj, sa.types.TypeDecorator):
        return f"sa.{obj.impl!r}"
    return False


def include_name(name, type_, parent_names):
    """Autogenerate leaves the full-text search index alone (FTS5 tables, GIN expression indexes):
    no model describes it; its migration and queue_app/db/search_index.py do."""
    from queue_app.db import search_index

    return not search_index.is_search_object(name)


def configure_args():
    args = dict(current_app.extensions["migrate"].configure_args)
    args.setdefault("include_name", include_name)
    args.setdefault("render_as_batch", True)
    args.setdefault("compare_type", True)
    args.setdefault("render_item", render_item)
    return args


def run_migrations_offline():
    """Emit SQL to stdout instead of running it (`flask db upgrade --sql`)."""
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=get_metadata(),
        literal_binds=True,
        **configure_args(),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online():
    def process_revision_directives(context_, revision, directives):
        # `flask db migrate` with no schema change writes no empty migration file.
        if getattr(config.cmd_opts, "autogenerate", False):
            script = directives[0]
            if script.upgrade_ops.is_empty():
                directives[:] = []
                logger.info("No changes in schema detected.")

    args = configure_args()
    args.setdefault("process_revision_directives", process_revision_directives)

    with get_engine().connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            connection.commit()
        try:
            context.configure(connection=connection, target_metadata=get_metadata(), **args)
            with context.begin_transaction():
                context.run_migrations()
            if sqlite:
                connection.commit()
                from queue_app.db import search_index

                if search_index.repair_sqlite_triggers(connection):  # a table rebuild dropped them
                    connection.commit()
                problems = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if problems:
                    raise RuntimeError(f"foreign key violations after migrating: {problems[:10]}")
        finally:
            if sqlite:
                connection.rollback()
                connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                connection.commit()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
