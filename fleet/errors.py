"""Domain errors shared by every app.

Services raise these; the API maps them to HTTP answers (fleet.api.exceptions) and the admin shows
their message. Nothing else should decide what a client sees when a request is refused.
"""

from collections.abc import Mapping


class FleetError(Exception):
    """Base class of the errors a service raises on purpose."""

    status_code = 400

    def __init__(self, message: str, *, field: str | None = None, errors: Mapping[str, list[str]] | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        self.errors: dict[str, list[str]] = dict(errors or {})
        if field and field not in self.errors:
            self.errors[field] = [message]


class Invalid(FleetError):
    """The input cannot be accepted as given (400)."""

    status_code = 400


class Conflict(FleetError):
    """The input is fine but the current state forbids it (409): name the state in the message."""

    status_code = 409


class NotFound(FleetError):
    """A referenced object does not exist (404)."""

    status_code = 404


class Forbidden(FleetError):
    """The actor may not do this (403)."""

    status_code = 403
