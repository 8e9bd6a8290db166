"""The Kubernetes API surface through the official Python client: discovery, CRUD, patches, server-side
apply, subresources, selectors, garbage collection and the controllers behind Deployments and Jobs."""

from typing import Any

import pytest
from kubernetes import client, dynamic
from kubernetes.client.exceptions import ApiException

from simulator.testing import Simulator
from tests.support import wait_until

pytestmark = pytest.mark.integration


def deployment(name: str, *, replicas: int = 1, labels: dict[str, str] | None = None) -> dict[str, Any]:
    selector = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": selector},
                "spec": {"containers": [{"name": "main", "image": f"registry.example/{name}:1.0"}]},
            },
        },
    }


def test_discovery_looks_like_k3s(api: Any) -> None:
    version = client.VersionApi(api).get_code()
    assert version.git_version.endswith("+k3s1") and version.major == "1"
    core = client.CoreV1Api(api).get_api_resources()
    names = {r.name: r for r in core.resources}
    assert names["pods/eviction"].group == "policy" and names["pods/eviction"].kind == "Eviction"
    assert names["pods"].namespaced and "po" in (names["pods"].short_names or [])
    assert not names["nodes"].namespaced
    apps = client.AppsV1Api(api).get_api_resources()
    assert apps.group_version == "apps/v1"
    assert {"deployments", "deployments/status", "deployments/scale"} <= {r.name for r in apps.resources}
    groups = {g.name for g in client.ApisApi(api).get_api_versions().groups}
    assert {"apps", "batch", "policy", "coordination.k8s.io", "kustomize.toolkit.fluxcd.io"} <= groups


def test_nodes_and_pods_across_namespaces(api: Any, sim: Simulator, site_code: str) -> None:
    core = client.CoreV1Api(api)
    nodes = core.list_node()
    expected = {n["hostname"] for n in sim.site(site_code)["nodes"]}
    assert {n.metadata.name for n in nodes.items} == expected
    assert int(nodes.metadata.resource_version) > 0
    for node in nodes.items:
        ready = next(c for c in node.status.conditions if c.type == "Ready")
        assert ready.status == "True"
        assert node.status.node_info.kubelet_version == "v1.31.4+k3s1"
    node = sorted(expected)[0]
    on_node = core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={node}")
    assert on_node.items and all(p.spec.node_name == node for p in on_node.items)
    everywhere = core.list_pod_for_all_namespaces()
    assert len(everywhere.items) > len(on_node.items)
    assert {p.metadata.namespace for p in everywhere.items} >= {"kube-system", "flux-system"}
    leases = client.CoordinationV1Api(api).list_namespaced_lease("kube-node-lease")
    assert {lease.spec.holder_identity for lease in leases.items} == expected


def test_create_get_conflicts_and_metadata(api: Any, namespace: str) -> None:
    core = client.CoreV1Api(api)
    body = {"metadata": {"name": "cfg", "labels": {"a": "1"}}, "data": {"k": "v"}}
    created = core.create_namespaced_config_map(namespace, body)
    assert created.metadata.uid and created.metadata.creation_timestamp and created.metadata.resource_version
    assert created.kind == "ConfigMap" and created.api_version == "v1"
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_config_map(namespace, body)
    assert exc.value.status == 409 and '"reason":"AlreadyExists"' in exc.value.body.replace(" ", "")
    stale = created.metadata.resource_version
    core.patch_namespaced_config_map("cfg", namespace, {"data": {"k": "v2"}})
    with pytest.raises(ApiException) as exc:
        core.replace_namespaced_config_map(
            "cfg", namespace, {"metadata": {"name": "cfg", "resourceVersion": stale}, "data": {"k": "v3"}}
        )
    assert exc.value.status == 409
    current = core.read_namespaced_config_map("cfg", namespace)
    replaced = core.replace_namespaced_config_map(
        "cfg",
        namespace,
        {"metadata": {"name": "cfg", "resourceVersion": current.metadata.resource_version}, "data": {"k": "v3"}},
    )
    assert replaced.data == {"k": "v3"} and replaced.metadata.uid == created.metadata.uid
    with pytest.raises(ApiException) as exc:
        core.read_namespaced_config_map("nope", namespace)
    assert exc.value.status == 404


def test_patch_flavours(api: Any, namespace: str) -> None:
    apps = client.AppsV1Api(api)
    body = deployment("patchy")
    body["spec"]["template"]["spec"]["containers"].append({"name": "side", "image": "side:1"})
    body["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "A", "value": "1"}]
    apps.create_namespaced_deployment(namespace, body)
    # The client sends a dict as a strategic merge patch: containers merge by name.
    strategic = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"name": "main", "image": "registry.example/patchy:2.0", "env": [{"name": "B", "value": "2"}]}
                    ]
                }
            }
        }
    }
    patched = apps.patch_namespaced_deployment("patchy", namespace, strategic)
    containers = {c.name: c for c in patched.spec.template.spec.containers}
    assert set(containers) == {"main", "side"}
    assert containers["main"].image.endswith(":2.0")
    assert [e.name for e in containers["main"].env] == ["A", "B"]
    assert patched.metadata.generation == 2
    merge = apps.patch_namespaced_deployment(
        "patchy", namespace, {"metadata": {"labels": {"x": "y"}}}, _content_type="application/merge-patch+json"
    )
    assert merge.metadata.labels == {"x": "y"} and merge.metadata.generation == 2  # metadata is not spec
    json_patched = apps.patch_namespaced_deployment(
        "patchy",
        namespace,
        [{"op": "replace", "path": "/spec/replicas", "value": 3}],
        _content_type="application/json-patch+json",
    )
    assert json_patched.spec.replicas == 3
    with pytest.raises(ApiException) as exc:
        apps.patch_namespaced_deployment(
            "patchy",
            namespace,
            [{"op": "test", "path": "/spec/replicas", "value": 9}],
            _content_type="application/json-patch+json",
        )
    assert exc.value.status == 422


def test_server_side_apply_with_dynamic_client(api: Any, namespace: str) -> None:
    dyn = dynamic.DynamicClient(api)
    cms = dyn.resources.get(api_version="v1", kind="ConfigMap")
    manifest = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "applied", "namespace": namespace},
        "data": {"a": "1"},
    }
    first = cms.server_side_apply(body=manifest, namespace=namespace, field_manager="tests")
    assert first.data.a == "1"
    manifest["data"] = {"a": "2", "b": "3"}
    second = cms.server_side_apply(body=manifest, namespace=namespace, field_manager="tests")
    assert dict(second.data) == {"a": "2", "b": "3"}
    assert second.metadata.uid == first.metadata.uid
    assert cms.get(name="applied", namespace=namespace).data.b == "3"
    # Another writer's field stays; a field this manager stops applying goes.
    client.CoreV1Api(api).patch_namespaced_config_map("applied", namespace, {"data": {"c": "other"}})
    manifest["data"] = {"a": "2"}
    third = cms.server_side_apply(body=manifest, namespace=namespace, field_manager="tests")
    assert dict(third.data) == {"a": "2", "c": "other"}

    deploys = dyn.resources.get(api_version="apps/v1", kind="Deployment")
    body = deployment("ssa")
    body["metadata"]["namespace"] = namespace
    body["spec"]["template"]["spec"]["containers"][0]["env"] = [
        {"name": "A", "value": "1"},
        {"name": "B", "value": "2"},
    ]
    deploys.server_side_apply(body=body, namespace=namespace, field_manager="tests")
    body["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "A", "value": "1"}]
    applied = deploys.server_side_apply(body=body, namespace=namespace, field_manager="tests")
    assert [e.name for e in applied.spec.template.spec.containers[0].env] == ["A"]


def test_status_subresource_is_isolated(api: Any, namespace: str) -> None:
    apps = client.AppsV1Api(api)
    apps.create_namespaced_deployment(namespace, deployment("iso"))
    wait_until(lambda: (apps.read_namespaced_deployment("iso", namespace).status.available_replicas or 0) == 1)
    # A status change through the main resource is ignored ...
    patched = apps.patch_namespaced_deployment("iso", namespace, {"status": {"replicas": 42}})
    assert patched.status.replicas == 1
    # ... and a spec change through /status is ignored too.
    via_status = apps.patch_namespaced_deployment_status(
        "iso", namespace, {"spec": {"replicas": 5}, "status": {"observedGeneration": 99}}
    )
    assert via_status.spec.replicas == 1 and via_status.status.observed_generation == 99


def test_dry_run_changes_nothing(api: Any, namespace: str) -> None:
    core = client.CoreV1Api(api)
    made = core.create_namespaced_config_map(namespace, {"metadata": {"name": "dry"}, "data": {}}, dry_run="All")
    assert made.metadata.name == "dry"
    with pytest.raises(ApiException):
        core.read_namespaced_config_map("dry", namespace)
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "wet"}, "data": {"a": "1"}})
    core.patch_namespaced_config_map("wet", namespace, {"data": {"a": "2"}}, dry_run="All")
    core.delete_namespaced_config_map("wet", namespace, dry_run="All")
    assert core.read_namespaced_config_map("wet", namespace).data == {"a": "1"}


def test_label_and_field_selectors(api: Any, namespace: str) -> None:
    core = client.CoreV1Api(api)
    for name, labels in (
        ("a", {"tier": "front", "env": "prod"}),
        ("b", {"tier": "back", "env": "prod"}),
        ("c", {"tier": "front"}),
    ):
        core.create_namespaced_config_map(namespace, {"metadata": {"name": name, "labels": labels}})

    def names(**kwargs: Any) -> list[str]:
        return sorted(c.metadata.name for c in core.list_namespaced_config_map(namespace, **kwargs).items)

    assert names(label_selector="tier=front") == ["a", "c"]
    assert names(label_selector="tier==front,env=prod") == ["a"]
    assert names(label_selector="tier!=front") == ["b"]
    assert names(label_selector="tier in (back,middle)") == ["b"]
    assert names(label_selector="tier notin (back)") == ["a", "c"]
    assert names(label_selector="env") == ["a", "b"]
    assert names(label_selector="!env") == ["c"]
    assert names(field_selector="metadata.name=b") == ["b"]
    assert names(field_selector="metadata.name!=b") == ["a", "c"]
    assert names(field_selector=f"metadata.namespace={namespace}", label_selector="env=prod") == ["a", "b"]
    page = core.list_namespaced_config_map(namespace, limit=2)
    assert len(page.items) == 2 and page.metadata._continue
    rest = core.list_namespaced_config_map(namespace, limit=2, _continue=page.metadata._continue)
    assert len(rest.items) == 1


def test_kustomization_custom_resource(api: Any) -> None:
    custom = client.CustomObjectsApi(api)
    ks: Any = custom.get_namespaced_custom_object(
        "kustomize.toolkit.fluxcd.io", "v1", "flux-system", "kustomizations", "site"
    )
    assert ks["kind"] == "Kustomization" and ks["spec"]["sourceRef"]["kind"] == "GitRepository"
    listed: Any = custom.list_namespaced_custom_object(
        "kustomize.toolkit.fluxcd.io", "v1", "flux-system", "kustomizations"
    )
    assert [item["metadata"]["name"] for item in listed["items"]] == ["site"]
    assert listed["kind"] == "KustomizationList"


def test_openapi_documents_declare_server_side_field_validation(raw: Any, site_code: str) -> None:
    # kubectl apply reads these to decide that the server validates fields itself (fieldValidation=Strict).
    root = raw("GET", "/openapi/v3").body
    url = root["paths"]["apis/apps/v1"]["serverRelativeURL"]
    assert url.startswith(f"/sites/{site_code}/openapi/v3/apis/apps/v1?hash=")
    doc = raw("GET", url.split(f"/sites/{site_code}", 1)[1]).body
    assert doc["openapi"].startswith("3.")
    patch = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
    assert patch["x-kubernetes-group-version-kind"] == {"group": "apps", "version": "v1", "kind": "Deployment"}
    assert "fieldValidation" in {p["name"] for p in patch["parameters"]}
    v2 = raw("GET", "/openapi/v2", headers={"Accept": "application/json"}).body
    assert v2["swagger"] == "2.0" and "/api/v1/nodes/{name}" in v2["paths"]
