"""The executive's web inbox: my queue, my teams' unassigned queue, and the item page."""
from flask import Blueprint

bp = Blueprint("inbox", __name__)

from queue_app.inbox import item_views, people_views, tag_views, verification_views, views  # noqa: E402,F401
