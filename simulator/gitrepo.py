"""Reading a site's bare git repository without spawning git: the branch ref from files, the tree of a
commit through gitdb (pure Python, reads loose objects and packs). Also creating a bare repository.

Polling 3000 repositories every few seconds must cost little, so a poll is one small file read; trees
are only read when the ref moved.
"""

import zlib
from pathlib import Path

from gitdb import GitDB
from gitdb.util import hex_to_bin

BRANCH_REF = "refs/heads/main"
MAX_FILE_BYTES = 2 * 1024 * 1024


class RepoError(Exception):
    """The repository or one of its objects cannot be read."""


def init_bare(path: Path) -> bool:
    """Create an empty bare repository with `main` as its default branch; False when one exists.

    Written as files rather than with `git init` so that creating 3000 of them costs milliseconds."""
    if (path / "HEAD").exists():
        return False
    for sub in ("objects/info", "objects/pack", "refs/heads", "refs/tags", "info", "hooks"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    (path / "config").write_text("[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = true\n")
    (path / "description").write_text("edgefleet simulated site repository\n")
    (path / "HEAD").write_text(f"ref: {BRANCH_REF}\n")
    return True


def read_ref(repo: Path, ref: str = BRANCH_REF) -> str | None:
    """The commit the branch points at, from the loose ref file or else `packed-refs`."""
    try:
        text = (repo / ref).read_text().strip()
        if len(text) == 40:
            return text
    except FileNotFoundError:
        pass
    except OSError:
        return None
    try:
        packed = (repo / "packed-refs").read_text()
    except OSError:
        return None
    for line in packed.splitlines():
        if line.endswith(" " + ref) and not line.startswith(("#", "^")):
            return line.split(" ", 1)[0]
    return None


def read_tree(repo: Path, commit_sha: str) -> dict[str, bytes]:
    """Every file (path -> content) in the commit's tree."""
    try:
        odb = GitDB(str(repo / "objects"))
        kind, data = _read(odb, commit_sha)
        if kind != b"commit":
            raise RepoError(f"{commit_sha} is a {kind.decode()}, not a commit")
        tree_sha = data.split(b"\n", 1)[0].split(b" ", 1)[1].decode()
        files: dict[str, bytes] = {}
        _walk(odb, tree_sha, "", files)
        return files
    except (ValueError, OSError, zlib.error, IndexError) as exc:
        raise RepoError(f"cannot read commit {commit_sha}: {exc}") from exc


def _read(odb: GitDB, sha: str) -> tuple[bytes, bytes]:
    stream = odb.stream(hex_to_bin(sha))
    return stream.type, stream.read()


def _walk(odb: GitDB, tree_sha: str, prefix: str, files: dict[str, bytes]) -> None:
    kind, data = _read(odb, tree_sha)
    if kind != b"tree":
        raise RepoError(f"{tree_sha} is not a tree")
    pos = 0
    while pos < len(data):
        space = data.index(b" ", pos)
        nul = data.index(b"\0", space)
        mode, name = data[pos:space], data[space + 1 : nul].decode("utf-8", "replace")
        sha = data[nul + 1 : nul + 21].hex()
        pos = nul + 21
        path = f"{prefix}{name}"
        if mode == b"40000":
            _walk(odb, sha, f"{path}/", files)
        elif mode.startswith(b"10"):  # regular files; symlinks (120000) and submodules are skipped
            blob_kind, blob = _read(odb, sha)
            if blob_kind == b"blob" and len(blob) <= MAX_FILE_BYTES:
                files[path] = blob
