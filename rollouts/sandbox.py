"""The Jinja2 sandbox release templates are rendered in, with bounds on what one render may cost.

Jinja2's SandboxedEnvironment stops escapes (no attribute starting with `_`, no unsafe method) but not a
template that asks for too much: `'%0999999999d' % 1`, `'x'|center(999999999)`, `(2**64)**64`, nested
`range(10000)` loops each took seconds to minutes and gigabytes. This environment refuses such requests
up front with a SecurityError that names the bound (rollouts.bounds lists them), before anything big is
built. It sees what a template does through the sandbox's own hooks, and two more places:

- `call` (every call: charged a step, a macro's MACRO_STEPS; str/list/int methods that build big values
  checked) and `call_binop` (`*`, `**`, `%`, `+` intercepted: sizes, integers, format widths);
- every filter, wrapped: the items it is given are charged, its check (widths, estimated sizes) runs
  first, its result is measured, and a generator it returns is counted as it is read;
- the code generator: every `for` loop reads its iterable through `environment.counted_iter` (a step
  per iteration, filtered loops included; a recursive loop's `loop(...)` is counted in `call`), and `~`
  joins through `environment.bounded_concat`;
- `finalize`: every `{{ }}` output is charged to the render's output budget, including what
  `{% set %}` blocks, macros and `{% filter %}` capture, which never reaches the rendered file.

These are the cheap first line. What they cannot see (an `in` test over a long list inside loops, a
captured block of literal text repeated, ...) is bounded by the renderer process's CPU-time, memory and
wall-clock limits (rollouts/render_child.py, rollouts/isolation.py): those are the guarantee.

Imports neither Django nor edgefleet: the renderer process imports it on its own.
"""

import types
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import update_wrapper
from typing import Any

from jinja2 import StrictUndefined, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.runtime import LoopContext, Macro
from jinja2.sandbox import SandboxedEnvironment, SecurityError
from jinja2.utils import generate_lorem_ipsum
from markupsafe import Markup

from rollouts import bounds

_current: ContextVar[bounds.Budget | None] = ContextVar("edgefleet_render_budget", default=None)


@contextmanager
def rendering() -> Iterator[bounds.Budget]:
    """A fresh budget for one render: everything a template does inside the block is charged to it."""
    budget = bounds.Budget()
    token = _current.set(budget)
    try:
        yield budget
    finally:
        _current.reset(token)


def _budget() -> bounds.Budget:
    budget = _current.get()
    if budget is None:
        # Jinja folds constant filter calls while it compiles. Refusing here leaves them to the render,
        # where they are bounded like everything else (a compile must not run `center(999999999)`).
        raise SecurityError("filters run only while rendering")
    return budget


def _bounded_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """`func` charging the budget for the items it is given, with its check, and its result measured."""
    # Filters that take the context, eval context or environment first get the value second.
    first = 1 if getattr(func, "jinja_pass_arg", None) is not None else 0
    check = bounds.FILTER_CHECKS.get(name)

    def bounded(*args: Any, **kwargs: Any) -> Any:
        budget = _budget()
        if len(args) > first and isinstance(args[first], bounds.SIZED):
            bounds.charge(budget, len(args[first]))
        if check is not None:
            values = list(args[first:])
            check(values, kwargs, budget)
            args = (*args[:first], *values)
        result = func(*args, **kwargs)
        if isinstance(result, bounds.SEQUENCES):
            bounds.check_size(len(result), f"the result of the {name} filter")
        elif isinstance(result, types.GeneratorType):
            result = bounds.Counted(result, budget)
        return result

    return update_wrapper(bounded, func)


def _bounded_range(*args: int) -> range:
    result = range(*args)
    if len(result) > bounds.MAX_RANGE:
        raise SecurityError(f"range() of {len(result):,} items is more than {bounds.MAX_RANGE:,}")
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
            raise SecurityError(f"the template produces more than {bounds.MAX_OUTPUT_CHARS:,} characters of output")
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
    """The stock sandbox with the bounds of rollouts.bounds. StrictUndefined: a misspelt name is an error, not an empty
    string. Autoescape is off: the output is YAML, which HTML escaping would corrupt."""

    code_generator_class = _BoundedCodeGenerator
    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def __init__(self) -> None:
        super().__init__(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True, finalize=_finalize)  # noqa: S701
        self.globals["range"] = _bounded_range
        self.globals["lipsum"] = _bounded_lipsum
        self.filters = {name: _bounded_filter(name, func) for name, func in self.filters.items()}

    def counted_iter(self, iterable: Iterable[Any]) -> bounds.Counted:
        return bounds.Counted(iterable, _budget())

    def bounded_concat(self, values: Iterable[Any]) -> str:
        parts = [value if isinstance(value, str) else str(value) for value in values]
        bounds.check_size(sum(len(part) for part in parts), "the string joined with ~")
        return "".join(parts)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            bounds.check_power(left, right)
        elif operator == "*":
            bounds.check_product(left, right)
        elif operator == "+":
            if isinstance(left, bounds.SEQUENCES) and isinstance(right, bounds.SEQUENCES):
                bounds.check_size(len(left) + len(right), "the sum")
        elif operator == "%" and isinstance(left, bounds.TEXT):
            bounds.check_printf(left, right)
        return self.binop_table[operator](left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805  # as Jinja's
        budget = _budget()
        bounds.charge(budget, bounds.MACRO_STEPS if isinstance(__obj, Macro) else 1)
        if isinstance(__obj, LoopContext) and args:  # loop(children) in a recursive loop: count its items
            args = (bounds.Counted(args[0], budget), *args[1:])
        else:
            args = bounds.guard_method(__obj, args, kwargs, budget)
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
        formatter: bounds.BoundedFormatter
        if isinstance(f_self, Markup):
            formatter = bounds.BoundedEscapeFormatter(self, escape=f_self.escape)
        else:
            formatter = bounds.BoundedFormatter(self)

        def wrapper(*args: Any, **kwargs: Any) -> str:
            if is_format_map:
                if kwargs:
                    raise TypeError("format_map() takes no keyword arguments")
                if len(args) != 1:
                    raise TypeError(f"format_map() takes exactly one argument ({len(args)} given)")
                kwargs, args = args[0], ()
            return str_type(formatter.vformat(f_self, args, kwargs))

        return update_wrapper(wrapper, value)
