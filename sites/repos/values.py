"""The small values the git adapter takes and returns, the branch it writes, and its path rules.

Plain data with no git and no I/O: `Author` (who a commit is attributed to), `CommitResult` and
`MarkedCommit` (what a write or a trailer lookup found), and `clean_path`, the one reading of a
repository path that every write goes through before anything is touched.
"""

import re
from dataclasses import dataclass

from sites.repos.errors import UnsafePath

BRANCH = "main"
LOCAL_MAIN = "refs/heads/main"
REMOTE_MAIN = "refs/remotes/origin/main"


@dataclass(frozen=True)
class Author:
    """Who a commit is attributed to (the actor who asked for the change)."""

    name: str
    email: str

    def __post_init__(self) -> None:
        for value in (self.name, self.email):
            # git would silently drop or mangle these; better to refuse than to misattribute.
            if not value.strip() or any(ch in value for ch in "<>\n\r\0"):
                raise ValueError(f"invalid git author {self.name!r} <{self.email!r}>")

    @classmethod
    def of(cls, actor: object) -> "Author":
        """The author for an actor: a user (full name or username, and email) or a name such as "beat"."""
        if isinstance(actor, Author):
            return actor
        if isinstance(actor, str):
            name = actor.strip() or "edgefleet"
            email = ""
        else:
            get_username = getattr(actor, "get_username", None)
            get_full_name = getattr(actor, "get_full_name", None)
            username = str(get_username()) if callable(get_username) else str(actor)
            full_name = str(get_full_name()).strip() if callable(get_full_name) else ""
            name = full_name or username or "edgefleet"
            email = str(getattr(actor, "email", "") or "")
        if not email:
            # `.invalid` is reserved (RFC 2606): clearly not a mailbox, and git needs an address.
            email = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-").lower() + "@edgefleet.invalid"
        return cls(name=name, email=email)


#: The committer of every commit we make; the author is the actor.
COMMITTER = Author(name="edgefleet", email="edgefleet@edgefleet.invalid")


@dataclass(frozen=True)
class CommitResult:
    """The outcome of a write: the head of `main` afterwards and whether this call moved it.

    `revision` is None only for a repository that is still empty; `previous` is the head the change
    was made on top of (None for the first commit); `attempts` counts pushes raced by other writers + 1.
    """

    revision: str | None
    changed: bool
    previous: str | None
    attempts: int = 1


@dataclass(frozen=True)
class MarkedCommit:
    """A commit found by its trailer, and its first parent (None for a repository's first commit)."""

    revision: str
    parent: str | None


def clean_path(path: str) -> str:
    """A repository path in canonical form (`a/b.yaml`), or UnsafePath.

    Refused: empty, absolute, `..` anywhere, a `.git` component (any case: git itself refuses them on
    case-insensitive checkouts), backslashes and control characters (ambiguous or invisible in a log).
    """
    if not isinstance(path, str) or not path:
        raise UnsafePath(f"invalid repository path {path!r}: empty")
    if path.startswith("/"):
        raise UnsafePath(f"invalid repository path {path!r}: absolute")
    if "\\" in path or any(ord(ch) < 32 or ord(ch) == 127 for ch in path):
        raise UnsafePath(f"invalid repository path {path!r}: backslash or control character")
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if not parts:
        raise UnsafePath(f"invalid repository path {path!r}: names the repository root")
    if ".." in parts:
        raise UnsafePath(f"invalid repository path {path!r}: contains '..'")
    if any(part.lower() == ".git" for part in parts):
        raise UnsafePath(f"invalid repository path {path!r}: inside .git")
    return "/".join(parts)


def ancestors(path: str) -> list[str]:
    """`a/b/c` -> [`a`, `a/b`]."""
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]
