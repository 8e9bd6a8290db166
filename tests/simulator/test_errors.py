"""Bad input gets the matching Kubernetes Status error, quickly, and never breaks the server."""

import json
from typing import Any

import pytest

from simulator.testing import Simulator
from tests.simulator.conftest import Raw

pytestmark = pytest.mark.integration

CM = "/api/v1/namespaces/default/configmaps"


def _status(response: object, code: int) -> dict[str, Any]:
    body = response.body  # type: ignore[attr-defined]
    assert response.status == code, body  # type: ignore[attr-defined]
    assert isinstance(body, dict) and body["kind"] == "Status" and body["code"] == code, body
    assert body["status"] == "Failure" and body["message"]
    return body


def test_authentication(raw: Raw, sim: Simulator, site_code: str) -> None:
    assert _status(raw("GET", "/api/v1/nodes", token=""), 401)["reason"] == "Unauthorized"
    _status(raw("GET", "/api/v1/nodes", token="not-the-token"), 401)
    # Another site's token does not open this site.
    other = next(c for c in sim.codes if c != site_code)
    _status(raw("GET", "/api/v1/nodes", token=sim.site(other)["token"]), 401)
    assert raw("GET", "/api/v1/nodes").status == 200


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/frobnicators",
        "/apis/apps/v1/widgets",
        "/apis/nope.example.com/v1",
        "/apis/apps/v9/deployments",
        "/api/v1/namespaces/default/nodes/x",
        "/api/v1/nodes/n/eviction",
        "/nonsense",
    ],
)
def test_unknown_resources_are_404(raw: Raw, path: str) -> None:
    _status(raw("GET", path), 404)


def test_malformed_bodies(raw: Raw) -> None:
    assert _status(raw("POST", CM, b'{"metadata": {"name": '), 400)["reason"] == "BadRequest"
    _status(raw("POST", CM, b"[1, 2]"), 400)
    _status(raw("POST", CM, b""), 400)
    _status(raw("POST", CM, b"metadata: [unclosed", content_type="application/yaml"), 400)
    made = raw("POST", CM, b"metadata:\n  name: from-yaml\ndata:\n  a: b\n", content_type="application/yaml")
    assert made.status == 201 and made.body["data"] == {"a": "b"}
    _status(raw("POST", CM, json.dumps({"kind": "Secret", "metadata": {"name": "x"}}).encode()), 400)


def test_wrong_content_types_are_415(raw: Raw) -> None:
    assert _status(raw("POST", CM, b"name=x", content_type="text/plain"), 415)["reason"] == "UnsupportedMediaType"
    _status(raw("PATCH", f"{CM}/kube-root-ca.crt", b'{"data": {}}', content_type="application/json"), 415)
    _status(raw("PATCH", f"{CM}/kube-root-ca.crt", b'{"data": {}}', content_type="text/plain"), 415)


def test_patch_errors(raw: Raw) -> None:
    raw("POST", CM, json.dumps({"metadata": {"name": "patch-me"}}).encode())
    apply = "application/apply-patch+yaml"
    doc = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: patch-me\n"
    _status(raw("PATCH", f"{CM}/patch-me", doc, content_type=apply), 400)  # no fieldManager
    _status(raw("PATCH", f"{CM}/patch-me?fieldManager=t", b"kind: [", content_type=apply), 400)
    _status(
        raw(
            "PATCH",
            f"{CM}/patch-me?fieldManager=t",
            b"metadata: {name: other}\nkind: ConfigMap\napiVersion: v1\n",
            content_type=apply,
        ),
        400,
    )
    _status(raw("PATCH", f"{CM}/patch-me", b'{"op": "add"}', content_type="application/json-patch+json"), 400)
    _status(raw("PATCH", f"{CM}/patch-me", b"{not json", content_type="application/merge-patch+json"), 400)
    _status(
        raw(
            "PATCH",
            f"{CM}/patch-me",
            b'{"metadata": {"resourceVersion": "1"}}',
            content_type="application/merge-patch+json",
        ),
        409,
    )
    _status(raw("PATCH", f"{CM}/missing", b"{}", content_type="application/merge-patch+json"), 404)
    created = raw(
        "PATCH", f"{CM}/applied-new?fieldManager=t", doc.replace(b"patch-me", b"applied-new"), content_type=apply
    )
    assert created.status == 201


def test_bad_selectors_and_parameters_are_400(raw: Raw) -> None:
    _status(raw("GET", "/api/v1/pods?labelSelector=app%20in%20(a"), 400)
    _status(raw("GET", "/api/v1/pods?labelSelector=%3Dx"), 400)
    _status(raw("GET", "/api/v1/pods?fieldSelector=spec.replicas%3D1"), 400)
    _status(raw("GET", "/api/v1/configmaps?fieldSelector=spec.nodeName%3Dx"), 400)
    _status(raw("GET", "/api/v1/pods?limit=many"), 400)
    _status(raw("GET", "/api/v1/pods?continue=garbage"), 400)
    _status(raw("POST", f"{CM}?dryRun=Maybe", json.dumps({"metadata": {"name": "d"}}).encode()), 400)
    _status(raw("GET", "/api/v1/pods?watch=1&timeoutSeconds=soon"), 400)


def test_invalid_objects_are_422(raw: Raw) -> None:
    no_selector = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "broken"},
        "spec": {
            "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}
        },
    }
    body = _status(raw("POST", "/apis/apps/v1/namespaces/default/deployments", json.dumps(no_selector).encode()), 422)
    assert body["reason"] == "Invalid" and body["details"]["causes"][0]["field"] == "spec.selector"
    bad_name = {"metadata": {"name": "Not_Valid"}}
    _status(raw("POST", CM, json.dumps(bad_name).encode()), 422)
    _status(
        raw("POST", "/api/v1/namespaces/no-such-ns/configmaps", json.dumps({"metadata": {"name": "x"}}).encode()), 404
    )


def test_oversized_bodies_are_413(raw: Raw) -> None:
    huge = json.dumps({"metadata": {"name": "huge"}, "data": {"blob": "x" * (4 * 1024 * 1024)}}).encode()
    assert _status(raw("POST", CM, huge), 413)["reason"] == "RequestEntityTooLarge"


def test_methods_not_allowed(raw: Raw) -> None:
    _status(raw("POST", f"{CM}/kube-root-ca.crt", b"{}"), 405)
    _status(raw("GET", "/api/v1/namespaces/default/pods/x/eviction"), 405)


def test_the_server_is_fine_afterwards(raw: Raw, sim: Simulator) -> None:
    assert raw("GET", "/api/v1/namespaces/default/configmaps").status == 200
    assert sim.request("GET", "/_sim/healthz", auth=False)[0] == 200
