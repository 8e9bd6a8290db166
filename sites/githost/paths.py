"""GitLab's rules for a project path, which a site code must pass because it becomes one
(`<group>/<code>`). `sites.validators.validate_site_code` applies them when a site is created, beside its
own stricter pattern, so loosening that pattern can never let in a code the git host would refuse.

The simulator keeps the same rules in simulator/githost/paths.py (it imports nothing from here); a test
holds the two copies to the same answers.
"""

import re

MAX_PATH_LENGTH = 255
_CHARS_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
_SPECIAL = "_-."
# Routes GitLab keeps for itself below a project (Gitlab::PathRegex::PROJECT_WILDCARD_ROUTES).
RESERVED_PROJECT_PATHS = frozenset(
    {"-", "badges", "blame", "blob", "builds", "commits", "create", "create_dir", "edit", "files", "find_file",
     "new", "preview", "raw", "refs", "tree", "update", "wikis"}
)  # fmt: skip


def path_problem(path: str) -> str | None:
    """Why GitLab would refuse `path` as a project path, or None when it accepts it."""
    if not path:
        return "it is empty"
    if len(path) > MAX_PATH_LENGTH:
        return f"it is longer than {MAX_PATH_LENGTH} characters"
    if not _CHARS_RE.match(path):
        return "it may contain only letters, digits, '_', '-' and '.'"
    if path.endswith((".git", ".atom")):
        return "it must not end in '.git' or '.atom'"
    doubled = any(a in _SPECIAL and b in _SPECIAL for a, b in zip(path, path[1:], strict=False))
    if path[0] in _SPECIAL or path[-1] in _SPECIAL or doubled:
        return "it must not start or end with '_', '-' or '.', nor hold two of them in a row"
    if path.lower() in RESERVED_PROJECT_PATHS:
        return f"{path!r} is a name GitLab reserves"
    return None
