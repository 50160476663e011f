"""Domain errors and HTTP errors mapped to responses in one place: JSON for the API, HTML pages otherwise."""
import logging

from flask import jsonify, make_response, render_template, request
from flask_wtf.csrf import CSRFError
from sqlalchemy.orm.exc import StaleDataError
from werkzeug.exceptions import HTTPException

from queue_app.extensions import db
from queue_app.services.errors import Conflict, DomainError

log = logging.getLogger(__name__)

HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
              409: "conflict", 413: "too_large", 415: "unsupported_media_type", 422: "invalid", 429: "too_many_requests",
              500: "internal_error"}


def wants_json():
    if request.path.startswith("/api/"):
        return True
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "application/json" and request.accept_mimetypes[best] > request.accept_mimetypes["text/html"]


def error_response(status, message, code=None, fields=None):
    code = code or HTTP_CODES.get(status, "error")
    if wants_json():
        response = jsonify({"error": {"code": code, "message": message, "fields": fields or {}}})
        response.status_code = status
        return response
    template = f"errors/{status}.html" if status in (403, 404, 500) else "errors/generic.html"
    return render_template(template, status=status, message=message, fields=fields or {}), status


def size_text(size):
    """10 MB, 1.5 MB, 100 KB (1 MB = 1024 KB, as MAX_CONTENT_LENGTH is usually set)."""
    for unit, scale in (("MB", 1024 * 1024), ("KB", 1024)):
        if size >= scale:
            return f"{size / scale:.1f}".rstrip("0").rstrip(".") + f" {unit}"
    return f"{size} bytes"


def register_error_handlers(app):
    @app.errorhandler(DomainError)
    def domain_error(exc):
        db.session.rollback()
        return error_response(exc.status, exc.message, exc.code, exc.fields)

    @app.errorhandler(StaleDataError)
    def stale(exc):
        db.session.rollback()
        err = Conflict("the item was changed by someone else at the same time; reload and try again")
        return error_response(err.status, err.message, err.code)

    @app.errorhandler(CSRFError)
    def csrf_error(exc):
        return error_response(400, f"The form was refused: {exc.description} Reload the page and try again.",
                              "csrf_failed")

    @app.errorhandler(HTTPException)
    def http_error(exc):
        message = exc.description or exc.name
        if exc.code == 413:
            limit = app.config.get("MAX_CONTENT_LENGTH")
            message = f"The request is too large (limit {size_text(limit)})." if limit else message
        response = make_response(error_response(exc.code, message))
        # Keep the exception's own headers: a 405 must say which methods are allowed (Allow).
        for name, value in exc.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    @app.errorhandler(Exception)
    def server_error(exc):
        log.exception("unhandled error on %s %s", request.method, request.path)
        db.session.rollback()
        return error_response(500, "Something went wrong on our side; it has been logged.")
