"""Unbound extensions, bound to the app in create_app()."""
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_wtf import CSRFProtect

from queue_app.models.base import db

migrate = Migrate(render_as_batch=True, compare_type=True)
login_manager = LoginManager()
csrf = CSRFProtect()

__all__ = ["db", "migrate", "login_manager", "csrf"]
