"""The HTTP face of the fleet: the Kubernetes API of every site under /sites/<code>/, with per-site
bearer tokens and fault injection, plus the control API (see `simulator.control`).

Request flow: find the site -> check its token (401) -> roll the site's API faults -> route the path
(discovery, OpenAPI, or a resource: `simulator.resource_endpoints`, lists and watches in
`simulator.list_watch`) -> call `ApiServer` -> answer JSON (or a Table for kubectl). Every refusal is
a Kubernetes `Status`; an unexpected exception is a 500 Status too, never a hung connection.
"""

import asyncio
import logging
import math

from aiohttp import web

from simulator import discovery, openapi
from simulator.control import add_control_routes
from simulator.errors import ApiError
from simulator.fleet import FLEET_KEY, Fleet
from simulator.resource_endpoints import resource
from simulator.responses import GARBAGE, drop_connection, error_response, garbage_response, json_response
from simulator.site import Site

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 3 * 1024 * 1024  # the API server's own request limit


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
    site.record_api_call(request.method, request.path.removeprefix(f"/sites/{site.code}"))
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


async def _dispatch(request: web.Request, site: Site) -> web.StreamResponse:
    segments = [s for s in request.match_info.get("tail", "").split("/") if s]
    prefix = f"/sites/{site.code}"
    if not segments:
        return json_response({"paths": ["/api", "/api/v1", "/apis", "/openapi/v2", "/openapi/v3", "/version"]})
    head = segments[0]
    if head == "version":
        return json_response(discovery.version_info(site.k3s_version()))
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
    return await resource(request, site, group, version, rest)


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
