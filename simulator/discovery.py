"""Discovery documents (/version, /api, /apis, /api/v1, /apis/<group>[/<version>]) built from the
resource table, in the legacy JSON form that both the Python client and kubectl accept (kubectl asks
for aggregated discovery first and falls back when the answer is plain application/json)."""

import hashlib
from typing import Any

from simulator.fleetgen import K3S_VERSION
from simulator.resources import ResourceType, group_versions, resources_in

VERSION_INFO = {
    "major": "1",
    "minor": "31",
    "gitVersion": K3S_VERSION,
    "gitCommit": "a562d090b4bf4e6b6d2d0ec4c6a5ef1d7d35e9e5",
    "gitTreeState": "clean",
    "buildDate": "2024-12-13T00:00:00Z",
    "goVersion": "go1.22.9",
    "compiler": "gc",
    "platform": "linux/amd64",
}


def version_info(git_version: str) -> dict[str, Any]:
    """/version of a K3s server running `git_version` (e.g. v1.30.8+k3s1)."""
    parts = git_version.lstrip("v").split(".")
    minor = parts[1] if len(parts) > 1 else VERSION_INFO["minor"]
    return {**VERSION_INFO, "major": parts[0] or "1", "minor": minor, "gitVersion": git_version}


def api_versions(server_address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def _group(name: str, versions: list[str]) -> dict[str, Any]:
    entries = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": entries, "preferredVersion": entries[0]}


def api_group_list() -> dict[str, Any]:
    groups = [_group(name, versions) for name, versions in group_versions().items() if name]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(name: str) -> dict[str, Any] | None:
    versions = group_versions().get(name)
    if not name or not versions:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(name, versions)}


def _resource_entries(rt: ResourceType) -> list[dict[str, Any]]:
    main: dict[str, Any] = {
        "name": rt.plural,
        "singularName": rt.singular,
        "namespaced": rt.namespaced,
        "kind": rt.kind,
        "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
        "storageVersionHash": hashlib.sha256(f"{rt.api_version}/{rt.kind}".encode()).hexdigest()[:11],
    }
    if rt.short_names:
        main["shortNames"] = list(rt.short_names)
    if rt.categories:
        main["categories"] = list(rt.categories)
    entries = [main]
    for sub in rt.subresources:
        entry: dict[str, Any] = {"name": f"{rt.plural}/{sub}", "singularName": "", "namespaced": rt.namespaced}
        if sub == "status":
            entry.update(kind=rt.kind, verbs=["get", "patch", "update"])
        elif sub == "scale":
            entry.update(group="autoscaling", version="v1", kind="Scale", verbs=["get", "patch", "update"])
        elif sub == "eviction":
            entry.update(group="policy", version="v1", kind="Eviction", verbs=["create"])
        entries.append(entry)
    return entries


def api_resource_list(group: str, version: str) -> dict[str, Any] | None:
    served = resources_in(group, version)
    if not served:
        return None
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": [entry for rt in served for entry in _resource_entries(rt)],
    }
