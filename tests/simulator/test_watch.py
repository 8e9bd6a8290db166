"""Watch streams: ordered events with resourceVersions, resuming, selectors, timeouts and bookmarks."""

import json
import threading
import time
from typing import Any

import pytest
from kubernetes import client, watch

from tests.simulator.conftest import Raw
from tests.support import wait_until

pytestmark = pytest.mark.integration


def _collect(api: Any, stop_after: int, **kwargs: Any) -> tuple[list[dict[str, Any]], threading.Thread]:
    events: list[dict[str, Any]] = []

    def run() -> None:
        w = watch.Watch()
        for event in w.stream(client.CoreV1Api(api).list_namespaced_config_map, "default", **kwargs):
            events.append(event)
            if len(events) >= stop_after:
                w.stop()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return events, thread


def test_watch_sees_changes_in_order(api: Any) -> None:
    core = client.CoreV1Api(api)
    start = core.list_namespaced_config_map("default").metadata.resource_version
    events, thread = _collect(api, 3, resource_version=start, timeout_seconds=10, label_selector="watched=yes")
    core.create_namespaced_config_map("default", {"metadata": {"name": "w1", "labels": {"watched": "yes"}}})
    core.patch_namespaced_config_map("w1", "default", {"data": {"a": "1"}})
    core.create_namespaced_config_map("default", {"metadata": {"name": "not-watched"}})
    core.delete_namespaced_config_map("w1", "default")
    thread.join(timeout=15)
    assert [e["type"] for e in events] == ["ADDED", "MODIFIED", "DELETED"]
    assert all(e["object"].metadata.name == "w1" for e in events)
    versions = [int(e["object"].metadata.resource_version) for e in events]
    assert versions == sorted(versions) and versions[0] > int(start)


def test_watch_resumes_from_a_list_version(api: Any) -> None:
    core = client.CoreV1Api(api)
    listed = core.list_namespaced_config_map("default")
    core.create_namespaced_config_map("default", {"metadata": {"name": "after-list", "labels": {"r": "1"}}})
    events, thread = _collect(
        api, 1, resource_version=listed.metadata.resource_version, timeout_seconds=5, label_selector="r=1"
    )
    thread.join(timeout=10)
    assert [(e["type"], e["object"].metadata.name) for e in events] == [("ADDED", "after-list")]


def test_watch_without_version_starts_with_the_current_objects(api: Any) -> None:
    events, thread = _collect(api, 2, timeout_seconds=3, field_selector="metadata.name=kube-root-ca.crt")
    thread.join(timeout=10)
    assert events and events[0]["type"] == "ADDED" and events[0]["object"].metadata.name == "kube-root-ca.crt"


def test_leaving_the_selection_is_a_delete(api: Any) -> None:
    core = client.CoreV1Api(api)
    core.create_namespaced_config_map("default", {"metadata": {"name": "leaver", "labels": {"team": "a"}}})
    rv = core.read_namespaced_config_map("leaver", "default").metadata.resource_version
    events, thread = _collect(api, 2, resource_version=rv, timeout_seconds=5, label_selector="team=a")
    # The watch is live once it reports an object created after it started (no guessing how long it takes).
    core.create_namespaced_config_map("default", {"metadata": {"name": "marker", "labels": {"team": "a"}}})
    wait_until(lambda: events, 5, "the watch reporting the marker")
    core.patch_namespaced_config_map("leaver", "default", {"metadata": {"labels": {"team": "b"}}})
    thread.join(timeout=10)
    assert [(e["type"], e["object"].metadata.name) for e in events] == [("ADDED", "marker"), ("DELETED", "leaver")]


def _stream(raw: Raw, query: str) -> tuple[float, list[dict[str, Any]]]:
    started = time.monotonic()
    response = raw("GET", f"/api/v1/namespaces/default/configmaps?watch=1&{query}", timeout=20)
    assert response.status == 200
    body = response.body
    text = body if isinstance(body, str) else "" if body is None else json.dumps(body)
    return time.monotonic() - started, [json.loads(line) for line in text.splitlines() if line.strip()]


def test_timeout_and_bookmarks(raw: Raw, api: Any) -> None:
    rv = client.CoreV1Api(api).list_namespaced_config_map("default").metadata.resource_version
    elapsed, events = _stream(raw, f"resourceVersion={rv}&timeoutSeconds=1")
    assert 0.9 <= elapsed < 5 and events == []
    elapsed, events = _stream(raw, f"resourceVersion={rv}&timeoutSeconds=2&allowWatchBookmarks=true")
    bookmarks = [e for e in events if e["type"] == "BOOKMARK"]
    assert bookmarks and all(int(b["object"]["metadata"]["resourceVersion"]) >= int(rv) for b in bookmarks)
    assert bookmarks[0]["object"]["kind"] == "ConfigMap"


def test_too_old_version_is_410(raw: Raw) -> None:
    _, events = _stream(raw, "resourceVersion=1&timeoutSeconds=5")
    assert len(events) == 1 and events[0]["type"] == "ERROR"
    assert events[0]["object"]["code"] == 410 and events[0]["object"]["reason"] == "Expired"


def test_watchers_are_released(api: Any, raw: Raw) -> None:
    # Many short watches in a row leave nothing behind and the API keeps answering.
    for _ in range(5):
        _stream(raw, "timeoutSeconds=0")
    wait_until(lambda: raw("GET", "/api/v1/namespaces/default/configmaps").status == 200)
