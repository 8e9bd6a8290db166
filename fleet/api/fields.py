"""Serializer fields with the bounds every input needs, so that no value reaches a service or a database
column it cannot fit: JSON with a nesting limit and no null sneaking in through a form, and integers
with a range.

A JSON string in a form field (multipart or urlencoded) is decoded by the field, not by the request's
parser, so the field repeats the parser's checks (fleet.api.parsers.json_problem), and turns the string
`null` into the "may not be null" refusal a JSON body gets. Use these instead of DRF's JSONField and
IntegerField in input serializers.
"""

from typing import Any

from rest_framework import serializers

from fleet.api.parsers import MAX_JSON_DEPTH, describe_path, json_problem


class BoundedJSONField(serializers.JSONField):
    """JSON, at most `max_depth` levels deep, with no NUL, lone surrogate or non-finite number."""

    default_error_messages = {"unacceptable": "{reason}{where}"}

    def __init__(self, *, max_depth: int = MAX_JSON_DEPTH, **kwargs: Any) -> None:
        self.max_depth = max_depth
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> Any:
        try:
            value = super().to_internal_value(data)
        except RecursionError:
            self.fail("unacceptable", reason=f"nested deeper than {self.max_depth} levels", where="")
        if value is None and not self.allow_null:
            # JSON `null` in a JSON body never gets here (DRF refuses it first); the string "null" in a form does.
            self.fail("null")
        problem = json_problem(value, max_depth=self.max_depth)
        if problem is not None:
            path, reason = problem
            self.fail("unacceptable", reason=reason, where=f" (at {describe_path(path)})" if path else "")
        return value


def bounded_integer(*, min_value: int, max_value: int, **kwargs: Any) -> serializers.IntegerField:
    """An IntegerField whose range errors read as sentences ("must be at least 1"). Give every integer
    input one: without a bound, a number too big for its column is a database error (PostgreSQL's
    `integer` holds 2**31 - 1) or an overflow wherever it is used as a duration."""
    return serializers.IntegerField(
        min_value=min_value,
        max_value=max_value,
        error_messages={
            "min_value": "must be at least {min_value}",
            "max_value": "must be at most {max_value}",
            "max_string_length": "the number is too long",
        },
        **kwargs,
    )


def username_of(user_field: str) -> serializers.CharField:
    """The username of the user in `user_field` (read-only): null when the row names no user."""
    return serializers.CharField(source=f"{user_field}.username", read_only=True, default=None)
