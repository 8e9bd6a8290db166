"""The bounds of one render in the release sandbox (rollouts.sandbox), and the checks that apply them.

Each check refuses with jinja2.sandbox.SecurityError naming the bound, before the big value is built:

- widths (MAX_WIDTH): %-formatting (the operator and the `format` filter), `str.format` specs, `center`,
  `ljust`, `rjust`, `zfill`, `expandtabs`, `indent`, `tojson(indent=)`, `batch` and `slice` sizes;
- sizes (MAX_VALUE): a string, list or tuple built with `*`, `+`, `~`, `%`, `format`, `replace`, `join`,
  `wordwrap`, `indent` or `list.append/extend/insert`, estimated from its parts; the result of a filter;
- integers (MAX_INT_BITS): the results of `*` and `**`;
- work (MAX_STEPS per render, a Budget): loop iterations, calls (a macro's MACRO_STEPS) and items given
  to filters. `range()` is at most MAX_RANGE items; `{{ }}` output at most MAX_OUTPUT_CHARS per render.

Imports neither Django nor edgefleet: the renderer process imports it on its own.
"""

import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from jinja2.sandbox import SandboxedFormatter, SecurityError
from markupsafe import EscapeFormatter

MAX_RANGE = 10_000
MAX_WIDTH = 1_000
MAX_VALUE = 1024 * 1024
MAX_INT_BITS = 1024
MAX_STEPS = 250_000
MAX_OUTPUT_CHARS = 4 * 1024 * 1024
# What a call of a macro costs, in steps: a macro call is some twenty times the work of a loop iteration.
MACRO_STEPS = 20

STEPS_MESSAGE = f"the template takes more than {MAX_STEPS:,} steps (loop iterations, calls and items given to filters)"
SIZED = (list, tuple, dict, set, frozenset, range)
TEXT = (str, bytes, bytearray)
SEQUENCES = (str, bytes, bytearray, list, tuple)


class Budget:
    """What one render may still spend."""

    __slots__ = ("output", "steps")

    def __init__(self) -> None:
        self.steps = MAX_STEPS
        self.output = MAX_OUTPUT_CHARS


def charge(budget: Budget, steps: int) -> None:
    budget.steps -= steps
    if budget.steps < 0:
        raise SecurityError(STEPS_MESSAGE)


class Counted:
    """An iterator that charges the render's budget a step per item."""

    __slots__ = ("_budget", "_iterator")

    def __init__(self, iterable: Iterable[Any], budget: Budget) -> None:
        self._iterator = iter(iterable)
        self._budget = budget

    def __iter__(self) -> "Counted":
        return self

    def __next__(self) -> Any:
        item = next(self._iterator)
        self._budget.steps -= 1
        if self._budget.steps < 0:
            raise SecurityError(STEPS_MESSAGE)
        return item


def check_size(size: int, what: str) -> None:
    if size > MAX_VALUE:
        raise SecurityError(f"{what} would be {size:,} long, more than {MAX_VALUE:,}")


def check_width(width: Any, what: str) -> int:
    """An integer width (or a string used as one, by its length) of at most MAX_WIDTH; returns it."""
    size = len(width) if isinstance(width, TEXT) else width
    if isinstance(size, int) and size > MAX_WIDTH:
        raise SecurityError(f"{what} width {size:,} is more than {MAX_WIDTH:,}")
    return size if isinstance(size, int) else 0


def text_size(value: Any) -> int:
    """About how many characters `str(value)` has, without building it for long integers."""
    if isinstance(value, TEXT):
        return len(value)
    if isinstance(value, int):
        return value.bit_length() // 3 + 2
    if isinstance(value, float):
        return 330
    return len(str(value))


# --- %-formatting, str.format --------------------------------------------------------------------------

_PRINTF = re.compile(
    r"%(?:\((?P<key>[^)]*)\))?[-#0 +]*(?P<width>\*|\d+)?(?:\.(?P<precision>\*|\d+))?[hlL]?(?P<type>[a-zA-Z%])"
)


def _spec_number(text: str | None, what: str) -> int:
    if text is None:
        return 0
    if text == "*":
        raise SecurityError("`*` widths in %-formatting are not accepted; write the width in the format")
    if len(text) > 6 or int(text) > MAX_WIDTH:
        raise SecurityError(f"%-format {what} {text} is more than {MAX_WIDTH:,}")
    return int(text)


def check_printf(fmt: Any, args: Any) -> None:
    """Widths and precisions of `fmt % args` at most MAX_WIDTH, and its result at most MAX_VALUE long."""
    if isinstance(fmt, bytes | bytearray):
        fmt = bytes(fmt).decode("latin-1")
    if not isinstance(fmt, str) or "%" not in fmt:
        return
    positional = args if isinstance(args, tuple) else (args,)
    index, estimate = 0, len(fmt)
    for match in _PRINTF.finditer(fmt):
        if match["type"] == "%":
            continue
        width = _spec_number(match["width"], "width")
        precision = _spec_number(match["precision"], "precision")
        if match["key"] is not None and isinstance(args, Mapping):
            arg = args.get(match["key"], "")
        elif index < len(positional):
            arg, index = positional[index], index + 1
        else:
            arg = ""
        size = text_size(arg) * (4 if match["type"] in "ra" else 1)
        estimate += max(width, precision + 2, size)
    check_size(estimate, "the %-formatted string")


_DIGITS = re.compile(r"\d+")


class BoundedFormatter(SandboxedFormatter):
    """`str.format` with every field's width and precision at most MAX_WIDTH and the result at most MAX_VALUE."""

    _produced = 0

    def vformat(self, format_string: str, args: Any, kwargs: Any) -> str:
        self._produced = len(format_string)
        return super().vformat(format_string, args, kwargs)

    def format_field(self, value: Any, format_spec: str) -> Any:
        for number in _DIGITS.findall(format_spec):
            if len(number) > 6 or int(number) > MAX_WIDTH:
                raise SecurityError(f"format width or precision {number} is more than {MAX_WIDTH:,}")
        text = super().format_field(value, format_spec)
        self._produced += len(text)
        check_size(self._produced, "the formatted string")
        return text


class BoundedEscapeFormatter(BoundedFormatter, EscapeFormatter):
    pass


# --- calls of methods that build big values ------------------------------------------------------------


def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], position: int, name: str, default: Any = None) -> Any:
    return args[position] if len(args) > position else kwargs.get(name, default)


def _replace_size(text: Any, old: Any, new: Any, count: Any) -> int:
    kind = str if isinstance(text, str) else (bytes, bytearray)
    if not isinstance(text, TEXT) or not isinstance(old, kind) or not isinstance(new, kind):
        return 0
    found = text.count(old) if old else len(text) + 1  # type: ignore[arg-type]
    if isinstance(count, int) and count >= 0:
        found = min(found, count)
    return len(text) + found * max(len(new) - len(old), 0)


def guard_method(obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any], budget: Budget) -> tuple[Any, ...]:
    """Refuse a call of a str/bytes/list/int method whose result would pass a bound; returns the arguments
    to call it with (an iterable argument is read once, here, to measure it)."""
    owner, name = getattr(obj, "__self__", None), getattr(obj, "__name__", "")
    if isinstance(owner, TEXT):
        if name in ("center", "ljust", "rjust", "zfill"):
            check_width(_arg(args, kwargs, 0, "width"), f"{name}()")
        elif name == "expandtabs":
            size = check_width(_arg(args, kwargs, 0, "tabsize", 8), "expandtabs()")
            tab = "\t" if isinstance(owner, str) else b"\t"
            check_size(len(owner) + owner.count(tab) * size, "the string")  # type: ignore[arg-type]
        elif name == "replace":
            size = _replace_size(
                owner, _arg(args, kwargs, 0, "old"), _arg(args, kwargs, 1, "new"), _arg(args, kwargs, 2, "count")
            )
            check_size(size, "the replaced string")
        elif name == "join" and args:
            items = list(Counted(args[0], budget))
            check_size(sum(text_size(i) for i in items) + len(owner) * max(len(items) - 1, 0), "the joined string")
            return (items, *args[1:])
    elif isinstance(owner, list):
        if name in ("append", "insert"):
            check_size(len(owner) + 1, "the list")
        elif name == "extend" and args:
            more: Any = args[0] if isinstance(args[0], (*SIZED, *SEQUENCES)) else list(Counted(args[0], budget))
            check_size(len(owner) + len(more), "the list")
            return (more, *args[1:])
    elif isinstance(owner, int) and name == "to_bytes":
        length = _arg(args, kwargs, 0, "length", 1)
        if isinstance(length, int):
            check_size(length, "to_bytes()")
    return args


# --- filters -------------------------------------------------------------------------------------------

# A check gets the filter's arguments from its value on (after the context, eval context or environment
# that some filters take first), as a list it may change, and the keyword arguments.
FilterCheck = Callable[[list[Any], dict[str, Any], Budget], None]


def _check_center(args: list[Any], kwargs: dict[str, Any], budget: Budget) -> None:
    check_width(_arg(tuple(args), kwargs, 1, "width", 80), "center")


def _check_indent(args: list[Any], kwargs: dict[str, Any], budget: Budget) -> None:
    width = check_width(_arg(tuple(args), kwargs, 1, "width", 4), "indent")
    if args and isinstance(args[0], str):
        check_size(len(args[0]) + (args[0].count("\n") + 1) * width, "the indented string")


def _check_format(args: list[Any], kwargs: dict[str, Any], budget: Budget) -> None:
    if args:
        check_printf(str(args[0]), kwargs or tuple(args[1:]))


def _check_wordwrap(args: list[Any], kwargs: dict[str, Any], budget: Budget) -> None:
    a = tuple(args)
    text, width, wrap = _arg(a, kwargs, 0, "s", ""), _arg(a, kwargs, 1, "width", 79), _arg(a, kwargs, 3, "wrapstring")
    if isinstance(text, str) and isinstance(width, int) and isinstance(wrap or "", str):
        lines = len(text) // max(width, 1) + text.count("\n") + 1
        check_size(len(text) + lines * len(wrap or "\n"), "the wrapped string")


def _check_replace(args: list[Any], kwargs: dict[str, Any], budget: Budget) -> None:
    a = tuple(args)
    text, old, new = (str(_arg(a, kwargs, i, name, "")) for i, name in ((0, "s"), (1, "old"), (2, "new")))
    check_size(_replace_size(text, old, new, _arg(a, kwargs, 3, "count")), "the replaced string")


def _check_join(args: list[Any], kwargs: dict[str, Any], budget: Budget) -> None:
    # The items are read once here, to measure them, and handed on as a list.
    if not args:
        return
    items = args[0] = list(Counted(args[0], budget))
    sep = _arg(tuple(args), kwargs, 1, "d", "")
    sep_size = len(sep) if isinstance(sep, str) else 0
    check_size(sum(text_size(i) for i in items) + sep_size * max(len(items) - 1, 0), "the joined string")


def _check_tojson(args: list[Any], kwargs: dict[str, Any], budget: Budget) -> None:
    check_width(_arg(tuple(args), kwargs, 1, "indent", 0), "tojson indent")


def _check_batch(args: list[Any], kwargs: dict[str, Any], budget: Budget) -> None:
    check_width(_arg(tuple(args), kwargs, 1, "linecount", 0), "batch")


def _check_slice(args: list[Any], kwargs: dict[str, Any], budget: Budget) -> None:
    check_width(_arg(tuple(args), kwargs, 1, "slices", 0), "slice")


FILTER_CHECKS: dict[str, FilterCheck] = {
    "center": _check_center,
    "indent": _check_indent,
    "format": _check_format,
    "wordwrap": _check_wordwrap,
    "replace": _check_replace,
    "join": _check_join,
    "tojson": _check_tojson,
    "batch": _check_batch,
    "slice": _check_slice,
}


def check_power(left: Any, right: Any) -> None:
    if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
        bits = math.log2(abs(left)) * right
        if bits > MAX_INT_BITS:
            raise SecurityError(f"** would make an integer of about {bits:,.0f} bits, more than {MAX_INT_BITS:,}")


def check_product(left: Any, right: Any) -> None:
    if isinstance(left, int) and isinstance(right, int):
        bits = left.bit_length() + right.bit_length()
        if bits > MAX_INT_BITS:
            raise SecurityError(f"* would make an integer of about {bits:,} bits, more than {MAX_INT_BITS:,}")
        return
    for seq, times in ((left, right), (right, left)):
        if isinstance(seq, SEQUENCES) and isinstance(times, int):
            check_size(len(seq) * times, f"repeating a {type(seq).__name__} {times:,} times")
