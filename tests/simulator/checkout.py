"""A working clone of a simulated site's repository for tests that push to it with plain git (no tests here)."""

import subprocess
from pathlib import Path


class Checkout:
    """A working clone of the site repository, driven with the git command line."""

    def __init__(self, url: str, path: Path):
        self.path = path
        self.git("clone", "-q", url, str(path), cwd=path.parent)

    def git(self, *args: str, cwd: Path | None = None) -> str:
        done = subprocess.run(
            ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com", *args],
            cwd=cwd or self.path,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return done.stdout.strip()

    def commit(self, files: dict[str, str | None], message: str) -> str:
        for name, text in files.items():
            target = self.path / name
            if text is None:
                target.unlink()
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text)
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        self.git("push", "-q", "origin", "HEAD:main")
        return self.git("rev-parse", "HEAD")
