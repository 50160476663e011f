"""Bearer-token authentication and scopes for every API endpoint except the OpenAPI document.

Each endpoint declares the scopes any one of which it needs (`needs`); one that declares none
is refused, so a new endpoint cannot be left open by forgetting.
"""
from flask import current_app, g, request

from queue_app.api import bp
from queue_app.errors import error_response
from queue_app.extensions import db
from queue_app.services.people import tokens

PUBLIC_ENDPOINTS = {"api.openapi"}


def needs(*scopes):
    """Declare the token scopes (any one of them) an endpoint needs."""
    def declare(view):
        view.token_scopes = scopes
        return view
    return declare


def bearer_token():
    """The token from `Authorization: Bearer <token>`, or None."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def unauthorized(message, error=None):
    """401 with the WWW-Authenticate challenge RFC 6750 asks for."""
    response = error_response(401, message)
    challenge = 'Bearer realm="backdesk"'
    if error:
        challenge += f', error="{error}"'
    response.headers["WWW-Authenticate"] = challenge
    return response


def insufficient_scope(wanted):
    """403 naming the scope the endpoint needs (RFC 6750 insufficient_scope)."""
    needed = " or ".join(wanted) or "one this endpoint does not declare"
    response = error_response(403, f"this API token does not have the scope this needs: {needed}")
    response.headers["WWW-Authenticate"] = (f'Bearer realm="backdesk", error="insufficient_scope", '
                                            f'scope="{" ".join(wanted)}"')
    return response


def current_user():
    return g.api_user


@bp.before_request
def authenticate():
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    token = bearer_token()
    if token is None:
        return unauthorized("an API token is required: send 'Authorization: Bearer <token>'")
    row, problem = tokens.check(db.session, token)
    if row is None:
        db.session.rollback()
        return unauthorized(problem, "invalid_token")
    if db.session.dirty:
        db.session.commit()  # last_used_at, written at most once a minute
    view = current_app.view_functions.get(request.endpoint)
    if view is not None:  # else routing failed and the 404 or 405 follows
        wanted = getattr(view, "token_scopes", ())
        if not set(wanted) & set(row.scope_list):
            return insufficient_scope(wanted)
    g.api_user = row.user
    g.api_token = row
    return None
