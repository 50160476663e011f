"""Security headers on every response and the input every request is refused for, in one place.

Pages load scripts and styles from /static only, so the Content-Security-Policy can forbid
inline code: an injected <script> or on...= attribute would not run. Query strings with
control characters or integers no database column can hold are refused with a 400 here, so no
view has to think about them; forms do the same through queue_app.web.forms.Form and the API
through its body parsing.
"""
import re

from flask import abort, current_app, request
from flask_login import current_user
from werkzeug.routing import IntegerConverter

from queue_app.models.base import MAX_ID

CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
))
HSTS = "max-age=31536000; includeSubDomains"

# C0 controls and DEL; tab, CR and LF are allowed in multi-line text only. The character classes
# are the API document's too (api/openapi.py), so it describes the text the API refuses.
CONTROL_CHARACTERS = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f"
CONTROL_CHARACTERS_SINGLE_LINE = r"\x00-\x1f\x7f"
_CONTROL = re.compile(f"[{CONTROL_CHARACTERS}]")
_CONTROL_SINGLE_LINE = re.compile(f"[{CONTROL_CHARACTERS_SINGLE_LINE}]")
_DIGITS = re.compile(r"\d+")
# Query parameters that are free text or no id (a search may quote a long account number; the
# queue's change stamp carries sums and timestamps): their numbers are not checked against MAX_ID.
FREE_TEXT_ARGS = {"q", "who", "next", "stamp"}


def has_control_characters(text, multiline=False):
    """True when the text holds a character no person types (NUL, escape, ...): PostgreSQL cannot
    store NUL, and the others only ever come from a tampered request."""
    return bool((_CONTROL if multiline else _CONTROL_SINGLE_LINE).search(text))


def out_of_range(number):
    return not -MAX_ID <= number <= MAX_ID


def too_big(digits):
    """A run of digits larger than MAX_ID (without converting a 100 KB run to an int)."""
    digits = digits.lstrip("0")
    return len(digits) > len(str(MAX_ID)) or int(digits or 0) > MAX_ID


class BoundedIntConverter(IntegerConverter):
    """`<int:...>` in every route: 1 to MAX_ID, so /items/<huge id> is a 404 and never reaches
    the database."""

    def __init__(self, map, fixed_digits=0, min=1, max=MAX_ID, signed=False):
        super().__init__(map, fixed_digits=fixed_digits, min=min, max=max, signed=signed)


def refuse_bad_query_string():
    """400 for a query string with control characters, or with a number (an id, a version, the id
    in a cursor) larger than any id can be: every id a page puts in a link is well under it."""
    for key, value in request.args.items(multi=True):
        if has_control_characters(key) or has_control_characters(value):
            abort(400, "The address contains a character that is not allowed.")
        if key not in FREE_TEXT_ARGS and any(too_big(d) for d in _DIGITS.findall(value)):
            abort(400, f"The page link is not valid: the value of {key!r} is out of range.")


def add_security_headers(response):
    """Headers every response carries. Views that serve user files set a stricter CSP and their own
    Cache-Control; those are kept."""
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "same-origin")
    if _private_response():
        headers.setdefault("Cache-Control", "no-store")
    if current_app.config.get("SEND_HSTS"):
        headers.setdefault("Strict-Transport-Security", HSTS)
    return response


def _private_response():
    """A signed-in user's page or API answer: never kept by a browser or proxy cache. Static files
    are the same for everyone, so they stay cacheable."""
    if request.endpoint == "static":
        return False
    if request.headers.get("Authorization"):
        return True
    return current_user.is_authenticated


def init_app(app):
    """Before the blueprints register: routes bind the `int` converter when they are added."""
    app.url_map.converters["int"] = BoundedIntConverter
    app.before_request(refuse_bad_query_string)
    app.after_request(add_security_headers)
