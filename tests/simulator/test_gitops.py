"""The GitOps agent: commits pushed to a site's bare repository with plain git are applied, pruned and
reported through the Flux Kustomization `site`, all or nothing."""

from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from simulator.testing import Simulator
from tests.simulator.checkout import Checkout
from tests.support import wait_until

pytestmark = pytest.mark.integration

FLUX = ("kustomize.toolkit.fluxcd.io", "v1", "flux-system", "kustomizations", "site")

APP = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: kds
  namespace: kitchen
spec:
  replicas: 2
  selector:
    matchLabels: {{app: kds}}
  template:
    metadata:
      labels: {{app: kds}}
    spec:
      containers:
      - name: kds
        image: registry.example/kds:{version}
"""
NAMESPACE = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: kitchen\n"
CONFIG = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: kitchen\ndata:\n  k: v\n"


@pytest.fixture
def checkout(sim: Simulator, site_code: str, tmp_path: Path) -> Checkout:
    return Checkout(sim.site(site_code)["repo_url"], tmp_path / "work")


def _status(api: Any) -> dict[str, Any]:
    return client.CustomObjectsApi(api).get_namespaced_custom_object(*FLUX).get("status", {})


def _ready(status: dict[str, Any]) -> dict[str, Any]:
    return next((c for c in status.get("conditions", []) if c["type"] == "Ready"), {})


def _applied(api: Any, sha: str) -> dict[str, Any] | None:
    status = _status(api)
    ok = status.get("lastAppliedRevision") == f"main@sha1:{sha}" and _ready(status).get("status") == "True"
    return status if ok else None


def _failed(api: Any, sha: str) -> dict[str, Any] | None:
    status = _status(api)
    ok = status.get("lastAttemptedRevision") == f"main@sha1:{sha}" and _ready(status).get("status") == "False"
    return status if ok else None


def _image(api: Any) -> str:
    deploy = client.AppsV1Api(api).read_namespaced_deployment("kds", "kitchen")
    return str(deploy.spec.template.spec.containers[0].image)


def test_commits_are_applied_reported_and_pruned(api: Any, checkout: Checkout, sim: Simulator, site_code: str) -> None:
    # Given a commit with a namespace, a deployment and two config maps
    sha = checkout.commit(
        {
            "ns.yaml": NAMESPACE,
            "apps/kds.yaml": APP.format(version="1.0"),
            "config.yaml": CONFIG.format(name="a") + "---\n" + CONFIG.format(name="b"),
            "README.md": "# site\n",
        },
        "kds 1.0",
    )
    # Then the agent reports it applied, as Flux would, and the deployment becomes available
    status = wait_until(lambda: _applied(api, sha), timeout=15, what="revision applied")
    assert status["lastAttemptedRevision"] == f"main@sha1:{sha}"
    assert status["observedGeneration"] == 1 and _ready(status)["reason"] == "ReconciliationSucceeded"
    source: Any = client.CustomObjectsApi(api).get_namespaced_custom_object(
        "source.toolkit.fluxcd.io", "v1", "flux-system", "gitrepositories", "site"
    )
    assert source["status"]["artifact"]["revision"] == f"main@sha1:{sha}"
    apps = client.AppsV1Api(api)
    wait_until(
        lambda: (apps.read_namespaced_deployment("kds", "kitchen").status.available_replicas or 0) == 2,
        what="deployment available",
    )
    deploy = apps.read_namespaced_deployment("kds", "kitchen")
    assert (deploy.metadata.labels or {})["kustomize.toolkit.fluxcd.io/name"] == "site"
    core = client.CoreV1Api(api)
    assert {c.metadata.name for c in core.list_namespaced_config_map("kitchen").items} >= {"a", "b"}

    # When a broken manifest is pushed
    broken = checkout.commit({"apps/kds.yaml": APP.format(version="2.0") + "  oops: [unclosed\n"}, "broken yaml")
    status = wait_until(lambda: _failed(api, broken), timeout=15, what="failure reported")
    # Then nothing changes and the failure is explained
    assert status["lastAppliedRevision"] == f"main@sha1:{sha}"
    assert "kds.yaml" in _ready(status)["message"] and _ready(status)["reason"] == "BuildFailed"
    assert _image(api) == "registry.example/kds:1.0"

    # When an invalid object is pushed (a deployment whose selector does not match its pods)
    invalid = checkout.commit(
        {
            "apps/kds.yaml": APP.format(version="2.0"),
            "bad.yaml": APP.format(version="3")
            .replace("name: kds\n", "name: other\n", 1)
            .replace("matchLabels: {app: kds}", "matchLabels: {app: zzz}"),
        },
        "invalid object",
    )
    status = wait_until(lambda: _failed(api, invalid), timeout=15, what="invalid object reported")
    assert "selector" in _ready(status)["message"] and _ready(status)["reason"] == "ReconciliationFailed"
    assert _image(api) == "registry.example/kds:1.0"  # the valid half was not applied either

    # When the repository is fixed and a config map is dropped
    fixed = checkout.commit({"bad.yaml": None, "config.yaml": CONFIG.format(name="a")}, "fix, drop b")
    wait_until(lambda: _applied(api, fixed), timeout=15, what="fixed revision applied")
    assert _image(api) == "registry.example/kds:2.0"
    names = {c.metadata.name for c in core.list_namespaced_config_map("kitchen").items}
    assert "a" in names and "b" not in names  # pruned
    assert sim.summary(site_code)["sync"]["applied"] == fixed


def test_kustomization_file_selects_resources(api: Any, checkout: Checkout) -> None:
    sha = checkout.commit(
        {
            "kustomization.yaml": "resources:\n- base\n- extra.yaml\n",
            "base/kustomization.yaml": "resources:\n- ns.yaml\n- cm.yaml\n",
            "base/ns.yaml": NAMESPACE,
            "base/cm.yaml": CONFIG.format(name="from-base"),
            "extra.yaml": CONFIG.format(name="extra"),
            "ignored.yaml": CONFIG.format(name="not-listed"),
        },
        "kustomize layout",
    )
    wait_until(lambda: _applied(api, sha), timeout=15, what="kustomization applied")
    names = {c.metadata.name for c in client.CoreV1Api(api).list_namespaced_config_map("kitchen").items}
    assert {"from-base", "extra"} <= names and "not-listed" not in names


def test_sync_failure_fault(api: Any, checkout: Checkout, sim: Simulator, site_code: str) -> None:
    sim.add_fault("sync_failure", site=site_code)
    files = {
        "kustomization.yaml": "resources:\n- late-ns.yaml\n- late.yaml\n",
        "late-ns.yaml": NAMESPACE,
        "late.yaml": CONFIG.format(name="late"),
    }
    sha = checkout.commit(files, "during a sync failure")
    status = wait_until(lambda: _failed(api, sha), timeout=15, what="simulated failure")
    assert "simulated" in _ready(status)["message"]
    names = {c.metadata.name for c in client.CoreV1Api(api).list_namespaced_config_map("kitchen").items}
    assert "late" not in names
    sim.clear_faults()
    wait_until(lambda: _applied(api, sha), timeout=15, what="applied once the fault is gone")
    assert "late" in {c.metadata.name for c in client.CoreV1Api(api).list_namespaced_config_map("kitchen").items}
