"""`make lint`: no import circle between the modules of fleet/, sites/ and rollouts/ (the Django apps).

A circle is two modules that need each other, however far apart: one of them always runs half-loaded,
and a lazy import inside a function (the usual way out) hides the circle from Python, not from the next
reader. So every import counts, at module level or in a function, except under `if TYPE_CHECKING:`
(never run). `import a.b` and `from a.b import c` are edges to `a.b.c` when that is a module, else to
`a.b`; importing a module also runs the `__init__` of each package above it, except the importer's own
packages (already being imported), so those are edges too. A package's `__init__` may re-export its
modules; a module of that package importing the package back closes a circle and is reported.

ALLOWED lists the circles that stay until the work that owns their modules removes them, each with that
work; a circle allowed is allowed exactly (a module joining it is reported), and an entry that no longer
matches a circle is reported, so it is deleted rather than kept.

    .venv/bin/python scripts/check_import_cycles.py [ROOT]     # exit status 1 on a circle
"""

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

APPS = ("fleet", "sites", "rollouts")

Graph = dict[str, dict[str, int]]  # module -> {imported module: line of the first such import}

# The modules of a circle -> why it is still there, and the work that removes it.
ALLOWED: dict[frozenset[str], str] = {}


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(root: Path) -> dict[str, Path]:
    found = {}
    for app in APPS:
        for path in sorted((root / app).rglob("*.py")):
            if "migrations" not in path.relative_to(root).parts:
                found[module_name(root, path)] = path
    return found


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node except those under `if TYPE_CHECKING:` (or `typing.TYPE_CHECKING`)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else test.attr if isinstance(test, ast.Attribute) else ""
            if name == "TYPE_CHECKING":
                stack.extend(node.orelse)
                continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def _targets(name: str, node: ast.AST, known: dict[str, Path], is_package: bool) -> Iterator[str]:
    """The modules an import statement in module `name` names (before adding their packages)."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name
    elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            package = name.split(".") if is_package else name.split(".")[:-1]
            package = package[: len(package) - (node.level - 1)]
            base = ".".join([*package, base] if base else package)
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            yield submodule if submodule in known else base


def graph(root: Path) -> Graph:
    known = modules(root)
    edges: Graph = {name: {} for name in known}
    for name, path in known.items():
        own = {".".join(name.split(".")[:n]) for n in range(1, name.count(".") + 2)}
        is_package = path.name == "__init__.py"
        for node in _runtime_nodes(ast.parse(path.read_text(), filename=str(path))):
            for target in _targets(name, node, known, is_package):
                parts = target.split(".")
                packages = {".".join(parts[:n]) for n in range(1, len(parts))} - own
                for imported in {target, *packages} & set(known) - {name}:
                    edges[name].setdefault(imported, getattr(node, "lineno", 0))
    return edges


def circles(edges: Graph) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return sorted(found)


def one_circle(edges: Graph, component: list[str]) -> list[str]:
    """A shortest circle through the component's first module, to show what to cut."""
    members = set(component)
    start = component[0]
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for child in sorted(edges[node]):
            if child == start:
                return [*paths[node], start]
            if child in members and child not in paths:
                paths[child] = [*paths[node], child]
                queue.append(child)
    return component


def check(root: Path) -> tuple[Graph, list[list[str]], list[frozenset[str]]]:
    """(the import graph, circles not allowed, allow-list entries that matched no circle) at `root`."""
    edges = graph(root)
    found = circles(edges)
    stale = [entry for entry in ALLOWED if sorted(entry) not in found]
    return edges, [component for component in found if frozenset(component) not in ALLOWED], stale


def main() -> int:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent)
    edges, found, stale = check(root)
    for entry in stale:
        print(f"note: allowed but no longer found, delete it from ALLOWED: {sorted(entry)}")
    for component in found:
        path = one_circle(edges, component)
        steps = ", ".join(f"{a} imports {b} (line {edges[a][b]})" for a, b in zip(path, path[1:], strict=False))
        print(f"import circle among {len(component)} module(s): {' -> '.join(path)}: {steps}")
    if found:
        print(f"{len(found)} import circle(s): move what both sides need into a module both import")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
