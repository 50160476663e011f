"""Domain errors, mapped to HTTP responses in one place (queue_app/errors.py)."""


class DomainError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message, fields=None):
        super().__init__(message)
        self.message = message
        self.fields = fields or {}


class Invalid(DomainError):
    """The input is well-formed but breaks a rule (a missing field, an illegal transition)."""

    status = 422
    code = "invalid"


class NotFound(DomainError):
    status = 404
    code = "not_found"


class PermissionDenied(DomainError):
    status = 403
    code = "forbidden"


class Conflict(DomainError):
    """The item changed since the caller read it (optimistic locking) or a uniqueness rule failed."""

    status = 409
    code = "conflict"
