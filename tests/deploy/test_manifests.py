"""deploy/base: the control plane's own Kubernetes manifests, built with kustomize (kubectl's) and checked
as a reviewer would, then applied to a simulated cluster where every Deployment must roll out."""

import base64
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from simulator.testing import Simulator, running_simulator
from tests.support.services import ROOT

KUBECTL = shutil.which(os.environ.get("KUBECTL", "kubectl")) or "/usr/bin/kubectl"
BASE = ROOT / "deploy" / "base"
SECRET_WORDS = re.compile(r"SECRET|PASSWORD|TOKEN|DATABASE_URL|REDIS_URL|BROKER_URL")


def build() -> list[dict[str, Any]]:
    out = subprocess.run([KUBECTL, "kustomize", str(BASE)], capture_output=True, text=True, check=True, timeout=60)
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    return list(workload["spec"]["template"]["spec"]["containers"])


def documented_settings() -> set[str]:
    text = (ROOT / ".env.example").read_text()
    return set(re.findall(r"^#?\s*(FLEET_[A-Z0-9_]+)=", text, flags=re.M))


def test_every_process_of_the_procfile_is_a_workload_with_limits_and_no_privileges() -> None:
    docs = build()
    deployments, jobs = by_kind(docs, "Deployment"), by_kind(docs, "Job")
    assert set(deployments) == {"edgefleet-web", "edgefleet-worker", "edgefleet-beat", "edgefleet-flower"}
    assert set(jobs) == {"edgefleet-migrate"}

    commands = {name: " ".join(containers(d)[0]["command"]) for name, d in {**deployments, **jobs}.items()}
    assert commands["edgefleet-web"].startswith("gunicorn fleet.wsgi")
    assert "celery -A fleet worker -Q control,io" in commands["edgefleet-worker"]
    assert commands["edgefleet-beat"].startswith("celery -A fleet beat")
    assert commands["edgefleet-flower"] == "python -m fleet.flower"  # credentials from the environment only
    assert commands["edgefleet-migrate"] == "python manage.py migrate --noinput"

    for name, workload in {**deployments, **jobs}.items():
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        for container in pod["containers"]:
            assert container["resources"]["requests"]["cpu"] and container["resources"]["limits"]["memory"], name
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False and context["capabilities"]["drop"] == ["ALL"], name
            sources = [next(iter(source.values()))["name"] for source in container["envFrom"]]
            assert sources == ["edgefleet-config", "edgefleet-secrets"], name


def test_probes_say_what_healthy_means_for_each_process() -> None:
    deployments = by_kind(build(), "Deployment")
    web = containers(deployments["edgefleet-web"])[0]
    assert web["readinessProbe"]["httpGet"]["path"] == web["livenessProbe"]["httpGet"]["path"] == "/healthz"
    allowed = by_kind(build(), "ConfigMap")["edgefleet-config"]["data"]["FLEET_ALLOWED_HOSTS"].split(",")
    host = {h["name"]: h["value"] for h in web["readinessProbe"]["httpGet"]["httpHeaders"]}["Host"]
    assert host in allowed  # Django answers 400 to a probe for a host it does not serve

    worker = containers(deployments["edgefleet-worker"])[0]
    liveness = worker["livenessProbe"]["exec"]["command"]
    assert liveness[:3] == ["python", "-m", "fleet.liveness"]
    env = {e["name"]: e.get("value") for e in worker["env"]}
    assert liveness[3] == env["FLEET_WORKER_LIVENESS_FILE"]  # the probe reads the file the worker touches
    assert deployments["edgefleet-worker"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > 180

    beat = deployments["edgefleet-beat"]["spec"]
    assert beat["replicas"] == 1 and beat["strategy"]["type"] == "Recreate"  # never two beats at once


def test_the_config_map_holds_known_settings_and_no_secret() -> None:
    data = by_kind(build(), "ConfigMap")["edgefleet-config"]["data"]
    assert set(data) <= documented_settings()
    assert not [key for key in data if SECRET_WORDS.search(key)]
    assert data["FLEET_ENV"] == "production"
    assert not by_kind(build(), "Secret")  # secrets are the operator's, never in the repository


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    with running_simulator(sites=1, state_dir=tmp_path_factory.mktemp("sim"), seed=3) as simulator:
        yield simulator


@pytest.mark.integration
def test_the_manifests_apply_to_a_cluster_and_every_deployment_rolls_out(sim: Simulator, tmp_path: Path) -> None:
    code = sim.codes[0]

    def kubectl(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [KUBECTL, "--kubeconfig", str(sim.kubeconfig_path(code)), "--cache-dir", str(tmp_path / "cache"), *args],
            input=stdin, capture_output=True, text=True, check=False, timeout=120,
        )  # fmt: skip

    assert kubectl("create", "namespace", "edgefleet").returncode == 0
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "edgefleet-secrets", "namespace": "edgefleet"},
        "data": {"FLEET_SECRET_KEY": base64.b64encode(b"x" * 64).decode()},
    }
    assert kubectl("apply", "-f", "-", stdin=yaml.safe_dump(secret)).returncode == 0

    dry = kubectl("apply", "--dry-run=server", "-n", "edgefleet", "-k", str(BASE))
    assert dry.returncode == 0, dry.stderr
    applied = kubectl("apply", "-n", "edgefleet", "-k", str(BASE))
    assert applied.returncode == 0, applied.stderr

    for name in ("edgefleet-web", "edgefleet-worker", "edgefleet-beat", "edgefleet-flower"):
        status = kubectl("rollout", "status", f"deployment/{name}", "-n", "edgefleet", "--timeout=90s")
        assert status.returncode == 0, f"{name}: {status.stdout}{status.stderr}"
