"""The git host's records and roles: groups, projects with their protected branches, access and deploy
tokens, the `Principal` a request acts as, and who may read a project over git. Times are GitLab's
ISO strings (`iso`, `parse_moment`)."""

import datetime
from dataclasses import dataclass, field
from typing import Any

GUEST, REPORTER, DEVELOPER, MAINTAINER, OWNER = 10, 20, 30, 40, 50
ROLE_NAMES = {GUEST: "Guest", REPORTER: "Reporter", DEVELOPER: "Developers", MAINTAINER: "Maintainers", OWNER: "Owner"}
API_SCOPES = {"api", "read_api", "read_repository", "write_repository", "read_user", "read_registry", "write_registry"}
DEPLOY_SCOPES = {
    "read_repository", "read_registry", "write_registry", "read_package_registry", "write_package_registry"
}  # fmt: skip
READ_API = ("api", "read_api")
WRITE_API = ("api",)
GIT_READ = ("api", "read_repository", "write_repository")
GIT_WRITE = ("api", "write_repository")


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def iso(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_moment(value: str) -> datetime.datetime:
    """A date (`2026-03-01`, midnight UTC, as GitLab reads one) or an ISO 8601 time; ValueError if neither."""
    text = value.strip()
    if len(text) == 10:
        return datetime.datetime.fromisoformat(text).replace(tzinfo=datetime.UTC)
    moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)


@dataclass
class Group:
    id: int
    name: str
    path: str
    full_path: str
    parent_id: int | None = None
    description: str = ""
    created_at: str = ""


@dataclass
class ProtectedBranch:
    id: int
    name: str
    push_access_level: int = MAINTAINER
    merge_access_level: int = MAINTAINER
    allow_force_push: bool = False


@dataclass
class Project:
    id: int
    name: str
    path: str
    namespace_id: int
    description: str = ""
    archived: bool = False
    default_branch: str = "main"
    visibility: str = "private"
    topics: list[str] = field(default_factory=list)
    creator_id: int = 1
    created_at: str = ""
    last_activity_at: str = ""
    protected_branches: list[ProtectedBranch] = field(default_factory=list)


@dataclass
class AccessToken:
    """A personal (project_id None) or project access token, with the user it acts as."""

    id: int
    name: str
    token: str
    scopes: list[str]
    user_id: int
    username: str
    access_level: int = OWNER
    admin: bool = False
    project_id: int | None = None
    expires_at: str | None = None
    revoked: bool = False
    created_at: str = ""
    last_used_at: str | None = None

    def expired(self) -> bool:
        return self.expires_at is not None and parse_moment(self.expires_at) <= utc_now()


@dataclass
class DeployToken:
    id: int
    project_id: int
    name: str
    username: str
    token: str
    scopes: list[str]
    expires_at: str | None = None
    revoked: bool = False
    created_at: str = ""

    def expired(self) -> bool:
        return self.expires_at is not None and parse_moment(self.expires_at) <= utc_now()

    def to_json(self, *, with_token: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "username": self.username,
            "expires_at": self.expires_at,
            "revoked": self.revoked,
            "expired": self.expired(),
            "scopes": list(self.scopes),
        }
        if with_token:
            data["token"] = self.token
        return data


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: an access token's user, or a deploy token (git only)."""

    kind: str  # "access" or "deploy"
    name: str
    scopes: tuple[str, ...]
    admin: bool = False
    access_level: int = 0
    project_id: int | None = None  # the one project a project access token or deploy token reaches

    def level_on(self, project: Project) -> int:
        if self.project_id is not None and self.project_id != project.id:
            return 0
        if self.admin:
            return OWNER
        return self.access_level

    def has_scope(self, wanted: tuple[str, ...]) -> bool:
        return any(scope in self.scopes for scope in wanted)


def may_read(principal: Principal, project: Project) -> bool:
    """Whether `principal` may clone or fetch `project` over git."""
    if principal.kind == "deploy":
        return principal.project_id == project.id and "read_repository" in principal.scopes
    return principal.has_scope(GIT_READ) and principal.level_on(project) >= REPORTER
