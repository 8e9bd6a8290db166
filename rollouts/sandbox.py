"""The Jinja2 sandbox release templates are rendered in, with bounds on what one render may cost.

Jinja2's SandboxedEnvironment stops escapes (no attribute starting with `_`, no unsafe method) but not a
template that asks for too much: `'%0999999999d' % 1`, `'x'|center(999999999)`, `(2**64)**64`, nested
`range(10000)` loops each took seconds to minutes and gigabytes. This environment refuses such requests
up front with a SecurityError that names the bound, before anything big is built:

- widths (MAX_WIDTH): %-formatting (the operator and the `format` filter), `str.format` specs, `center`,
  `ljust`, `rjust`, `zfill`, `expandtabs`, `indent`, `tojson(indent=)`, `batch`/`slice` sizes;
- sizes (MAX_VALUE): any string, list or tuple a template builds with `*`, `+`, `~`, `%`, `format`,
  `replace`, `join`, `wordwrap`, `indent` or `list.append/extend/insert`, estimated before it is built;
  and the result of every filter;
- integers (MAX_INT_BITS): the results of `*` and `**`; `range()` of at most MAX_RANGE items;
- work (MAX_STEPS per render): every loop iteration (filtered and recursive loops too), every call (a
  macro's counts MACRO_STEPS) and every item handed to a filter; and MAX_OUTPUT_CHARS of `{{ }}` output
  per render, counting what `{% set %}` blocks, macros and `{% filter %}` capture, which never reaches
  the rendered file.

These are the cheap first line. What they cannot see (an `in` test over a long list inside loops, a
captured block of literal text repeated, ...) is bounded by the renderer process's CPU-time, memory and
wall-clock limits (rollouts/render_child.py, rollouts/isolation.py): those are the guarantee.

This module imports neither Django nor edgefleet: the renderer process imports it on its own.
"""

import math
import re
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from functools import update_wrapper
from typing import Any

from jinja2 import StrictUndefined, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.runtime import LoopContext, Macro
from jinja2.sandbox import SandboxedEnvironment, SandboxedFormatter, SecurityError
from jinja2.utils import generate_lorem_ipsum
from markupsafe import EscapeFormatter, Markup

MAX_RANGE = 10_000
MAX_WIDTH = 1_000
MAX_VALUE = 1024 * 1024
MAX_INT_BITS = 1024
MAX_STEPS = 250_000
MAX_OUTPUT_CHARS = 4 * 1024 * 1024
# What a call of a macro costs, in steps: a macro call is some twenty times the work of a loop iteration.
MACRO_STEPS = 20

STEPS_MESSAGE = f"the template takes more than {MAX_STEPS:,} steps (loop iterations, calls and items given to filters)"
_SIZED = (list, tuple, dict, set, frozenset, range)
_TEXT = (str, bytes, bytearray)
_SEQUENCES = (str, bytes, bytearray, list, tuple)


class Budget:
    """What one render may still spend."""

    __slots__ = ("output", "steps")

    def __init__(self) -> None:
        self.steps = MAX_STEPS
        self.output = MAX_OUTPUT_CHARS


_current: ContextVar[Budget | None] = ContextVar("edgefleet_render_budget", default=None)


@contextmanager
def rendering() -> Iterator[Budget]:
    """A fresh budget for one render: everything a template does inside the block is charged to it."""
    budget = Budget()
    token = _current.set(budget)
    try:
        yield budget
    finally:
        _current.reset(token)


def _budget() -> Budget:
    budget = _current.get()
    if budget is None:
        # Jinja folds constant filter calls while it compiles. Refusing here leaves them to the render,
        # where they are bounded like everything else (a compile must not run `center(999999999)`).
        raise SecurityError("filters run only while rendering")
    return budget


def _charge(budget: Budget, steps: int) -> None:
    budget.steps -= steps
    if budget.steps < 0:
        raise SecurityError(STEPS_MESSAGE)


class _Counted:
    """An iterator that charges the render's budget a step per item."""

    __slots__ = ("_budget", "_iterator")

    def __init__(self, iterable: Iterable[Any], budget: Budget) -> None:
        self._iterator = iter(iterable)
        self._budget = budget

    def __iter__(self) -> "_Counted":
        return self

    def __next__(self) -> Any:
        item = next(self._iterator)
        self._budget.steps -= 1
        if self._budget.steps < 0:
            raise SecurityError(STEPS_MESSAGE)
        return item


def _check_size(size: int, what: str) -> None:
    if size > MAX_VALUE:
        raise SecurityError(f"{what} would be {size:,} long, more than {MAX_VALUE:,}")


def _check_width(width: Any, what: str) -> int:
    """An integer width (or a string used as one, by its length) of at most MAX_WIDTH; returns it."""
    size = len(width) if isinstance(width, _TEXT) else width
    if isinstance(size, int) and size > MAX_WIDTH:
        raise SecurityError(f"{what} width {size:,} is more than {MAX_WIDTH:,}")
    return size if isinstance(size, int) else 0


def _text_size(value: Any) -> int:
    """About how many characters `str(value)` has, without building it for long integers."""
    if isinstance(value, _TEXT):
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
        size = _text_size(arg) * (4 if match["type"] in "ra" else 1)
        estimate += max(width, precision + 2, size)
    _check_size(estimate, "the %-formatted string")


_DIGITS = re.compile(r"\d+")


class _BoundedFormatter(SandboxedFormatter):
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
        _check_size(self._produced, "the formatted string")
        return text


class _BoundedEscapeFormatter(_BoundedFormatter, EscapeFormatter):
    pass


# --- calls of methods that build big values ------------------------------------------------------------


def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], position: int, name: str, default: Any = None) -> Any:
    return args[position] if len(args) > position else kwargs.get(name, default)


def _replace_size(text: Any, old: Any, new: Any, count: Any) -> int:
    kind = str if isinstance(text, str) else (bytes, bytearray)
    if not isinstance(text, _TEXT) or not isinstance(old, kind) or not isinstance(new, kind):
        return 0
    found = text.count(old) if old else len(text) + 1  # type: ignore[arg-type]
    if isinstance(count, int) and count >= 0:
        found = min(found, count)
    return len(text) + found * max(len(new) - len(old), 0)


def _guard_method(obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any], budget: Budget) -> tuple[Any, ...]:
    """Refuse a call of a str/bytes/list/int method whose result would pass a bound; returns the arguments
    to call it with (an iterable argument is read once, here, to measure it)."""
    owner, name = getattr(obj, "__self__", None), getattr(obj, "__name__", "")
    if isinstance(owner, _TEXT):
        if name in ("center", "ljust", "rjust", "zfill"):
            _check_width(_arg(args, kwargs, 0, "width"), f"{name}()")
        elif name == "expandtabs":
            size = _check_width(_arg(args, kwargs, 0, "tabsize", 8), "expandtabs()")
            tab = "\t" if isinstance(owner, str) else b"\t"
            _check_size(len(owner) + owner.count(tab) * size, "the string")  # type: ignore[arg-type]
        elif name == "replace":
            size = _replace_size(
                owner, _arg(args, kwargs, 0, "old"), _arg(args, kwargs, 1, "new"), _arg(args, kwargs, 2, "count")
            )
            _check_size(size, "the replaced string")
        elif name == "join" and args:
            items = list(_Counted(args[0], budget))
            _check_size(sum(_text_size(i) for i in items) + len(owner) * max(len(items) - 1, 0), "the joined string")
            return (items, *args[1:])
    elif isinstance(owner, list):
        if name in ("append", "insert"):
            _check_size(len(owner) + 1, "the list")
        elif name == "extend" and args:
            more: Any = args[0] if isinstance(args[0], (*_SIZED, *_SEQUENCES)) else list(_Counted(args[0], budget))
            _check_size(len(owner) + len(more), "the list")
            return (more, *args[1:])
    elif isinstance(owner, int) and name == "to_bytes":
        length = _arg(args, kwargs, 0, "length", 1)
        if isinstance(length, int):
            _check_size(length, "to_bytes()")
    return args


# --- filters -------------------------------------------------------------------------------------------

# A check gets the filter's arguments from its value on (after the context, eval context or environment
# that some filters take first), as a list it may change, and the keyword arguments.
FilterCheck = Callable[[list[Any], dict[str, Any], Budget], None]


def _check_center(args: list[Any], kwargs: dict[str, Any], budget: Budget) -> None:
    _check_width(_arg(tuple(args), kwargs, 1, "width", 80), "center")


def _check_indent(args: list[Any], kwargs: dict[str, Any], budget: Budget) -> None:
    width = _check_width(_arg(tuple(args), kwargs, 1, "width", 4), "indent")
    if args and isinstance(args[0], str):
        _check_size(len(args[0]) + (args[0].count("\n") + 1) * width, "the indented string")


def _check_format(args: list[Any], kwargs: dict[str, Any], budget: Budget) -> None:
    if args:
        check_printf(str(args[0]), kwargs or tuple(args[1:]))


def _check_wordwrap(args: list[Any], kwargs: dict[str, Any], budget: Budget) -> None:
    a = tuple(args)
    text, width, wrap = _arg(a, kwargs, 0, "s", ""), _arg(a, kwargs, 1, "width", 79), _arg(a, kwargs, 3, "wrapstring")
    if isinstance(text, str) and isinstance(width, int) and isinstance(wrap or "", str):
        lines = len(text) // max(width, 1) + text.count("\n") + 1
        _check_size(len(text) + lines * len(wrap or "\n"), "the wrapped string")


def _check_replace(args: list[Any], kwargs: dict[str, Any], budget: Budget) -> None:
    a = tuple(args)
    text, old, new = (str(_arg(a, kwargs, i, name, "")) for i, name in ((0, "s"), (1, "old"), (2, "new")))
    _check_size(_replace_size(text, old, new, _arg(a, kwargs, 3, "count")), "the replaced string")


def _check_join(args: list[Any], kwargs: dict[str, Any], budget: Budget) -> None:
    # The items are read once here, to measure them, and handed on as a list.
    if not args:
        return
    items = args[0] = list(_Counted(args[0], budget))
    sep = _arg(tuple(args), kwargs, 1, "d", "")
    sep_size = len(sep) if isinstance(sep, str) else 0
    _check_size(sum(_text_size(i) for i in items) + sep_size * max(len(items) - 1, 0), "the joined string")


def _check_tojson(args: list[Any], kwargs: dict[str, Any], budget: Budget) -> None:
    _check_width(_arg(tuple(args), kwargs, 1, "indent", 0), "tojson indent")


def _check_batch(args: list[Any], kwargs: dict[str, Any], budget: Budget) -> None:
    _check_width(_arg(tuple(args), kwargs, 1, "linecount", 0), "batch")


def _check_slice(args: list[Any], kwargs: dict[str, Any], budget: Budget) -> None:
    _check_width(_arg(tuple(args), kwargs, 1, "slices", 0), "slice")


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


def _bounded_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """`func` charging the budget for the items it is given, with its check, and its result measured."""
    # Filters that take the context, eval context or environment first get the value second.
    first = 1 if getattr(func, "jinja_pass_arg", None) is not None else 0
    check = FILTER_CHECKS.get(name)

    def bounded(*args: Any, **kwargs: Any) -> Any:
        budget = _budget()
        if len(args) > first and isinstance(args[first], _SIZED):
            _charge(budget, len(args[first]))
        if check is not None:
            values = list(args[first:])
            check(values, kwargs, budget)
            args = (*args[:first], *values)
        result = func(*args, **kwargs)
        if isinstance(result, _SEQUENCES):
            _check_size(len(result), f"the result of the {name} filter")
        elif isinstance(result, types.GeneratorType):
            result = _Counted(result, budget)
        return result

    return update_wrapper(bounded, func)


def _bounded_range(*args: int) -> range:
    result = range(*args)
    if len(result) > MAX_RANGE:
        raise SecurityError(f"range() of {len(result):,} items is more than {MAX_RANGE:,}")
    return result


def _bounded_lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:  # noqa: A002  # Jinja's names
    """Jinja's `lipsum`, with at most 100 paragraphs of at most 100 words (it would write any number)."""
    for value, what in ((n, "paragraphs"), (min, "words"), (max, "words")):
        if not isinstance(value, int) or value > 100:
            raise SecurityError(f"lipsum() of more than 100 {what}")
    return str(generate_lorem_ipsum(n=n, html=html, min=min, max=max))


def _finalize(value: Any) -> str:
    """Every `{{ }}` output, charged to the render's output budget (captured output included)."""
    text = value if isinstance(value, str) else str(value)
    budget = _current.get()
    if budget is not None:  # None while compiling: constant output, bounded by the template's size
        budget.output -= len(text)
        if budget.output < 0:
            raise SecurityError(f"the template produces more than {MAX_OUTPUT_CHARS:,} characters of output")
    return text


# --- the code generator: loops and ~ go through the environment ---------------------------------------


class _BoundedCodeGenerator(CodeGenerator):
    """Jinja's code generator with every `for` loop's iterable wrapped in `environment.counted_iter`
    (each iteration costs a step) and `~` joining through `environment.bounded_concat`."""

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        node.iter = nodes.Call(
            nodes.EnvironmentAttribute("counted_iter"), [node.iter], [], None, None, lineno=node.iter.lineno
        )
        super().visit_For(node, frame)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.bounded_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class Sandbox(SandboxedEnvironment):
    """The stock sandbox with the bounds above. StrictUndefined: a misspelt name is an error, not an empty
    string. Autoescape is off: the output is YAML, which HTML escaping would corrupt."""

    code_generator_class = _BoundedCodeGenerator
    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def __init__(self) -> None:
        super().__init__(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True, finalize=_finalize)  # noqa: S701
        self.globals["range"] = _bounded_range
        self.globals["lipsum"] = _bounded_lipsum
        self.filters = {name: _bounded_filter(name, func) for name, func in self.filters.items()}

    def counted_iter(self, iterable: Iterable[Any]) -> _Counted:
        return _Counted(iterable, _budget())

    def bounded_concat(self, values: Iterable[Any]) -> str:
        parts = [value if isinstance(value, str) else str(value) for value in values]
        _check_size(sum(len(part) for part in parts), "the string joined with ~")
        return "".join(parts)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            _check_power(left, right)
        elif operator == "*":
            _check_product(left, right)
        elif operator == "+":
            if isinstance(left, _SEQUENCES) and isinstance(right, _SEQUENCES):
                _check_size(len(left) + len(right), "the sum")
        elif operator == "%" and isinstance(left, _TEXT):
            check_printf(left, right)
        return self.binop_table[operator](left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805  # as Jinja's
        budget = _budget()
        _charge(budget, MACRO_STEPS if isinstance(__obj, Macro) else 1)
        if isinstance(__obj, LoopContext) and args:  # loop(children) in a recursive loop: count its items
            args = (_Counted(args[0], budget), *args[1:])
        else:
            args = _guard_method(__obj, args, kwargs, budget)
        return super().call(__context, __obj, *args, **kwargs)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """Jinja's own (3.1), with the bounded formatter: `str.format` and `format_map` of a string."""
        if not isinstance(value, types.MethodType | types.BuiltinMethodType) or value.__name__ not in (
            "format",
            "format_map",
        ):
            return None
        f_self: Any = value.__self__
        if not isinstance(f_self, str):
            return None
        str_type: type[str] = type(f_self)
        is_format_map = value.__name__ == "format_map"
        formatter: _BoundedFormatter
        if isinstance(f_self, Markup):
            formatter = _BoundedEscapeFormatter(self, escape=f_self.escape)
        else:
            formatter = _BoundedFormatter(self)

        def wrapper(*args: Any, **kwargs: Any) -> str:
            if is_format_map:
                if kwargs:
                    raise TypeError("format_map() takes no keyword arguments")
                if len(args) != 1:
                    raise TypeError(f"format_map() takes exactly one argument ({len(args)} given)")
                kwargs, args = args[0], ()
            return str_type(formatter.vformat(f_self, args, kwargs))

        return update_wrapper(wrapper, value)


def _check_power(left: Any, right: Any) -> None:
    if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
        bits = math.log2(abs(left)) * right
        if bits > MAX_INT_BITS:
            raise SecurityError(f"** would make an integer of about {bits:,.0f} bits, more than {MAX_INT_BITS:,}")


def _check_product(left: Any, right: Any) -> None:
    if isinstance(left, int) and isinstance(right, int):
        bits = left.bit_length() + right.bit_length()
        if bits > MAX_INT_BITS:
            raise SecurityError(f"* would make an integer of about {bits:,} bits, more than {MAX_INT_BITS:,}")
        return
    for seq, times in ((left, right), (right, left)):
        if isinstance(seq, _SEQUENCES) and isinstance(times, int):
            _check_size(len(seq) * times, f"repeating a {type(seq).__name__} {times:,} times")
