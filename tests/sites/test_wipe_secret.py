"""The wipe Job's rejoin token lives in a Kubernetes Secret owned by the Job, never in the Job's spec (which
anyone allowed to list Jobs reads, and which stays in the Job's history): against the simulator, read back
with the official client, as someone with read access to the site's Jobs would."""

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from fleet.workflows import dispatch
from fleet.workflows.models import WorkflowRun
from simulator.testing import Simulator, running_simulator
from sites import devices, lifecycle
from sites.choices import NodeState
from sites.crypto import hash_secret
from sites.models import BootstrapToken, Node, Site
from sites.workflows import wipe as wipe_workflow
from tests.sites.test_lifecycle_support import (
    FAST_SIM,
    FAST_TIMINGS,
    agent,
    cluster_of,
    deliver,
    drive,
    import_fleet,
    wipe_jobs,
)
from tests.support import wait_until

pytestmark = pytest.mark.integration

TOKEN_ENV = wipe_workflow.BOOTSTRAP_TOKEN_ENV
NAMESPACE = wipe_workflow.JOB_NAMESPACE


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    # Slow Jobs (2 s), so a test can look at a running wipe Job and its Secret.
    args = [*FAST_SIM, "--job-seconds", "2"]
    # One site per rejoining wipe: run ids (and so Job names) repeat across tests on SQLite.
    with running_simulator(sites=3, state_dir=tmp_path_factory.mktemp("sim"), extra_args=args) as running:
        yield running


@pytest.fixture
def fleet(sim: Simulator, db: None, settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Site]]:
    for name, value in FAST_TIMINGS.items():
        setattr(settings, name, value)
    monkeypatch.setattr(dispatch, "enqueue_advance", lambda *args, **kwargs: True)  # this process advances runs
    yield import_fleet(sim)
    sim.clear_faults()


def _secret(api: Any, name: str) -> Any:
    try:
        return k8s.CoreV1Api(api).read_namespaced_secret(name, NAMESPACE)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def _rejoining_wipe(site: Site) -> tuple[Node, WorkflowRun]:
    """A wipe with rejoin requested for the site's last active agent (by hostname)."""
    node = Node.objects.filter(site=site, role="agent", state=NodeState.ACTIVE).order_by("-hostname").first()
    assert node is not None
    run = lifecycle.node_wipe_request(
        node=node, actor="test", source="test", reason="x", confirm=node.hostname, rejoin=True
    )
    return node, run


def test_secret_env_is_a_secret_owned_by_the_job_and_never_in_its_spec(sim: Simulator, fleet: list[Site]) -> None:
    site = fleet[0]
    node = agent(site)
    adapter = cluster_of(site)
    adapter.ensure_namespace(NAMESPACE)

    created = adapter.create_job(
        namespace=NAMESPACE, name="edgefleet-secret-check", node=node.hostname, image="busybox",
        env={"PLAIN": "visible"}, secret_env={TOKEN_ENV: "efb_do-not-show-me"}, labels={"edgefleet.io/action": "x"},
    )  # fmt: skip

    assert created is True
    api = sim.api_client(site.code)
    job = k8s.BatchV1Api(api).read_namespaced_job("edgefleet-secret-check", NAMESPACE)
    assert "efb_do-not-show-me" not in json.dumps(api.sanitize_for_serialization(job))
    env = {e.name: e for e in job.spec.template.spec.containers[0].env}
    assert env["PLAIN"].value == "visible"
    assert env[TOKEN_ENV].value is None
    assert env[TOKEN_ENV].value_from.secret_key_ref.name == "edgefleet-secret-check"
    secret = _secret(api, "edgefleet-secret-check")
    assert base64.b64decode(secret.data[TOKEN_ENV]).decode() == "efb_do-not-show-me"
    assert [(o.kind, o.name, o.uid) for o in secret.metadata.owner_references] == [
        ("Job", "edgefleet-secret-check", job.metadata.uid)
    ]
    # A second create (a retried step) changes nothing; the Secret is there, then deleted once
    assert (
        adapter.create_job(namespace=NAMESPACE, name="edgefleet-secret-check", node=node.hostname, image="x") is False
    )
    assert adapter.job_secret_exists(NAMESPACE, "edgefleet-secret-check") is True
    assert adapter.ensure_job_secret(NAMESPACE, "edgefleet-secret-check", {TOKEN_ENV: "other"}) is False
    assert adapter.delete_job_secret(NAMESPACE, "edgefleet-secret-check") is True
    assert adapter.delete_job_secret(NAMESPACE, "edgefleet-secret-check") is False
    # And deleting the Job would have taken the Secret with it (the owner reference), as a cluster's GC does
    assert adapter.ensure_job_secret(NAMESPACE, "edgefleet-secret-check", {TOKEN_ENV: "again"}) is True
    k8s.BatchV1Api(api).delete_namespaced_job("edgefleet-secret-check", NAMESPACE)
    wait_until(lambda: _secret(api, "edgefleet-secret-check") is None, 10, "the Job's Secret collected")


def test_a_rejoining_wipe_hands_the_token_over_in_a_secret_that_ends_with_the_job(
    sim: Simulator, fleet: list[Site]
) -> None:
    site = fleet[1]
    node = agent(site)
    run = lifecycle.node_wipe_request(
        node=node, actor="test", source="test", reason="reimage", confirm=node.hostname, rejoin=True
    )
    api = sim.api_client(site.code)
    name = f"edgefleet-wipe-{run.pk}"

    # While the wipe Job runs: its spec holds no token, its Secret holds the one the control plane issued
    run = drive(run, until=lambda r: r.current_step == "await_wipe")
    job = k8s.BatchV1Api(api).read_namespaced_job(name, NAMESPACE)
    env = {e.name: e for e in job.spec.template.spec.containers[0].env}
    assert env[TOKEN_ENV].value is None and env[TOKEN_ENV].value_from.secret_key_ref.name == name
    secret = _secret(api, name)
    assert secret is not None and secret.metadata.owner_references[0].uid == job.metadata.uid
    plaintext = base64.b64decode(secret.data[TOKEN_ENV]).decode()
    token = BootstrapToken.objects.get(note=f"rejoin after wipe run {run.pk}")
    assert hash_secret(plaintext) == token.token_hash and token.used_at is None
    assert plaintext not in json.dumps(api.sanitize_for_serialization(job))

    # When the Job completes, the Secret is deleted; the machine got the token (the simulated kubelet
    # resolved the reference) and the Job log shows only the reference
    run = drive(run, until=lambda r: r.current_step not in ("await_wipe",))
    assert _secret(api, name) is None
    logged = wipe_jobs(sim, site.code)[-1]
    assert TOKEN_ENV not in logged["env"] and logged["env_from"][TOKEN_ENV] == f"{name}/{TOKEN_ENV}"
    device = next(d for d in sim.summary(site.code)["devices"] if d["hostname"] == node.hostname)
    assert any(e["event"] == "wipe_started" and e.get("rejoin") for e in device["events"])


def test_a_job_whose_secret_was_never_created_gets_one_with_a_fresh_token(sim: Simulator, fleet: list[Site]) -> None:
    site = fleet[0]
    node, run = _rejoining_wipe(site)
    run = drive(run, until=lambda r: r.current_step == "run_wipe_job")
    name = f"edgefleet-wipe-{run.pk}"
    # Given the last attempt issued a token and created the Job, then died before the Secret
    note = f"rejoin after wipe run {run.pk}"
    lost, _plaintext = devices.bootstrap_token_issue(
        site=site, actor="test", source="test", note=note, serials=[node.serial]
    )
    api = sim.api_client(site.code)
    reference = {"secretKeyRef": {"name": name, "key": TOKEN_ENV}}
    body = k8s.BatchV1Api(api).create_namespaced_job(
        NAMESPACE,
        {
            "metadata": {"name": name, "labels": {"edgefleet.io/action": "wipe"}},
            "spec": {"template": {"spec": {
                "nodeName": node.hostname, "restartPolicy": "Never",
                "containers": [{"name": "main", "image": wipe_workflow.WIPE_IMAGE,
                                "env": [{"name": TOKEN_ENV, "valueFrom": reference}]}],
            }}},
        },
    )  # fmt: skip
    assert _secret(api, name) is None  # its pod waits for the Secret, so the Job cannot finish meanwhile

    # When the step runs again
    deliver(WorkflowRun.objects.get(pk=run.pk))

    # Then the Job has its Secret, with a new token; the one that never reached the site is revoked
    secret = _secret(api, name)
    assert secret is not None and secret.metadata.owner_references[0].uid == body.metadata.uid
    lost.refresh_from_db()
    assert lost.revoked_at is not None
    fresh = BootstrapToken.objects.get(note=note, revoked_at=None)
    assert fresh.pk != lost.pk


def test_a_failed_rejoining_wipe_revokes_its_unused_token(sim: Simulator, fleet: list[Site]) -> None:
    site = fleet[2]
    node, run = _rejoining_wipe(site)
    run = drive(run, until=lambda r: r.current_step == "await_wipe")
    assert run.state not in ("failed", "succeeded"), (
        run.state,
        run.error,
        list(run.steps.values_list("step", "state", "message")),
    )
    token = BootstrapToken.objects.get(note=f"rejoin after wipe run {run.pk}")
    assert token.revoked_at is None

    wipe_workflow.wipe_failed(WorkflowRun.objects.get(pk=run.pk))

    token.refresh_from_db()
    assert token.revoked_at is not None
