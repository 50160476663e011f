"""Backdesk: a work-queue system for back-office operations teams."""
from pathlib import Path

import sqlalchemy as sa
from flask import Flask

BASE_DIR = Path(__file__).resolve().parent.parent


def create_app(config=None):
    """Build the app: load config, bind extensions, register blueprints, errors and CLI.

    Nothing happens at import time, and no migration runs here (`flask db upgrade` does that).
    """
    from config import config_from_environment
    from queue_app import models  # noqa: F401  (every table registered)
    from queue_app.db import sealing, sqlite_writers
    from queue_app.db import search_index  # noqa: F401  (create_all builds the search index too)
    from queue_app.errors import register_error_handlers
    from queue_app.extensions import csrf, db, login_manager, migrate
    from queue_app.logging import configure_logging
    from queue_app.services.audit import chain
    from queue_app.web import security, signin_limits, templating

    app = Flask(__name__, template_folder=str(BASE_DIR / "templates"), instance_path=str(BASE_DIR / "instance"))
    cfg = config if config is not None else config_from_environment()
    app.config.from_mapping(cfg.as_dict() if hasattr(cfg, "as_dict") else cfg)
    Path(app.config.get("INSTANCE_DIR", app.instance_path)).mkdir(parents=True, exist_ok=True)
    configure_logging(app)
    if app.config.get("TRUSTED_PROXIES"):
        from werkzeug.middleware.proxy_fix import ProxyFix

        hops = app.config["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)

    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = sqlite_writers.engine_options(
        app.config["SQLALCHEMY_DATABASE_URI"], app.config.get("SQLALCHEMY_ENGINE_OPTIONS", {}))
    db.init_app(app)
    migrate.init_app(app, db, directory=str(BASE_DIR / "migrations"))
    csrf.init_app(app)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.session_protection = "strong"
    signin_limits.init_app(app)

    with app.app_context():
        _configure_engine(db.engine)

    templating.init_app(app)
    security.init_app(app)  # before the blueprints: their routes bind the bounded `int` converter
    sealing.seal_with(app, chain.seal)  # the audit chain links the entries of each commit as it commits
    _register_blueprints(app)
    register_error_handlers(app)

    from queue_app.cli import register_cli

    register_cli(app)
    return app


def _configure_engine(engine):
    """SQLite needs WAL and a busy timeout for web + worker processes writing at once."""
    if engine.dialect.name != "sqlite":
        return

    @sa.event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection, _record):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=15000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()


def _register_blueprints(app):
    import importlib

    for name in ("auth", "inbox", "supervisor", "admin", "intake", "api"):
        try:
            module = importlib.import_module(f"queue_app.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"queue_app.{name}":
                raise
            continue
        bp = getattr(module, "bp", None)
        if bp is not None:
            app.register_blueprint(bp)
