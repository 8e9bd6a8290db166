"""One site's resource endpoints: a path under `/api` or `/apis` and a method, turned into the `ApiServer`
call (create, get, replace, patch, delete, the scale and eviction subresources) with the query's
dry-run, field-validation, selector and delete options checked first."""

from typing import Any

from aiohttp import web

from simulator import errors, tables
from simulator.apiserver import PATCH_TYPES, apply_patch, parse_body
from simulator.errors import ApiError
from simulator.list_watch import list_response, wants_table, watch_response
from simulator.resources import BY_PATH, ResourceType, resources_in
from simulator.responses import JSON, json_response
from simulator.selectors import SelectorError, parse_field_selector, parse_label_selector
from simulator.site import Site

BODY_TYPES = ("application/json", "application/yaml", "application/x-yaml", "text/yaml")


def _dry_run(values: list[str]) -> bool:
    for value in values:
        if value != "All":
            raise errors.bad_request(f'Invalid dryRun value {value!r}: only "All" is supported')
    return bool(values)


async def resource(request: web.Request, site: Site, group: str, version: str, rest: list[str]) -> web.StreamResponse:
    namespace: str | None = None
    if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in ("status", "finalize"):
        namespace, rest = rest[1], rest[2:]
    if len(rest) > 3:
        raise ApiError(404, "the server could not find the requested resource")
    plural = rest[0]
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else None
    rt = BY_PATH.get((group, version, plural))
    if rt is None or not resources_in(group, version):
        raise ApiError(404, "the server could not find the requested resource")
    if (namespace is not None and not rt.namespaced) or (sub is not None and sub not in rt.subresources):
        raise ApiError(404, "the server could not find the requested resource")
    if sub == "finalize" or (rt.namespaced and name is not None and namespace is None):
        raise ApiError(404, "the server could not find the requested resource")
    api = site.api
    method = request.method
    query = request.query
    dry_run = _dry_run(query.getall("dryRun", []))
    for value in query.getall("fieldValidation", []):
        if value not in ("Strict", "Warn", "Ignore"):
            raise errors.bad_request(f"fieldValidation {value!r} is not one of Strict, Warn, Ignore")
    if name is None:
        if method == "GET":
            labels, fields = _selectors(request, rt)
            if query.get("watch") in ("true", "1"):
                return await watch_response(request, site, rt, namespace, labels, fields)
            return list_response(request, site, rt, namespace, labels, fields)
        if method == "POST":
            body = await _body(request)
            created = api.create(rt, namespace, body, dry_run=dry_run)
            return json_response(created, status=201)
        if method == "DELETE":
            labels, fields = _selectors(request, rt)
            removed = api.delete_collection(rt, namespace, labels, fields, dry_run=dry_run)
            return json_response(
                {
                    "kind": rt.list_kind,
                    "apiVersion": rt.api_version,
                    "metadata": {"resourceVersion": str(site.store.rv)},
                    "items": removed,
                }
            )
        raise ApiError(405, f"method {method} is not allowed on a collection")
    ns = namespace or ""
    if sub == "eviction":
        if method != "POST":
            raise ApiError(405, "evictions are created with POST")
        body = await _body(request)
        return json_response(api.evict(ns, name, body, dry_run=dry_run), status=201)
    if sub == "scale":
        if method == "GET":
            return json_response(api.scale(rt, ns, name))
        if method == "PUT":
            return json_response(api.set_scale(rt, ns, name, await _body(request), dry_run=dry_run))
        if method == "PATCH":
            scale = api.scale(rt, ns, name)
            patched = _patch_plain(scale, request.content_type, await _read(request))
            return json_response(api.set_scale(rt, ns, name, patched, dry_run=dry_run))
        raise ApiError(405, f"method {method} is not allowed on scale")
    if method == "GET":
        stored = api.get(rt, ns, name)
        if wants_table(request):
            return json_response(tables.table(rt, [stored.load()], site.store.rv))
        return web.Response(body=stored.raw, content_type=JSON)
    if method == "PUT":
        return json_response(api.replace(rt, ns, name, await _body(request), subresource=sub, dry_run=dry_run))
    if method == "PATCH":
        code, obj = api.patch(
            rt,
            ns,
            name,
            request.content_type,
            await _read(request),
            subresource=sub,
            dry_run=dry_run,
            field_manager=query.get("fieldManager"),
        )
        return json_response(obj, status=code)
    if method == "DELETE":
        if sub:
            raise ApiError(405, f"method DELETE is not allowed on {sub}")
        options = await _delete_options(request)
        propagation = query.get("propagationPolicy") or options.get("propagationPolicy")
        if propagation not in (None, "Orphan", "Background", "Foreground"):
            raise errors.bad_request(f"unsupported propagationPolicy {propagation!r}")
        dry = dry_run or _dry_run(options.get("dryRun") or [])
        deleted = api.delete(
            rt, ns, name, dry_run=dry, propagation=propagation, preconditions=options.get("preconditions")
        )
        return json_response(deleted)
    raise ApiError(405, f"method {method} is not allowed")


def _patch_plain(target: dict[str, Any], content_type: str, data: bytes) -> dict[str, Any]:
    """A patch of a subresource view (Scale) that is not stored as such."""
    kind = PATCH_TYPES.get(content_type)
    if kind is None or kind in ("unsupported", "apply"):
        raise ApiError(415, f"unsupported patch type {content_type!r} for this subresource")
    patched: dict[str, Any] = apply_patch(kind, target, parse_body(data, yaml_allowed=False))
    return patched


async def _read(request: web.Request) -> bytes:
    return await request.read()


async def _body(request: web.Request) -> Any:
    # No Content-Type at all means JSON, as on the API server (the Python client sends none on create).
    content_type = request.content_type if "Content-Type" in request.headers else JSON
    if content_type not in BODY_TYPES:
        raise ApiError(
            415,
            f"the body of the request was in an unknown format ({content_type or 'none'}) - "
            "accepted media types include: application/json, application/yaml",
        )
    return parse_body(await request.read(), yaml_allowed=content_type != "application/json")


async def _delete_options(request: web.Request) -> dict[str, Any]:
    data = await request.read()
    if not data.strip():
        return {}
    options = parse_body(data, yaml_allowed=True)
    if not isinstance(options, dict):
        raise errors.bad_request("DeleteOptions must be an object")
    return options


def _selectors(request: web.Request, rt: ResourceType) -> tuple[tuple[Any, ...], tuple[tuple[str, str, str], ...]]:
    try:
        labels = parse_label_selector(request.query.get("labelSelector"))
        fields = parse_field_selector(request.query.get("fieldSelector"), rt.field_selectors)
    except SelectorError as exc:
        raise errors.bad_request(f"unable to parse requirement: {exc}") from exc
    return labels, fields
