"""The API's JSON parser: bounded in size and nesting, and refusing values no database column can hold.

Python's json module recurses once per level of nesting, so `[` repeated 100 000 times raises
RecursionError (a 500 under DRF's own parser), and a body a few hundred levels deep parses but blows
the stack later, in validation, rendering or the database adapter. PostgreSQL refuses strings with
NUL characters or lone surrogates and numbers such as Infinity in a jsonb column. This parser turns all
of that into a 400 that names the field, before any view sees the data. It is the default parser
(REST_FRAMEWORK's DEFAULT_PARSER_CLASSES); the device endpoints use it behind their smaller body cap.

`json_problem` is the same check for JSON that arrives another way (a JSON string in a form field,
see fleet.api.fields.BoundedJSONField). The form parsers make the string checks on every form field.
"""

import math
from typing import Any

from django.http import QueryDict
from rest_framework.exceptions import ParseError
from rest_framework.parsers import DataAndFiles, FormParser, JSONParser, MultiPartParser

# A request body deeper than this is refused. Real bodies (release values, plan waves, heartbeats)
# are a handful of levels deep; Python's recursion limit is ~1000 and the stack is shared with Django.
MAX_JSON_DEPTH = 32


def json_problem(value: Any, *, max_depth: int = MAX_JSON_DEPTH) -> tuple[list[str | int], str] | None:
    """The first thing in a decoded JSON value that cannot be accepted, as (path, reason); None if fine.

    Checks nesting depth (an object or array is one level), strings and keys holding NUL or lone
    surrogate characters, and non-finite numbers. Iterative, so it is safe at any depth.
    """
    stack: list[tuple[Any, int, list[str | int]]] = [(value, 0, [])]
    while stack:
        item, depth, path = stack.pop()
        if isinstance(item, dict | list):
            if depth >= max_depth:
                return path, f"nested deeper than {max_depth} levels"
            children = item.items() if isinstance(item, dict) else enumerate(item)
            for key, child in children:
                if isinstance(key, str) and (reason := _string_problem(key)):
                    return [*path, key], f"a key {reason}"
                stack.append((child, depth + 1, [*path, key]))
        elif isinstance(item, str):
            if reason := _string_problem(item):
                return path, reason
        elif isinstance(item, float) and not math.isfinite(item):
            return path, "a number is out of range"
    return None


def _string_problem(text: str) -> str | None:
    if "\x00" in text:
        return "contains a NUL character"
    if not text.isascii():
        try:
            text.encode("utf-8")  # in C: only a lone surrogate cannot be encoded
        except UnicodeEncodeError:
            return "contains an unpaired surrogate character"
    return None


def describe_path(path: list[str | int]) -> str:
    """`values.a[3].b`, shortened in the middle when long (a deep path is the usual reason to show one)."""
    text = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path).lstrip(".")
    return text if len(text) <= 120 else f"{text[:60]}…{text[-40:]}"


class FleetJSONParser(JSONParser):
    """JSON with a nesting limit and values the database can store; refusals are 400s naming the
    top-level field when there is one. (The body's size is bounded before this runs: DRF reads it
    through Django, which refuses more than DATA_UPLOAD_MAX_MEMORY_SIZE.)"""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(f"the JSON body is nested deeper than {MAX_JSON_DEPTH} levels") from None
        problem = json_problem(data)
        if problem is not None:
            raise _refusal(*problem)
        return data


class FleetFormParser(FormParser):
    """URL-encoded forms, refusing a value (or name) that holds a NUL character: PostgreSQL cannot compare or
    store one, so a form's `site=%00` was a 500 at the first lookup."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        data = super().parse(stream, media_type, parser_context)
        _check_form(data)
        return data


class FleetMultiPartParser(MultiPartParser):
    """Multipart forms, with the same check of every field as FleetFormParser."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        result = super().parse(stream, media_type, parser_context)
        _check_form(result.data if isinstance(result, DataAndFiles) else result)
        return result


def _check_form(data: QueryDict) -> None:
    for name, values in data.lists():
        for text in (name, *values):
            if isinstance(text, str) and (reason := _string_problem(text)):
                raise _refusal([name], reason)


def _refusal(path: list[str | int], reason: str) -> ParseError:
    if path and isinstance(path[0], str):
        field, where = path[0], describe_path(path)
        message = f"{reason} (at {where})" if len(path) > 1 else reason
        return ParseError({"detail": f"{field}: {message}", field: [message]})
    where = f" (at {describe_path(path)})" if path else ""
    return ParseError(f"the JSON body is not acceptable: {reason}{where}")
