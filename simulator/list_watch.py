"""Reading collections over HTTP: a list (paged with `limit`/`continue`, or as a kubectl Table) and a
watch stream (from now or from a resourceVersion, with bookmarks, ended by its timeout or the site
going offline)."""

import asyncio
import base64
import json
from typing import Any

from aiohttp import web

from simulator import errors, tables
from simulator.errors import ApiError
from simulator.resources import ResourceType
from simulator.responses import JSON, json_response
from simulator.selectors import fields_match, labels_match
from simulator.site import Site
from simulator.store import ADDED, Stored, Watcher


def wants_table(request: web.Request) -> bool:
    return "as=Table" in request.headers.get("Accept", "")


def list_response(
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
    if wants_table(request):
        result = tables.table(rt, [s.load() for s in items], rv)
        if next_token:
            result["metadata"]["continue"] = next_token
        return json_response(result)
    meta = f'"resourceVersion":"{rv}"' + (f',"continue":"{next_token}"' if next_token else "")
    head = f'{{"kind":"{rt.list_kind}","apiVersion":"{rt.api_version}","metadata":{{{meta}}},"items":['.encode()
    return web.Response(body=head + b",".join(s.raw for s in items) + b"]}", content_type=JSON)


def _event(kind: str, raw: bytes) -> bytes:
    return b'{"type":"' + kind.encode() + b'","object":' + raw + b"}\n"


async def watch_response(
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
