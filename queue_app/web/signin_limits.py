"""Sign-in throttling: failed sign-ins counted per account (the email tried) and per client address.

Flask-Limiter keeps the counts in the app's Redis (REDIS_URL), in a moving window of
SIGN_IN_WINDOW_MINUTES. Only failures count: the view calls `count_failure()`, and a
successful sign-in resets nothing, so it cannot clear the address's count for other accounts.
Past SIGN_IN_FAILURES_PER_ACCOUNT or SIGN_IN_FAILURES_PER_ADDRESS the password is not even
checked: the page (or the API) answers 429 with the time to wait and a Retry-After header.

The second step of signing in (a two-step code) counts on the same limits: a wrong code is a
failed sign-in of that account (`failed_sign_ins_limited(email=...)` names it, since the form has
no email). Requests for a password reset link are limited too (`reset_requests_limited`): each
one counts, per email asked for and per address, per hour.

When Redis is down the limiter falls back to an in-process counter per worker process (logged
as a warning, "Rate limit storage unreachable") and retries Redis with a growing back-off: sign-in
keeps working, but the limits then hold per process rather than across the whole site.
"""
import logging
from datetime import datetime, timezone

from flask import current_app, g, jsonify, request
from flask_limiter.errors import RateLimitExceeded
from flask_limiter.util import get_remote_address

from queue_app.errors import error_response
from queue_app.extensions import limiter
from queue_app.services.people.users import email_key

log = logging.getLogger(__name__)

ACCOUNT = "account"
ADDRESS = "address"
SIGN_IN_SCOPE = "sign-in"


def init_app(app):
    """Point the limiter at the app's Redis, with the in-process fallback, before binding it."""
    config = app.config
    config.setdefault("RATELIMIT_STORAGE_URI", config["REDIS_URL"])
    config.setdefault("RATELIMIT_STORAGE_OPTIONS", {"socket_connect_timeout": 2, "socket_timeout": 2})
    config.setdefault("RATELIMIT_STRATEGY", "moving-window")
    config.setdefault("RATELIMIT_KEY_PREFIX", "backdesk-sign-in")
    config.setdefault("RATELIMIT_IN_MEMORY_FALLBACK_ENABLED", True)
    config.setdefault("RATELIMIT_SWALLOW_ERRORS", True)  # a Redis error while counting must not fail a sign-in
    limiter.init_app(app)
    app.register_error_handler(RateLimitExceeded, _too_many)


def _too_many(exc):
    """The refusal `_refused` built, or a plain 429 if it could not be built."""
    if exc.response is not None:
        return exc.response
    return error_response(429, "Too many failed sign-ins. Try again later.")


def posted_email():
    return request.form.get("email")


def account_key(email=posted_email):
    return f"{ACCOUNT}:{email_key(email())}"


def address_key():
    return f"{ADDRESS}:{get_remote_address()}"


def _window():
    return f"{current_app.config['SIGN_IN_WINDOW_MINUTES']} minutes"


def _per_account():
    return f"{current_app.config['SIGN_IN_FAILURES_PER_ACCOUNT']} per {_window()}"


def _per_address():
    return f"{current_app.config['SIGN_IN_FAILURES_PER_ADDRESS']} per {_window()}"


def count_failure():
    """Count this request's sign-in as failed (the limiter adds it once the response is ready)."""
    g.sign_in_failed = True


def _failed(_response):
    return bool(g.get("sign_in_failed"))


def lockouts_started():
    """[(scope, until)] for each limit this failure fills: the next attempt will be refused."""
    started = []
    for limit in limiter.current_limits:
        if limit.remaining <= 1:  # this failure is not counted yet
            scope = ACCOUNT if f"{ACCOUNT}:" in limit.key else ADDRESS
            started.append((scope, _until(limit)))
    return started


def _until(limit):
    """When the oldest failure leaves the window, as an aware UTC datetime."""
    return datetime.fromtimestamp(limit.reset_at, timezone.utc).replace(microsecond=0)


def retry_message(until, now=None):
    now = now or datetime.now(timezone.utc)
    minutes = max(1, -(-int((until - now).total_seconds()) // 60))
    return (f"Too many failed sign-ins. Try again in {minutes} minute{'s' if minutes != 1 else ''} "
            f"(after {until:%H:%M} UTC).")


def _refusal(page, message_for=None):
    """on_breach for an attempt during a lockout: 429 with Retry-After and the time to wait, on `page`
    (a function of that message returning the HTML) or, without one, as JSON (the API)."""

    def refused(limit):
        until = _until(limit)
        retry_after = max(1, int((until - datetime.now(timezone.utc)).total_seconds()))
        message = (message_for or retry_message)(until)
        if page is None:
            response = jsonify({"error": "too_many_requests", "message": message, "retry_after": retry_after})
        else:
            response = current_app.make_response(page(message))
        response.status_code = 429
        response.headers["Retry-After"] = str(retry_after)
        return response

    return refused


def failed_sign_ins_limited(page=None, email=posted_email):
    """Refuse a view that checks a password (or a sign-in code) once the account or the address has
    failed too often; `email()` names the account the request is for."""

    def decorate(view):
        refused = _refusal(page)
        # Shared: the password page and the code page count into the same buckets.
        view = limiter.shared_limit(_per_address, SIGN_IN_SCOPE, key_func=address_key, methods=["POST"],
                                    deduct_when=_failed, on_breach=refused)(view)
        return limiter.shared_limit(_per_account, SIGN_IN_SCOPE, key_func=lambda: account_key(email),
                                    methods=["POST"], deduct_when=_failed, on_breach=refused)(view)

    return decorate


def reset_message(until, now=None):
    now = now or datetime.now(timezone.utc)
    minutes = max(1, -(-int((until - now).total_seconds()) // 60))
    return (f"Too many password reset requests. Try again in {minutes} minute{'s' if minutes != 1 else ''} "
            f"(after {until:%H:%M} UTC).")


def reset_requests_limited(page):
    """Refuse requests for a reset link past PASSWORD_RESET_REQUESTS_PER_ACCOUNT (for the email asked
    for, whether or not it is anyone's) or PASSWORD_RESET_REQUESTS_PER_ADDRESS per hour."""

    def decorate(view):
        refused = _refusal(page, reset_message)
        view = limiter.limit(lambda: f"{current_app.config['PASSWORD_RESET_REQUESTS_PER_ADDRESS']} per hour",
                             key_func=address_key, methods=["POST"], on_breach=refused)(view)
        return limiter.limit(lambda: f"{current_app.config['PASSWORD_RESET_REQUESTS_PER_ACCOUNT']} per hour",
                             key_func=account_key, methods=["POST"], on_breach=refused)(view)

    return decorate
