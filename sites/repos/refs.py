"""Reading a branch's head straight from a local repository's files, without starting git.

The drift check asks every site's repository for its head every minute; for the local git host (bare
repositories on this machine) a `git ls-remote` per site was most of what that check cost. Git's
"files" ref storage is documented and stable: a loose ref is a file holding the object id, replaced by
rename (so a reader sees the old or the new id, never half), and refs packed by `git pack-refs` are
lines of `<id> <ref>` in `packed-refs`, a loose ref taking precedence. Anything else (a symbolic ref,
the reftable storage, an unreadable file) is `UNKNOWN`, and the caller asks git.
"""

import os
import re
from pathlib import Path
from typing import Final

UNKNOWN: Final = "unknown"  # not answered from the files: ask git
_OBJECT_ID = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
_MAX_PACKED_REFS = 16 * 1024 * 1024  # far above any site repository's; larger is not ours to parse


def _read(path: Path, limit: int) -> str | None:
    """The file's text, None when it does not exist; never through a symbolic link."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"{path.name} is larger than {limit} bytes")
    return data.decode("ascii", errors="replace")


def local_head(repo: Path, ref: str) -> str | None:
    """The object id `ref` (e.g. `refs/heads/main`) points to in the bare repository `repo`, None when the
    repository has no such ref (empty), or UNKNOWN when the files cannot answer."""
    try:
        if not (repo / "HEAD").is_file() or (repo / "reftable").exists():
            return UNKNOWN  # not a bare repository with files storage: git will say what it is
        loose = _read(repo / ref, 1024)
        if loose is not None:
            value = loose.strip()
            return value if _OBJECT_ID.match(value) else UNKNOWN
        packed = _read(repo / "packed-refs", _MAX_PACKED_REFS)
    except (OSError, ValueError):
        return UNKNOWN
    for line in (packed or "").splitlines():
        if line.startswith(("#", "^")):
            continue
        value, _, name = line.partition(" ")
        if name == ref:
            return value if _OBJECT_ID.match(value) else UNKNOWN
    return None
