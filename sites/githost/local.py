"""The embedded default git host: bare repositories on the control plane's disk, `FLEET_REPO_ROOT/<code>.git`
(under FLEET_DATA_DIR unless configured), as every site had before there was a git host adapter.

There is no server and so no credential for the edge: the simulator's agents read these repositories
from the same disk. What a server would enforce is set in each repository instead: `main` is the
default branch, `receive.denyNonFastForwards` and `receive.denyDeletes` refuse force pushes and branch
deletions, and an archived repository gets a pre-receive hook that refuses every push. git runs as a
plain process here (`git init`, `git config`), hermetically, with a timeout.
"""

import datetime
import logging
import os
import subprocess
from pathlib import Path

from django.conf import settings

from sites.githost.base import BRANCH, DeployToken, DeployTokenInfo, ProjectInfo
from sites.githost.errors import GitHostRefused, GitHostUnavailable
from sites.githost.paths import path_problem

logger = logging.getLogger(__name__)

ARCHIVED_KEY = "edgefleet.archived"
ARCHIVED_HOOK = """#!/bin/sh
echo "this repository is archived: its site was decommissioned (edgefleet)" >&2
exit 1
"""


class LocalHost:
    """Bare repositories under `root`. Build with `LocalHost.from_settings()`."""

    kind = "local"

    def __init__(self, root: Path | str, *, timeout: float = 30.0):
        self.root = Path(root)
        self.timeout = float(timeout)

    @classmethod
    def from_settings(cls) -> "LocalHost":
        return cls(settings.REPO_ROOT, timeout=settings.FLEET_GIT_TIMEOUT)

    def __repr__(self) -> str:
        return f"<LocalHost {self.root}>"

    def _repo(self, code: str) -> Path:
        problem = path_problem(code)
        if problem:
            raise GitHostRefused(f"the site code {code!r} cannot name a repository: {problem}")
        return self.root / f"{code}.git"

    def clone_url(self, code: str) -> str:
        """The repository's path, as `SiteRepo.for_site` uses for a site without a repo_url."""
        return str(self._repo(code))

    def find_project(self, code: str) -> ProjectInfo | None:
        repo = self._repo(code)
        if not (repo / "HEAD").is_file():
            return None
        return self._info(code, repo)

    def ensure_project(self, code: str, *, mark: bool = True) -> ProjectInfo:
        # `mark` is the GitLab host's: a local repository carries no marker commit (nothing else writes here).
        repo = self._repo(code)
        changes = []
        if not (repo / "HEAD").is_file():
            repo.parent.mkdir(parents=True, exist_ok=True)
            self._git(repo.parent, "init", "-q", "--bare", "-b", BRANCH, str(repo))
            changes.append("created")
        if self._config(repo, ARCHIVED_KEY) == "true":
            raise GitHostRefused(
                f"the repository {repo} is archived (the site was decommissioned); remove "
                f"hooks/pre-receive and the {ARCHIVED_KEY} setting in it to onboard the site again"
            )
        for key in ("receive.denyNonFastForwards", "receive.denyDeletes"):
            if self._config(repo, key) != "true":
                self._git(repo, "config", "--file", str(repo / "config"), key, "true")
                if "protected" not in changes:
                    changes.append("protected")
        if changes:
            logger.info("git host (local): %s %s", repo, ", ".join(changes))
        return ProjectInfo(**{**self._info(code, repo).__dict__, "changes": tuple(changes)})

    def issue_deploy_token(self, code: str, *, expires_at: datetime.datetime | None = None) -> DeployToken | None:
        return None  # the edge reads the same disk: there is nothing to hand it

    def deploy_tokens(self, code: str) -> list[DeployTokenInfo]:
        return []

    def revoke_deploy_tokens(self, code: str, *, keep: int | None = None) -> list[int]:
        return []

    def archive_project(self, code: str) -> ProjectInfo | None:
        repo = self._repo(code)
        if not (repo / "HEAD").is_file():
            return None
        if self._config(repo, ARCHIVED_KEY) != "true":
            hook = repo / "hooks" / "pre-receive"
            hook.parent.mkdir(exist_ok=True)
            hook.write_text(ARCHIVED_HOOK)
            hook.chmod(0o755)
            self._git(repo, "config", "--file", str(repo / "config"), ARCHIVED_KEY, "true")
            logger.info("git host (local): %s archived", repo)
        return self._info(code, repo)

    # --- helpers --------------------------------------------------------------------------------------

    def _info(self, code: str, repo: Path) -> ProjectInfo:
        heads = repo / "refs" / "heads"
        packed = repo / "packed-refs"
        empty = not (heads.is_dir() and any(heads.iterdir())) and not (
            packed.is_file() and " refs/heads/" in packed.read_text(errors="replace")
        )
        return ProjectInfo(
            code=code,
            path=str(repo),
            clone_url=str(repo),
            archived=self._config(repo, ARCHIVED_KEY) == "true",
            empty=empty,
        )

    def _config(self, repo: Path, key: str) -> str | None:
        out = self._git(repo, "config", "--file", str(repo / "config"), "--get", key, check=False)
        return out.strip() or None

    def _git(self, cwd: Path, *args: str, check: bool = True) -> str:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_CEILING_DIRECTORIES": str(cwd),
        }
        try:
            result = subprocess.run(  # noqa: S603 - fixed git arguments, no shell
                ["git", *args],  # noqa: S607 - git from PATH, as SiteRepo runs it
                cwd=cwd,
                env=env,
                capture_output=True,
                text=True,
                timeout=self.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise GitHostUnavailable(f"git {args[0]} in {cwd} took longer than {self.timeout:g}s") from None
        except OSError as exc:
            raise GitHostUnavailable(f"cannot run git in {cwd}: {exc.strerror}") from None
        if check and result.returncode != 0:
            raise GitHostRefused(f"git {args[0]} in {cwd} failed: {result.stderr.strip()[:300]}")
        return result.stdout
