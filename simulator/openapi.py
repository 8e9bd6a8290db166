"""OpenAPI documents, minimal but valid, for what kubectl reads from them.

`kubectl apply` (client- or server-side) builds a validator that first asks whether the server does
field validation itself: it looks in /openapi/v3/<group-version> for the resource's PATCH operation
(matched by `x-kubernetes-group-version-kind`) and checks that it declares the `fieldValidation` query
parameter. When it does, kubectl sends `fieldValidation=Strict` and skips client-side schema validation,
so the documents need paths with those operations, and schemas only loosely (objects that preserve
unknown fields). /openapi/v2 carries the same operations in Swagger 2.0 form for older clients.
"""

import hashlib
import json
from typing import Any

from simulator.fleetgen import K3S_VERSION
from simulator.resources import ResourceType, group_versions, resources_in

_QUERY = ("dryRun", "fieldManager", "fieldValidation", "force", "pretty")


def gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _schema_name(rt: ResourceType) -> str:
    group = rt.group or "core"
    return f"io.k8s.api.{group}.{rt.version}.{rt.kind}"


def _gvk(rt: ResourceType) -> dict[str, str]:
    return {"group": rt.group, "version": rt.version, "kind": rt.kind}


def _operations(rt: ResourceType, *, v3: bool) -> dict[str, Any]:
    """Paths of one resource with get/put/patch/delete operations."""
    base = f"/{gv_path(rt.group, rt.version)}"
    item = f"{base}/namespaces/{{namespace}}/{rt.plural}/{{name}}" if rt.namespaced else f"{base}/{rt.plural}/{{name}}"
    ref = f"#/components/schemas/{_schema_name(rt)}" if v3 else f"#/definitions/{_schema_name(rt)}"

    def param(name: str) -> dict[str, Any]:
        kind = "boolean" if name == "force" else "string"
        typed = {"schema": {"type": kind}} if v3 else {"type": kind}
        return {"name": name, "in": "query", **typed}

    def response() -> dict[str, Any]:
        if v3:
            return {"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": ref}}}}}
        return {"200": {"description": "OK", "schema": {"$ref": ref}}}

    def operation(verb: str, action: str, params: tuple[str, ...]) -> dict[str, Any]:
        op: dict[str, Any] = {
            "operationId": f"{verb}{rt.kind}",
            "parameters": [param(p) for p in params],
            "responses": response(),
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": _gvk(rt),
        }
        if verb in ("replace", "patch") and v3:
            types = (
                ("application/json",)
                if verb == "replace"
                else (
                    "application/apply-patch+yaml",
                    "application/json-patch+json",
                    "application/merge-patch+json",
                    "application/strategic-merge-patch+json",
                )
            )
            op["requestBody"] = {"content": {t: {"schema": {"$ref": ref}} for t in types}, "required": True}
        return op

    def path_param(name: str) -> dict[str, Any]:
        typed = {"schema": {"type": "string"}} if v3 else {"type": "string"}
        return {"name": name, "in": "path", "required": True, **typed}

    path_params = [path_param("name")] + ([path_param("namespace")] if rt.namespaced else [])
    return {
        item: {
            "get": operation("read", "get", ("pretty",)),
            "put": operation("replace", "put", ("dryRun", "fieldManager", "fieldValidation", "pretty")),
            "patch": operation("patch", "patch", _QUERY),
            "delete": operation("delete", "delete", ("dryRun", "pretty")),
            "parameters": path_params,
        }
    }


def _schemas(served: list[ResourceType]) -> dict[str, Any]:
    schemas: dict[str, Any] = {
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "namespace": {"type": "string"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
            },
            "x-kubernetes-preserve-unknown-fields": True,
        }
    }
    for rt in served:
        schemas[_schema_name(rt)] = {
            "type": "object",
            "description": f"{rt.kind} (simulated; fields beyond metadata are not described)",
            "properties": {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "metadata": {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"},
            },
            "x-kubernetes-preserve-unknown-fields": True,
            "x-kubernetes-group-version-kind": [_gvk(rt)],
        }
    return schemas


def v3_document(group: str, version: str) -> dict[str, Any] | None:
    served = resources_in(group, version)
    if not served:
        return None
    paths: dict[str, Any] = {}
    for rt in served:
        paths.update(_operations(rt, v3=True))
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": K3S_VERSION},
        "paths": paths,
        "components": {"schemas": _schemas(served)},
    }


def v3_root(prefix: str) -> dict[str, Any]:
    """The index of per-group documents; `prefix` is the site's path (URLs are server-relative)."""
    paths = {}
    for group, versions in group_versions().items():
        for version in versions:
            path = gv_path(group, version)
            digest = hashlib.sha256(json.dumps(v3_document(group, version), sort_keys=True).encode()).hexdigest()
            paths[path] = {"serverRelativeURL": f"{prefix}/openapi/v3/{path}?hash={digest.upper()}"}
    return {"paths": paths}


def v2_document() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    served = [rt for group, versions in group_versions().items() for v in versions for rt in resources_in(group, v)]
    for rt in served:
        paths.update(_operations(rt, v3=False))
    schemas = _schemas(served)
    text = json.dumps(schemas).replace("#/components/schemas/", "#/definitions/")
    return {
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": K3S_VERSION},
        "paths": paths,
        "definitions": json.loads(text),
    }
