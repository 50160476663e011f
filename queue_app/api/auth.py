"""Bearer-token authentication for every API endpoint except the OpenAPI document."""
from flask import g, request

from queue_app.api import bp
from queue_app.errors import error_response
from queue_app.extensions import db
from queue_app.services.people.users import user_for_token

PUBLIC_ENDPOINTS = {"api.openapi"}


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


def current_user():
    return g.api_user


@bp.before_request
def authenticate():
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    token = bearer_token()
    if token is None:
        return unauthorized("an API token is required: send 'Authorization: Bearer <token>'")
    user = user_for_token(db.session, token)
    if user is None:
        db.session.rollback()
        return unauthorized("the API token is invalid or revoked", "invalid_token")
    # Keep the token's last_used_at even on read-only requests.
    db.session.commit()
    g.api_user = user
    return None
