"""The control API under /_sim/ (tests, demos and rehearsals), authenticated with the admin token from
`DIR/admin-token` (`Authorization: Bearer <token>`), except /_sim/healthz.

- `GET /_sim/healthz`                      -> {"status": "ok", "sites": N}
- `POST /_sim/faults` {site, kind, rate, node, seconds} -> 201 {"id", ...}; `GET /_sim/faults`;
  `DELETE /_sim/faults/{id}`; `DELETE /_sim/faults`
- `POST /_sim/devices` {site, serial, mac, role, hostname?, bootstrap_token} -> 201 (unboxes a device)
- `POST /_sim/backups` {site, application, namespace, location, size, restore_image, taken_at?} -> 201
- `GET /_sim/sites` (codes), `GET /_sim/sites/{code}` (summary), `GET /_sim/sites/{code}/jobs` (jobs run)
"""

import json
import secrets
from typing import Any

from aiohttp import web

from simulator.errors import ApiError
from simulator.faults import FaultError
from simulator.fleet import FLEET_KEY, Fleet
from simulator.githost.host import add_control_routes as add_githost_routes
from simulator.store import now_iso

MAX_CONTROL_BODY = 64 * 1024


def _fleet(request: web.Request) -> Fleet:
    return request.app[FLEET_KEY]


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message, "detail": message}, status=status)


@web.middleware
async def _guard(request: web.Request, handler: Any) -> web.StreamResponse:
    """Admin auth and readable JSON errors for the control API (the site APIs answer Status bodies)."""
    if request.path != "/_sim/healthz":
        token = _fleet(request).admin_token
        given = request.headers.get("Authorization", "")
        if not secrets.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return _error(401, "the control API needs Authorization: Bearer <DIR/admin-token>")
    try:
        return await handler(request)
    except FaultError as exc:
        return _error(400, str(exc))
    except ApiError as exc:
        return _error(exc.code, exc.message)


async def _body(request: web.Request) -> dict[str, Any]:
    data = await request.content.read(MAX_CONTROL_BODY + 1)
    if len(data) > MAX_CONTROL_BODY:
        raise ApiError(413, "request body too large")
    try:
        body = json.loads(data or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    return body


def _site(request: web.Request, code: Any) -> Any:
    site = _fleet(request).sites.get(code) if isinstance(code, str) else None
    if site is None:
        raise ApiError(400 if request.method == "POST" else 404, f"unknown site {code!r}")
    return site


async def healthz(request: web.Request) -> web.Response:
    fleet = _fleet(request)
    return _json({"status": "ok", "sites": len(fleet.sites), "startup_seconds": round(fleet.startup_seconds, 3)})


async def add_fault(request: web.Request) -> web.Response:
    body = await _body(request)
    unknown = set(body) - {"site", "kind", "rate", "node", "seconds"}
    if unknown:
        raise FaultError(f"unknown field(s): {', '.join(sorted(unknown))}")
    fault = _fleet(request).add_fault(body)
    return _json(fault.to_json(), status=201)


async def list_faults(request: web.Request) -> web.Response:
    return _json({"faults": [f.to_json() for f in _fleet(request).faults.all()]})


async def delete_fault(request: web.Request) -> web.Response:
    gone = _fleet(request).remove_faults(request.match_info["fault_id"])
    if not gone:
        return _error(404, f"no fault {request.match_info['fault_id']!r}")
    return _json({"deleted": [f.id for f in gone]})


async def clear_faults(request: web.Request) -> web.Response:
    gone = _fleet(request).remove_faults(None)
    return _json({"deleted": [f.id for f in gone]})


def _required_str(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ApiError(400, f"{key!r} is required (a non-empty string)")
    return value.strip()


async def unbox_device(request: web.Request) -> web.Response:
    body = await _body(request)
    site = _site(request, body.get("site"))
    serial, mac = _required_str(body, "serial"), _required_str(body, "mac")
    role = body.get("role", "agent")
    if role not in ("server", "agent"):
        raise ApiError(400, "role must be 'server' or 'agent'")
    hostname = body.get("hostname")
    if hostname is not None and (not isinstance(hostname, str) or not hostname):
        raise ApiError(400, "hostname must be a non-empty string when given")
    token = body.get("bootstrap_token")
    if token is not None and not isinstance(token, str):
        raise ApiError(400, "bootstrap_token must be a string")
    device = site.devices.unbox(serial=serial, mac=mac, role=role, hostname=hostname, bootstrap_token=token)
    return _json(device.summary(), status=201)


async def record_backup(request: web.Request) -> web.Response:
    body = await _body(request)
    site = _site(request, body.get("site"))
    backup: dict[str, Any] = {
        key: _required_str(body, key) for key in ("application", "namespace", "location", "restore_image")
    }
    size = body.get("size")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ApiError(400, "'size' is required (bytes, a non-negative integer)")
    backup["size"] = size
    taken_at = body.get("taken_at") or now_iso()
    if not isinstance(taken_at, str):
        raise ApiError(400, "taken_at must be an RFC 3339 string")
    backup["taken_at"] = taken_at
    site.record_backup(backup)
    return _json(backup, status=201)


async def list_sites(request: web.Request) -> web.Response:
    return _json({"sites": list(_fleet(request).sites)})


async def site_summary(request: web.Request) -> web.Response:
    return _json(_site(request, request.match_info["code"]).summary())


async def site_jobs(request: web.Request) -> web.Response:
    return _json({"jobs": _site(request, request.match_info["code"]).jobs_log})


def add_control_routes(app: web.Application, fleet: Fleet) -> None:
    """Mount the control API on `app` as a sub-application, so its auth never touches site requests."""
    control = web.Application(middlewares=[_guard], client_max_size=MAX_CONTROL_BODY)
    control[FLEET_KEY] = fleet
    control.router.add_get("/healthz", healthz)
    control.router.add_post("/faults", add_fault)
    control.router.add_get("/faults", list_faults)
    control.router.add_delete("/faults", clear_faults)
    control.router.add_delete("/faults/{fault_id}", delete_fault)
    control.router.add_post("/devices", unbox_device)
    control.router.add_post("/backups", record_backup)
    control.router.add_get("/sites", list_sites)
    control.router.add_get("/sites/{code}", site_summary)
    control.router.add_get("/sites/{code}/jobs", site_jobs)
    add_githost_routes(control, fleet.githost)
    app.add_subapp("/_sim", control)
