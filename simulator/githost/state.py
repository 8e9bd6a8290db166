"""`GitHostState`: what the simulated git host knows (groups, projects, access and deploy tokens) and the
token checks every request passes (GitLab's 401 and 403 bodies). Kept in `DIR/githost/state.json`
(mode 0600, rewritten on every change), so a restarted simulator serves the same projects and tokens;
the kinds of token are described in docs/SIMULATOR.md, "The git host"."""

import json
import os
import secrets
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from simulator.githost.errors import HostError, invalid_token, message
from simulator.githost.paths import path_problem
from simulator.githost.records import (
    OWNER,
    REPORTER,
    AccessToken,
    DeployToken,
    Group,
    Principal,
    Project,
    ProtectedBranch,
    iso,
    utc_now,
)


def _load(cls: type, data: dict[str, Any]) -> Any:
    known = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in known})


class GitHostState:
    """The git host's records and the rules of access. `url` is the host's base URL (set once listening)."""

    def __init__(self, state_dir: Path, repos_dir: Path, sites_group: str):
        self.dir = state_dir
        self.repos_dir = repos_dir
        self.sites_group_path = sites_group.strip("/")
        self.url = ""
        self.groups: dict[int, Group] = {}
        self.projects: dict[int, Project] = {}
        self.tokens: dict[int, AccessToken] = {}
        self.deploy_tokens: dict[int, DeployToken] = {}
        self.next_id: dict[str, int] = {"group": 1, "project": 1, "token": 1, "deploy_token": 1, "user": 2, "branch": 1}
        self.root_token = ""
        self._by_value: dict[str, AccessToken | DeployToken] = {}

    # --- persistence ----------------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        return self.dir / "state.json"

    def load(self) -> None:
        """Read the saved state (if any), make the sites group and the root token, save."""
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            data = json.loads(self.path.read_text())
            self.next_id.update(data.get("next_id", {}))
            self.groups = {g["id"]: _load(Group, g) for g in data.get("groups", [])}
            for raw in data.get("projects", []):
                project = _load(Project, raw)
                project.protected_branches = [_load(ProtectedBranch, b) for b in raw.get("protected_branches", [])]
                self.projects[project.id] = project
            self.tokens = {t["id"]: _load(AccessToken, t) for t in data.get("tokens", [])}
            self.deploy_tokens = {t["id"]: _load(DeployToken, t) for t in data.get("deploy_tokens", [])}
        self._by_value = {t.token: t for t in self.tokens.values()}
        self._by_value.update({t.token: t for t in self.deploy_tokens.values()})
        self.ensure_group_path(self.sites_group_path)
        root = next((t for t in self.tokens.values() if t.name == "edgefleet-control-plane" and t.admin), None)
        if root is None:
            root = self.add_token(name="edgefleet-control-plane", scopes=["api"], username="root", admin=True)
        self.root_token = root.token
        token_file = self.dir / "root-token"
        token_file.write_text(root.token + "\n")
        token_file.chmod(0o600)
        self.save()

    def save(self) -> None:
        data = {
            "next_id": self.next_id,
            "groups": [asdict(g) for g in self.groups.values()],
            "projects": [asdict(p) for p in self.projects.values()],
            "tokens": [asdict(t) for t in self.tokens.values()],
            "deploy_tokens": [asdict(t) for t in self.deploy_tokens.values()],
        }
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(data, out, indent=1)
        tmp.replace(self.path)

    def allocate_id(self, kind: str) -> int:
        value = self.next_id[kind]
        self.next_id[kind] = value + 1
        return value

    # --- groups and projects --------------------------------------------------------------------------

    def ensure_group_path(self, full_path: str) -> Group:
        parent: Group | None = None
        for depth, part in enumerate(full_path.split("/"), start=1):
            prefix = "/".join(full_path.split("/")[:depth])
            found = self.find_group(prefix)
            if found is None:
                found = Group(
                    id=self.allocate_id("group"),
                    name=part,
                    path=part,
                    full_path=prefix,
                    parent_id=parent.id if parent else None,
                    created_at=iso(utc_now()),
                )
                self.groups[found.id] = found
            parent = found
        assert parent is not None  # noqa: S101 - a path has at least one part
        return parent

    def find_group(self, ref: str) -> Group | None:
        """By id or full path (case-insensitive, as GitLab routes)."""
        if ref.isdigit():
            return self.groups.get(int(ref))
        wanted = ref.strip("/").lower()
        return next((g for g in self.groups.values() if g.full_path.lower() == wanted), None)

    @property
    def sites_group(self) -> Group:
        group = self.find_group(self.sites_group_path)
        assert group is not None  # noqa: S101 - made by load()
        return group

    def full_path(self, project: Project) -> str:
        return f"{self.groups[project.namespace_id].full_path}/{project.path}"

    def find_project(self, ref: str) -> Project | None:
        if ref.isdigit():
            return self.projects.get(int(ref))
        wanted = ref.strip("/").lower()
        return next((p for p in self.projects.values() if self.full_path(p).lower() == wanted), None)

    def repo_path(self, project: Project) -> Path:
        """Where the project's bare repository lives: the sites group's projects are the sites' repositories."""
        group = self.groups[project.namespace_id]
        if group.id == self.sites_group.id:
            return self.repos_dir / f"{project.path}.git"
        return self.repos_dir / group.full_path / f"{project.path}.git"

    def create_project(self, *, name: str, path: str, namespace: Group, creator: Principal, **extra: Any) -> Project:
        problems: dict[str, list[str]] = {}
        problem = path_problem(path)
        if problem:
            problems["path"] = [problem]
        if not name.strip():
            problems["name"] = ["can't be blank"]
        taken = [p for p in self.projects.values() if p.namespace_id == namespace.id]
        if any(p.path.lower() == path.lower() for p in taken):
            problems.setdefault("path", []).append("has already been taken")
            problems["project_namespace.name"] = ["has already been taken"]
        if any(p.name.lower() == name.lower() for p in taken):
            problems.setdefault("name", []).append("has already been taken")
        if problems:
            raise HostError(400, {"message": problems})
        now = iso(utc_now())
        project = Project(
            id=self.allocate_id("project"),
            name=name,
            path=path,
            namespace_id=namespace.id,
            created_at=now,
            last_activity_at=now,
            creator_id=1 if creator.admin else 0,
            **extra,
        )
        # GitLab's default branch protection: maintainers push, nobody force-pushes.
        project.protected_branches.append(ProtectedBranch(id=self.allocate_id("branch"), name=project.default_branch))
        self.projects[project.id] = project
        self.save()
        return project

    # --- tokens ---------------------------------------------------------------------------------------

    def add_token(
        self,
        *,
        name: str,
        scopes: list[str],
        username: str | None = None,
        admin: bool = False,
        access_level: int = OWNER,
        project_id: int | None = None,
        expires_at: str | None = None,
        revoked: bool = False,
    ) -> AccessToken:
        user_id = 1 if username == "root" else self.allocate_id("user")
        if username is None:
            username = f"project_{project_id}_bot_{user_id}" if project_id else f"user{user_id}"
        token = AccessToken(
            id=self.allocate_id("token"),
            name=name,
            token="glpat-" + secrets.token_urlsafe(15),
            scopes=list(scopes),
            user_id=user_id,
            username=username,
            access_level=access_level,
            admin=admin,
            project_id=project_id,
            expires_at=expires_at,
            revoked=revoked,
            created_at=iso(utc_now()),
        )
        self.tokens[token.id] = token
        self._by_value[token.token] = token
        self.save()
        return token

    def add_deploy_token(
        self, project: Project, *, name: str, scopes: list[str], username: str = "", expires_at: str | None = None
    ) -> DeployToken:
        token_id = self.allocate_id("deploy_token")
        token = DeployToken(
            id=token_id,
            project_id=project.id,
            name=name,
            username=username or f"gitlab+deploy-token-{token_id}",
            token="gldt-" + secrets.token_urlsafe(15),
            scopes=list(scopes),
            expires_at=expires_at,
            created_at=iso(utc_now()),
        )
        self.deploy_tokens[token.id] = token
        self._by_value[token.token] = token
        self.save()
        return token

    def api_principal(self, value: str | None) -> Principal:
        """The caller of an API request from its token, or GitLab's 401 for a missing or unusable one."""
        found = self._by_value.get(value) if value else None
        if not isinstance(found, AccessToken) or not secrets.compare_digest(found.token, value or ""):
            raise message(401, "401 Unauthorized")
        token = found
        if token.revoked:
            raise invalid_token("Token was revoked. You have to re-authorize from the user.")
        if token.expired():
            raise invalid_token("Token is expired. You can either do re-authorization or token refresh.")
        token.last_used_at = iso(utc_now())
        return self._principal(token)

    def _principal(self, token: AccessToken) -> Principal:
        return Principal(
            kind="access",
            name=token.username,
            scopes=tuple(token.scopes),
            admin=token.admin,
            access_level=token.access_level,
            project_id=token.project_id,
        )

    def git_principal(self, username: str, password: str) -> Principal | None:
        """The caller of a git request from HTTP Basic credentials: an access token (any user name) or a
        deploy token (its own user name); None when they open nothing."""
        found = self._by_value.get(password)
        if found is None or not secrets.compare_digest(found.token, password):
            return None
        if isinstance(found, DeployToken):
            if found.revoked or found.expired() or username != found.username:
                return None
            return Principal(
                kind="deploy", name=found.username, scopes=tuple(found.scopes), project_id=found.project_id,
                access_level=REPORTER,
            )  # fmt: skip
        if found.revoked or found.expired() or not username:
            return None
        return self._principal(found)
