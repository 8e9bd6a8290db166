"""One site's object store: objects kept as compact JSON bytes, a resourceVersion counter, watch fan-out.

Objects are stored serialised (plus the few fields selectors need) rather than as dicts: a 3000-site
fleet holds ~100k objects, and bytes are several times smaller than nested dicts, and a GET can answer
with them as they are. Writers hand in dicts; readers who need a dict call `Stored.load()`.
"""

import asyncio
import json
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

ADDED, MODIFIED, DELETED = "ADDED", "MODIFIED", "DELETED"


_stamp: tuple[int, str] = (0, "")


def now_iso() -> str:
    """RFC 3339 with second precision and a Z, as Kubernetes writes timestamps (formatted once a second:
    start-up writes tens of thousands of them)."""
    global _stamp
    second = int(time.time())
    if _stamp[0] != second:
        _stamp = (second, datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    return _stamp[1]


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


@dataclass(slots=True)
class Stored:
    """One stored object version: its JSON, resourceVersion and the fields selectors look at."""

    raw: bytes
    rv: int
    namespace: str
    name: str
    labels: dict[str, str]
    fields: dict[str, str]

    def load(self) -> dict[str, Any]:
        obj: dict[str, Any] = json.loads(self.raw)
        return obj


def encode(obj: dict[str, Any]) -> Stored:
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    status = obj.get("status") if isinstance(obj.get("status"), dict) else {}
    namespace, name = meta.get("namespace") or "", meta.get("name") or ""
    fields = {"metadata.name": name, "metadata.namespace": namespace}
    if spec and "nodeName" in spec:
        fields["spec.nodeName"] = str(spec["nodeName"])
    if status and "phase" in status:
        fields["status.phase"] = str(status["phase"])
    labels = meta.get("labels") or {}
    return Stored(dumps(obj), int(meta.get("resourceVersion") or 0), namespace, name, dict(labels), fields)


@dataclass(slots=True)
class Event:
    rv: int
    resource: str
    type: str
    old: Stored | None
    new: Stored


@dataclass(eq=False)
class Watcher:
    """A watch stream's subscription: events for one resource (and namespace) land in `queue`."""

    resource: str
    namespace: str | None
    matches: Callable[[Stored], bool]
    queue: asyncio.Queue[tuple[str, Stored] | None] = field(default_factory=asyncio.Queue)

    def offer(self, event: Event) -> None:
        if event.resource != self.resource:
            return
        if self.namespace is not None and event.new.namespace != self.namespace:
            return
        was = event.old is not None and self.matches(event.old)
        now = self.matches(event.new)
        # An object leaving the selection is a DELETED for this watcher; entering it an ADDED.
        if event.type == DELETED:
            if was or now:
                self.queue.put_nowait((DELETED, event.new))
        elif now:
            self.queue.put_nowait((MODIFIED if was else ADDED, event.new))
        elif was:
            self.queue.put_nowait((DELETED, event.new))


class Store:
    """Objects of one site by resource plural, then (namespace, name)."""

    def __init__(self, history: int = 40):
        self.rv = 0
        self.objects: dict[str, dict[tuple[str, str], Stored]] = {}
        self.watchers: list[Watcher] = []
        self.listeners: list[Callable[[str, str, Stored], None]] = []
        # Recent events, so a watch can resume from a resourceVersion a list returned a moment ago.
        self.history: deque[Event] = deque(maxlen=history)
        self.history_floor = 0

    def get(self, resource: str, namespace: str, name: str) -> Stored | None:
        bucket = self.objects.get(resource)
        return bucket.get((namespace, name)) if bucket else None

    def load(self, resource: str, namespace: str, name: str) -> dict[str, Any] | None:
        found = self.get(resource, namespace, name)
        return found.load() if found else None

    def scan(self, resource: str, namespace: str | None = None) -> list[Stored]:
        bucket = self.objects.get(resource)
        if not bucket:
            return []
        keys = sorted(bucket)
        if namespace is not None:
            keys = [k for k in keys if k[0] == namespace]
        return [bucket[k] for k in keys]

    def load_all(self, resource: str, namespace: str | None = None) -> list[dict[str, Any]]:
        return [s.load() for s in self.scan(resource, namespace)]

    def count(self) -> int:
        return sum(len(bucket) for bucket in self.objects.values())

    def next_rv(self) -> int:
        self.rv += 1
        return self.rv

    def put(self, resource: str, obj: dict[str, Any]) -> Stored:
        """Store a new version (create or replace): assigns the resourceVersion, notifies watchers."""
        meta = obj.setdefault("metadata", {})
        if not meta.get("uid"):
            meta["uid"] = str(uuid.uuid4())
        if "creationTimestamp" not in meta:
            meta["creationTimestamp"] = now_iso()
        meta["resourceVersion"] = str(self.next_rv())
        stored = encode(obj)
        bucket = self.objects.setdefault(resource, {})
        key = (stored.namespace, stored.name)
        old = bucket.get(key)
        bucket[key] = stored
        self._emit(Event(stored.rv, resource, MODIFIED if old else ADDED, old, stored))
        return stored

    def remove(self, resource: str, namespace: str, name: str) -> dict[str, Any] | None:
        bucket = self.objects.get(resource)
        old = bucket.pop((namespace, name), None) if bucket else None
        if old is None:
            return None
        obj = old.load()
        obj["metadata"]["resourceVersion"] = str(self.next_rv())
        gone = encode(obj)
        self._emit(Event(gone.rv, resource, DELETED, old, gone))
        return obj

    def events_since(self, rv: int) -> Iterable[Event] | None:
        """Events after `rv`, or None when they have been forgotten (the client must list again)."""
        if rv < self.history_floor:
            return None
        return [e for e in self.history if e.rv > rv]

    def _emit(self, event: Event) -> None:
        if len(self.history) == self.history.maxlen:
            self.history_floor = self.history[0].rv
        self.history.append(event)
        for watcher in self.watchers:
            watcher.offer(event)
        for listener in self.listeners:
            listener(event.resource, event.type, event.new)

    def forget_history(self) -> None:
        """Drop replay history (after start-up, so the bootstrap versions do not stay in memory)."""
        if self.history:
            self.history_floor = self.rv
            self.history.clear()
