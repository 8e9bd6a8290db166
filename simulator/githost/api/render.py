"""The JSON GitLab answers with for a group, a project and a protected branch."""

from typing import Any
from urllib.parse import urlsplit

from simulator.githost import repos
from simulator.githost.records import MAINTAINER, ROLE_NAMES, Group, Project, ProtectedBranch
from simulator.githost.state import GitHostState


def group_json(state: GitHostState, group: Group) -> dict[str, Any]:
    return {
        "id": group.id,
        "name": group.name,
        "path": group.path,
        "full_name": " / ".join(g.name for g in _ancestry(state, group)),
        "full_path": group.full_path,
        "description": group.description,
        "visibility": "private",
        "parent_id": group.parent_id,
        "web_url": f"{state.url}/groups/{group.full_path}",
        "avatar_url": None,
        "created_at": group.created_at,
    }


def _ancestry(state: GitHostState, group: Group) -> list[Group]:
    chain = [group]
    while chain[0].parent_id is not None and chain[0].parent_id in state.groups:
        chain.insert(0, state.groups[chain[0].parent_id])
    return chain


def project_json(state: GitHostState, project: Project) -> dict[str, Any]:
    group = state.groups[project.namespace_id]
    full = f"{group.full_path}/{project.path}"
    web_url = f"{state.url}/{full}"
    host = urlsplit(state.url).hostname or "localhost"
    return {
        "id": project.id,
        "description": project.description or None,
        "name": project.name,
        "name_with_namespace": f"{group.name} / {project.name}",
        "path": project.path,
        "path_with_namespace": full,
        "created_at": project.created_at,
        "last_activity_at": project.last_activity_at,
        "default_branch": project.default_branch,
        "tag_list": list(project.topics),
        "topics": list(project.topics),
        "ssh_url_to_repo": f"git@{host}:{full}.git",
        "http_url_to_repo": f"{web_url}.git",
        "web_url": web_url,
        "readme_url": None,
        "avatar_url": None,
        "forks_count": 0,
        "star_count": 0,
        "namespace": {
            "id": group.id,
            "name": group.name,
            "path": group.path,
            "kind": "group",
            "full_path": group.full_path,
            "parent_id": group.parent_id,
            "avatar_url": None,
            "web_url": f"{state.url}/groups/{group.full_path}",
        },
        "visibility": project.visibility,
        "archived": project.archived,
        "empty_repo": repos.is_empty(state.repo_path(project)),
        "creator_id": project.creator_id,
        "repository_access_level": "enabled",
    }


def protected_json(branch: ProtectedBranch) -> dict[str, Any]:
    def levels(level: int) -> list[dict[str, Any]]:
        description = "No one" if level == 0 else ROLE_NAMES.get(level, "Admins")
        return [{"id": branch.id, "access_level": level, "access_level_description": description,
                 "deploy_key_id": None, "user_id": None, "group_id": None}]  # fmt: skip

    return {
        "id": branch.id,
        "name": branch.name,
        "push_access_levels": levels(branch.push_access_level),
        "merge_access_levels": levels(branch.merge_access_level),
        "unprotect_access_levels": levels(MAINTAINER),
        "allow_force_push": branch.allow_force_push,
        "code_owner_approval_required": False,
    }
