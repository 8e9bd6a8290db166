"""`make lint`: the workflow engine's boundary. Only fleet/workflows writes runs and names their keys.

Every module of the Django apps outside fleet/workflows (fleet/, sites/, rollouts/; not tests, benchmarks
or migrations; the simulator and edge/ import no Django at all) is read as Python syntax and refused when it

- imports an engine module other than the public ones: `fleet.workflows` itself, and `fleet.workflows.api`
  (the run's HTTP shape, for other apps' API views) [import];
- writes WorkflowRun or StepRun rows (`WorkflowRun.objects....update(...)`, `.create(...)`, ...) or the
  engine's columns anywhere (`.update(wake_at=...)`, `run.lease_owner = ...`) [write];
- names runs by their keys rather than by their subject (`subject_type=`, `subject_id=`, `exclusive_key=`
  in a call, `active_run_for_key(...)`): keys are the engine's to build [key].

ALLOWED lists what an app still does during a migration, each entry with the part of the work that
removes it (none today); an entry that no longer matches anything is reported, so it is deleted rather
than kept.

    .venv/bin/python scripts/check_workflow_boundary.py [ROOT]     # exit status 1 on a violation
"""

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

APPS = ("fleet", "sites", "rollouts")
ENGINE = "fleet/workflows"
PUBLIC_MODULES = ("fleet.workflows", "fleet.workflows.api")
MODELS = ("WorkflowRun", "StepRun")
WRITE_METHODS = {"update", "create", "bulk_create", "bulk_update", "get_or_create", "update_or_create", "delete"}
# Columns only the engine writes (fleet/workflows/runs.py and timeline.py).
ENGINE_COLUMNS = {
    "wake_at",
    "enqueued_at",
    "lease_owner",
    "lease_until",
    "step_index",
    "cancel_requested",
    "cancel_reason",
    "exclusive_key",
    "polls",
}
KEY_KEYWORDS = ("subject_type", "subject_id", "exclusive_key")
KEY_FUNCTIONS = {"active_run_for_key", "subject_key"}

# (path, rule, detail) -> why it is still there, and the work that removes it. Empty: every app keeps the
# boundary. A migration that cannot move in one step lists what it still does here, entry by entry.
ALLOWED: dict[tuple[str, str, str], str] = {}


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    rule: str
    detail: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: [{self.rule}] {self.detail}"


def modules(root: Path) -> Iterator[Path]:
    for app in APPS:
        for path in sorted((root / app).rglob("*.py")):
            relative = path.relative_to(root).as_posix()
            if relative.startswith(ENGINE + "/") or "/migrations/" in relative:
                continue
            yield path


def _chain_root(node: ast.expr) -> str | None:
    """The name a chain of attributes and calls starts from: `WorkflowRun` in `WorkflowRun.objects.filter(...)`."""
    while isinstance(node, ast.Attribute | ast.Call):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def engine_modules(root: Path) -> set[str]:
    """The names of fleet/workflows' modules and packages (what `from fleet.workflows import x` may name)."""
    package = root / ENGINE
    return {p.stem for p in package.glob("*.py") if p.stem != "__init__"} | {
        p.name for p in package.iterdir() if p.is_dir() and (p / "__init__.py").exists()
    }


def _internal(module: str) -> bool:
    """Whether `module` (dotted) is one of the engine's modules that apps may not import."""
    if module == "fleet.workflows" or not module.startswith("fleet.workflows."):
        return False
    return not any(module == public or module.startswith(public + ".") for public in PUBLIC_MODULES[1:])


def check_module(path: str, source: str, submodules: frozenset[str] | set[str] = frozenset()) -> list[Finding]:
    """The boundary violations in one module's source (`path` as reported, relative to the root);
    `submodules` are the engine's module names, for `from fleet.workflows import engine`."""
    found: list[Finding] = []
    tree = ast.parse(source, filename=path)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if _internal(node.module):
                found.append(Finding(path, node.lineno, "import", node.module))
            elif node.module == "fleet.workflows":
                for alias in node.names:
                    if _internal(f"fleet.workflows.{alias.name}") and alias.name in submodules:
                        found.append(Finding(path, node.lineno, "import", f"fleet.workflows.{alias.name}"))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if _internal(alias.name):
                    found.append(Finding(path, node.lineno, "import", alias.name))
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute):
                if func.attr in WRITE_METHODS and _chain_root(func.value) in MODELS:
                    found.append(Finding(path, node.lineno, "write", f"{_chain_root(func.value)}.{func.attr}"))
                if func.attr == "update":
                    for keyword in node.keywords:
                        if keyword.arg in ENGINE_COLUMNS:
                            found.append(Finding(path, node.lineno, "write", keyword.arg))
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if name in KEY_FUNCTIONS:
                found.append(Finding(path, node.lineno, "key", name))
            for keyword in node.keywords:
                if keyword.arg and keyword.arg.split("__")[0] in KEY_KEYWORDS:
                    found.append(Finding(path, node.lineno, "key", keyword.arg.split("__")[0]))
        elif isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Attribute) and target.attr in ENGINE_COLUMNS:
                    found.append(Finding(path, node.lineno, "write", target.attr))
    return found


def check(root: Path) -> tuple[list[Finding], list[tuple[str, str, str]]]:
    """(violations not allowed, allow-list entries that matched nothing) for the tree at `root`."""
    violations: list[Finding] = []
    used: set[tuple[str, str, str]] = set()
    submodules = engine_modules(root)
    for path in modules(root):
        relative = path.relative_to(root).as_posix()
        for finding in check_module(relative, path.read_text(), submodules):
            key = (finding.path, finding.rule, finding.detail)
            if key in ALLOWED:
                used.add(key)
            else:
                violations.append(finding)
    stale = sorted(key for key in ALLOWED if key not in used)
    return violations, stale


def main() -> int:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent)
    violations, stale = check(root)
    for entry in stale:
        print(f"note: allowed but no longer found, delete it from ALLOWED: {entry}")
    for finding in violations:
        print(finding)
    if violations:
        print(
            f"{len(violations)} use(s) of the workflow engine's internals outside fleet/workflows: use the public "
            "API (fleet.workflows: start, cancel, retry, wake, active_run, runs_of, errors_as_outcomes)"
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
