"""GitLab's rules for a project or group path (the last part of a URL), as GitLab applies them when a
project is created. edgefleet checks site codes against the same rules (sites/githost/paths.py); the
simulator keeps its own copy because it imports nothing from the control plane."""

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
        return "can't be blank"
    if len(path) > MAX_PATH_LENGTH:
        return f"is too long (maximum is {MAX_PATH_LENGTH} characters)"
    if not _CHARS_RE.match(path) or path.endswith((".git", ".atom")) or path.startswith("-"):
        return (
            "can contain only letters, digits, '_', '-' and '.'. Cannot start with '-', end in '.git' or end in '.atom'"
        )
    doubled = any(a in _SPECIAL and b in _SPECIAL for a, b in zip(path, path[1:], strict=False))
    if path[0] in _SPECIAL or path[-1] in _SPECIAL or doubled:
        return "must not start or end with a special character and must not contain consecutive special characters."
    if path.lower() in RESERVED_PROJECT_PATHS:
        return f"{path} is a reserved name"
    return None
