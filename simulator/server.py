"""The HTTP face of the fleet: the Kubernetes API of every site under /sites/<code>/, with per-site
bearer tokens and fault injection, plus the control API (see `simulator.control`).

Request flow: find the site -> check its token (401) -> roll the site's API faults -> route the path
(discovery, OpenAPI, or a resource) -> call `ApiServer` -> answer JSON (or a Table for kubectl). Every
refusal is a Kubernetes `Status`; an unexpected exception is a 500 Status too, never a hung connection.
"""

import asyncio
import base64
import json
import logging
import math
from typing import Any

from aiohttp import web

from simulator import discovery, errors, openapi, tables
from simulator.apiserver import PATCH_TYPES, parse_body
from simulator.control import add_control_routes
from simulator.errors import ApiError
from simulator.fleet import FLEET_KEY, Fleet
from simulator.patching import PatchError, json_patch, merge_patch, strategic_merge
from simulator.resources import BY_PATH, ResourceType, resources_in
from simulator.selectors import SelectorError, fields_match, labels_match, parse_field_selector, parse_label_selector
from simulator.site import Site
from simulator.store import ADDED, Stored, Watcher

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 3 * 1024 * 1024  # the API server's own request limit
JSON = "application/json"
BODY_TYPES = ("application/json", "application/yaml", "application/x-yaml", "text/yaml")


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=json.dumps(data).encode(), status=status, content_type=JSON, headers=headers)


def error_response(exc: ApiError) -> web.Response:
    return web.Response(body=exc.body(), status=exc.code, content_type=JSON, headers=exc.headers or None)


# What a site's API answers under the `garbage` fault: 200, and no Kubernetes object.
GARBAGE: tuple[tuple[str, bytes], ...] = (
    ("text/html", b"<html><body><h1>Welcome!</h1>Please log in to continue.</body></html>"),
    ("application/json", b'{"kind": "DeploymentList", "apiVersion": "apps/v1", "items": [{"metadata": {"na'),
    ("application/json", b"{}"),
    ("application/octet-stream", bytes(range(256))),
)


def garbage_response(which: int) -> web.Response:
    content_type, body = GARBAGE[which]
    return web.Response(status=200, body=body, content_type=content_type)


def drop_connection(request: web.Request) -> web.Response:
    """Close the connection without an answer (an unreachable site)."""
    if request.transport is not None:
        request.transport.abort()
    return web.Response(status=499)  # never sent: the transport is gone


def build_app(fleet: Fleet) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[FLEET_KEY] = fleet
    app.router.add_route("*", "/sites/{code}/{tail:.*}", handle_site)
    app.router.add_route("*", "/sites/{code}", handle_site)
    app.router.add_route("*", "/gitlab/{tail:.*}", fleet.githost.handle)
    add_control_routes(app, fleet)
    app.router.add_route("*", "/{tail:.*}", handle_unknown)
    return app


async def handle_unknown(request: web.Request) -> web.Response:
    return error_response(ApiError(404, f"no such path: {request.path}; site APIs are under /sites/<code>/"))


async def handle_site(request: web.Request) -> web.StreamResponse:
    fleet: Fleet = request.app[FLEET_KEY]
    site = fleet.sites.get(request.match_info["code"])
    if site is None:
        return error_response(ApiError(404, f"no site {request.match_info['code']!r} in this fleet"))
    if request.headers.get("Authorization") != f"Bearer {site.token}":
        return error_response(ApiError(401, "Unauthorized"))
    if fleet.faults:
        faulted = await _api_faults(request, site)
        if faulted is not None:
            return faulted
    try:
        return await _dispatch(request, site)
    except ApiError as exc:
        return error_response(exc)
    except web.HTTPRequestEntityTooLarge:
        return error_response(ApiError(413, f"the request body is larger than the limit of {MAX_BODY_BYTES} bytes"))
    except (ConnectionResetError, asyncio.CancelledError):
        raise
    except Exception as exc:
        log.exception("error serving %s %s", request.method, request.path)
        return error_response(ApiError(500, f"internal error: {type(exc).__name__}: {exc}"))


async def _api_faults(request: web.Request, site: Site) -> web.StreamResponse | None:
    faults = site.faults
    if faults.offline(site.code):
        return drop_connection(request)
    if fault := faults.roll(site.code, "timeout"):
        await asyncio.sleep(min(fault.seconds if fault.seconds is not None else 60.0, 300.0))
        return drop_connection(request)
    if fault := faults.roll(site.code, "throttle"):
        retry = fault.seconds if fault.seconds is not None else 1.0
        return error_response(
            ApiError(
                429,
                "Too many requests, please try again later.",
                headers={"Retry-After": str(math.ceil(retry))},
                details={"retryAfterSeconds": math.ceil(retry)},
            )
        )
    if faults.roll(site.code, "api_error"):
        code = faults.random.choice((500, 503))
        return error_response(ApiError(code, "simulated server error (fault injection)"))
    if faults.roll(site.code, "garbage"):
        return garbage_response(faults.random.randrange(len(GARBAGE)))
    if fault := faults.roll(site.code, "slow"):
        await asyncio.sleep(fault.seconds if fault.seconds is not None else 0.5)
    return None


def _params(request: web.Request) -> dict[str, str]:
    return dict(request.query)


def _dry_run(values: list[str]) -> bool:
    for value in values:
        if value != "All":
            raise errors.bad_request(f'Invalid dryRun value {value!r}: only "All" is supported')
    return bool(values)


async def _dispatch(request: web.Request, site: Site) -> web.StreamResponse:
    segments = [s for s in request.match_info.get("tail", "").split("/") if s]
    prefix = f"/sites/{site.code}"
    if not segments:
        return json_response({"paths": ["/api", "/api/v1", "/apis", "/openapi/v2", "/openapi/v3", "/version"]})
    head = segments[0]
    if head == "version":
        return json_response(discovery.VERSION_INFO)
    if head in ("healthz", "livez", "readyz"):
        return web.Response(text="ok")
    if head == "openapi":
        return _openapi(request, segments[1:], prefix)
    if head == "api":
        if len(segments) == 1:
            return json_response(discovery.api_versions(request.host))
        group, version, rest = "", segments[1], segments[2:]
    elif head == "apis":
        if len(segments) == 1:
            return json_response(discovery.api_group_list())
        if len(segments) == 2:
            found = discovery.api_group(segments[1])
            if found is None:
                raise ApiError(404, "the server could not find the requested resource")
            return json_response(found)
        group, version, rest = segments[1], segments[2], segments[3:]
    else:
        raise ApiError(404, "the server could not find the requested resource")
    if not rest:
        listing = discovery.api_resource_list(group, version)
        if listing is None:
            raise ApiError(404, "the server could not find the requested resource")
        return json_response(listing)
    return await _resource(request, site, group, version, rest)


def _openapi(request: web.Request, rest: list[str], prefix: str) -> web.Response:
    if rest == ["v2"]:
        accept = request.headers.get("Accept", "")
        if accept and "json" not in accept and "*/*" not in accept:
            raise ApiError(406, "only application/json is served for /openapi/v2")
        return json_response(openapi.v2_document())
    if rest == ["v3"]:
        return json_response(openapi.v3_root(prefix))
    if len(rest) >= 3 and rest[0] == "v3":
        parts = rest[1:]
        if parts[0] == "api" and len(parts) == 2:
            doc = openapi.v3_document("", parts[1])
        elif parts[0] == "apis" and len(parts) == 3:
            doc = openapi.v3_document(parts[1], parts[2])
        else:
            doc = None
        if doc is not None:
            return json_response(doc)
    raise ApiError(404, "the server could not find the requested resource")


async def _resource(request: web.Request, site: Site, group: str, version: str, rest: list[str]) -> web.StreamResponse:
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
                return await _watch(request, site, rt, namespace, labels, fields)
            return _list(request, site, rt, namespace, labels, fields)
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
        if _wants_table(request):
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
    body = parse_body(data, yaml_allowed=False)
    try:
        if kind == "json":
            return json_patch(target, body)
        if not isinstance(body, dict):
            raise errors.bad_request("a merge patch must be a JSON object")
        return merge_patch(target, body) if kind == "merge" else strategic_merge(target, body)
    except PatchError as exc:
        raise ApiError(exc.code, f"the patch could not be applied: {exc}") from exc


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


def _wants_table(request: web.Request) -> bool:
    return "as=Table" in request.headers.get("Accept", "")


def _list(
    request: web.Request,
    site: Site,
    rt: ResourceType,
    namespace: str | None,
    labels: tuple[Any, ...],
    fields: tuple[tuple[str, str, str], ...],
) -> web.Response:
    items = site.api.select(rt, namespace, labels, fields)
    rv = site.store.rv
    start, limit = 0, 0
    token = request.query.get("continue")
    if token:
        try:
            start = int(json.loads(base64.urlsafe_b64decode(token.encode()))["start"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ApiError(400, "the continue token is not valid") from exc
    if request.query.get("limit"):
        try:
            limit = int(request.query["limit"])
        except ValueError as exc:
            raise errors.bad_request("limit must be an integer") from exc
    next_token = ""
    if limit > 0 and start + limit < len(items):
        next_token = base64.urlsafe_b64encode(json.dumps({"start": start + limit}).encode()).decode()
        items = items[start : start + limit]
    else:
        items = items[start:]
    if _wants_table(request):
        result = tables.table(rt, [s.load() for s in items], rv)
        if next_token:
            result["metadata"]["continue"] = next_token
        return json_response(result)
    meta = f'"resourceVersion":"{rv}"' + (f',"continue":"{next_token}"' if next_token else "")
    head = f'{{"kind":"{rt.list_kind}","apiVersion":"{rt.api_version}","metadata":{{{meta}}},"items":['.encode()
    return web.Response(body=head + b",".join(s.raw for s in items) + b"]}", content_type=JSON)


def _event(kind: str, raw: bytes) -> bytes:
    return b'{"type":"' + kind.encode() + b'","object":' + raw + b"}\n"


async def _watch(
    request: web.Request,
    site: Site,
    rt: ResourceType,
    namespace: str | None,
    labels: tuple[Any, ...],
    fields: tuple[tuple[str, str, str], ...],
) -> web.StreamResponse:
    query = request.query
    try:
        timeout = float(query.get("timeoutSeconds") or 1800)
    except ValueError as exc:
        raise errors.bad_request("timeoutSeconds must be a number") from exc
    timeout = max(0.0, min(timeout, 3600.0))
    bookmarks = query.get("allowWatchBookmarks") in ("true", "1")

    def matches(stored: Stored) -> bool:
        return labels_match(labels, stored.labels) and fields_match(fields, stored.fields)

    watcher = Watcher(rt.plural, namespace if rt.namespaced else None, matches)
    rv_text = query.get("resourceVersion") or ""
    initial: list[bytes] = []
    if rv_text in ("", "0"):
        initial = [_event(ADDED, s.raw) for s in site.api.select(rt, namespace, labels, fields)]
    else:
        try:
            since = int(rv_text)
        except ValueError as exc:
            raise errors.bad_request(f"invalid resourceVersion {rv_text!r}") from exc
        events = site.store.events_since(since)
        if events is None:
            gone = errors.status_body(
                410, f"too old resource version: {since} ({site.store.history_floor})", reason="Expired"
            )
            initial = [_event("ERROR", json.dumps(gone).encode())]
        else:
            for event in events:
                watcher.offer(event)
    response = web.StreamResponse(status=200, headers={"Content-Type": JSON, "Cache-Control": "no-cache, private"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    site.store.watchers.append(watcher)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    bookmark_every = site.fleet.config.bookmark_seconds
    try:
        for line in initial:
            await response.write(line)
        if initial and initial[0].startswith(b'{"type":"ERROR"'):
            return response
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            wait = min(remaining, bookmark_every) if bookmarks else remaining
            try:
                item = await asyncio.wait_for(watcher.queue.get(), wait)
            except TimeoutError:
                if bookmarks and deadline - loop.time() > 0:
                    mark = {
                        "kind": rt.kind,
                        "apiVersion": rt.api_version,
                        "metadata": {"resourceVersion": str(site.store.rv)},
                    }
                    await response.write(_event("BOOKMARK", json.dumps(mark).encode()))
                continue
            if item is None:  # the site went offline: drop the stream as a dead network would
                if request.transport is not None:
                    request.transport.abort()
                return response
            kind, stored = item
            await response.write(_event(kind, stored.raw))
    except (ConnectionResetError, ConnectionError):
        pass
    finally:
        if watcher in site.store.watchers:
            site.store.watchers.remove(watcher)
    await response.write_eof()
    return response
