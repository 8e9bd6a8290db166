"""The lifecycle workflows end to end: a real Celery worker on a real Redis, the simulator over HTTP, and
the control plane served by live_server so simulated machines register and heartbeat for real."""

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client as k8s

from fleet.audit.models import AuditEvent
from fleet.workflows.choices import ACTIVE_STATES, RunState, StepState
from fleet.workflows.models import StepRun, WorkflowRun
from fleet.workflows.tasks import workflow_sweep_task
from rollouts.models import Application
from simulator.testing import Simulator
from sites import devices, lifecycle, services
from sites.choices import NodeState
from sites.models import Backup, BootstrapToken, Node, NodeCredential, Site
from tests.sites.conftest import POS_RESTORE_IMAGE
from tests.sites.test_lifecycle_support import fleet, live_simulator, wipe_jobs
from tests.support import wait_until
from tests.support.services import Worker

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

__all__ = ["fleet"]  # the fixture, used here by name


@pytest.fixture(scope="module")
def sim(live_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    with live_simulator(live_server, tmp_path_factory, sites=3) as running:
        yield running


def finished(run: WorkflowRun, seconds: float = 40) -> WorkflowRun:
    try:
        wait_until(
            lambda: WorkflowRun.objects.get(pk=run.pk).state not in ACTIVE_STATES,
            seconds,
            f"{run.kind} run {run.pk} ending",
            every=workflow_sweep_task,
        )
    except BaseException:
        run.refresh_from_db()
        print(run.state, run.current_step, run.context, timeline(run)[-6:])  # noqa: T201  # for the failure report
        raise
    run.refresh_from_db()
    return run


def timeline(run: WorkflowRun) -> list[tuple[str, str, str]]:
    return list(StepRun.objects.filter(run=run).values_list("step", "state", "message"))


def test_an_unboxed_machine_provisions_itself_to_active(sim: Simulator, fleet: list[Site]) -> None:
    site = fleet[0]
    node = services.node_create(
        actor="test", source="test", serial="G6E2E0000001", site=site, hostname="e2e-new-1", mac="94:c6:91:ee:00:01"
    )
    run = lifecycle.node_provision_request(node=node, actor="test", source="test")
    _row, token = devices.bootstrap_token_issue(site=site, actor="test", source="test")

    sim.unbox(site.code, serial=node.serial, mac=node.mac, hostname=node.hostname, bootstrap_token=token)
    run = finished(run)

    assert run.state == RunState.SUCCEEDED, (run.error, timeline(run))
    node.refresh_from_db()
    assert node.state == NodeState.ACTIVE
    wait_until(lambda: NodeCredential.objects.filter(node=node, last_used_at__isnull=False).exists(), 10, "heartbeat")
    summary = sim.summary(site.code)
    nodes = {n["name"] if isinstance(n, dict) else n for n in summary.get("nodes", [])}
    assert node.hostname in str(nodes)


def test_a_wiped_machine_with_rejoin_registers_again_and_is_active(sim: Simulator, fleet: list[Site]) -> None:
    site = fleet[1]
    node = Node.objects.filter(site=site, role="agent").order_by("hostname").first()
    assert node is not None

    run = lifecycle.node_wipe_request(
        node=node, actor="test", source="test", reason="reimage", confirm=node.hostname, rejoin=True
    )
    run = finished(run)

    assert run.state == RunState.SUCCEEDED, (run.error, timeline(run))
    node.refresh_from_db()
    assert node.state == NodeState.ACTIVE
    jobs = wipe_jobs(sim, site.code)
    assert len(jobs) == 1 and jobs[0]["node"] == node.hostname
    # The token reached the machine through the Job's Secret, never the Job's spec (tests/sites/test_wipe_secret.py)
    assert "EDGEFLEET_BOOTSTRAP_TOKEN" not in jobs[0]["env"]
    assert jobs[0]["env_from"]["EDGEFLEET_BOOTSTRAP_TOKEN"] == f"{jobs[0]['name']}/EDGEFLEET_BOOTSTRAP_TOKEN"
    rejoin = BootstrapToken.objects.get(site=site, note__startswith="rejoin after wipe")
    assert (rejoin.serials, rejoin.any_serial) == ([node.serial], False)  # readable at the site: this machine only
    assert AuditEvent.objects.filter(verb="register", object_id=str(node.pk)).count() == 1  # it came back
    states = [
        e.payload["to"] for e in AuditEvent.objects.filter(verb="transition", object_id=str(node.pk)).order_by("id")
    ]
    assert states == ["cordoned", "draining", "wiping", "wiped", "joining", "active"]


def test_a_dead_node_is_replaced_and_the_replacement_restored_from_the_latest_backup(
    sim: Simulator, fleet: list[Site], pos_application: Application
) -> None:
    site = fleet[2]
    old = Node.objects.filter(site=site, role="agent").order_by("hostname").first()
    assert old is not None
    # The site's backups as its machines report them, each naming an image and a namespace of their choice
    sim.record_backup(
        site.code, application="pos", namespace="kube-system", location="s3://edge/pos/1", size=10,
        restore_image="evil/image:latest", taken_at="2026-01-01T00:00:00Z",
    )  # fmt: skip
    sim.record_backup(
        site.code, application="pos", namespace="kube-system", location="s3://edge/pos/2", size=10,
        restore_image="evil/image:latest",
    )  # fmt: skip
    sim.add_fault("node_death", site=site.code, node=old.hostname)

    run = lifecycle.node_replace_request(
        node=old, actor="test", source="test", reason="no power", confirm=old.hostname,
        replacement_serial="G6E2E0000009", shipment_ref="FEDEX-42",  # its MAC is learnt at check-in
    )  # fmt: skip
    wait_until(
        lambda: Node.objects.filter(serial="G6E2E0000009").exists(), 20, "the replacement being recorded",
        every=workflow_sweep_task,
    )  # fmt: skip
    sim.clear_faults()  # the dead machine is in the bin; the new one arrives with its hostname
    _row, token = devices.bootstrap_token_issue(site=site, actor="test", source="test")
    sim.unbox(site.code, serial="G6E2E0000009", mac="94:c6:91:ee:00:09", hostname=old.hostname, bootstrap_token=token)
    run = finished(run, seconds=45)

    assert run.state == RunState.SUCCEEDED, (run.error, timeline(run))
    old.refresh_from_db()
    new = Node.objects.get(serial="G6E2E0000009")
    assert (old.state, new.state) == (NodeState.RETIRED, NodeState.ACTIVE)
    assert new.mac == "94:c6:91:ee:00:09"
    restores = [j for j in sim.jobs(site.code) if j["labels"].get("edgefleet.io/action") == "restore"]
    assert len(restores) == 1
    assert restores[0]["node"] == new.hostname
    assert restores[0]["env"]["BACKUP_LOCATION"] == "s3://edge/pos/2"  # the latest, not the older one
    # What ran is the application's restore image in its namespace, whatever the machine reported
    assert (restores[0]["namespace"], restores[0]["image"]) == ("pos", POS_RESTORE_IMAGE)
    assert set(Backup.objects.filter(site=site).values_list("namespace", flat=True)) == {"pos"}
    job = k8s.BatchV1Api(sim.api_client(site.code)).read_namespaced_job(restores[0]["name"], "pos")
    assert [c.image for c in job.spec.template.spec.containers] == [POS_RESTORE_IMAGE]
    assert not job.spec.template.spec.tolerations


@pytest.fixture(scope="module")
def crashable_worker(celery_worker: Worker) -> Iterator[Worker]:
    """The session's worker with a short lease and short step timeouts, so a killed attempt is taken over
    in seconds; restored after the module (the crash tests come last in it)."""
    with celery_worker.reconfigured(FLEET_WORKFLOW_LEASE_SECONDS="3", FLEET_NODE_STEP_TIMEOUT="5") as worker:
        yield worker


def last_call(sim: Simulator, code: str) -> int:
    """The number of the site's last Kubernetes API call so far (see `in_flight`)."""
    return max((call["n"] for call in sim.api_calls(code)), default=0)


def crash_in_flight(
    sim: Simulator, code: str, worker: Worker, run: WorkflowRun, *, step: str, after: int, call: tuple[str, str]
) -> WorkflowRun:
    """SIGKILL the worker while `step` of `run` has a `call` (method, path ending) to the site in flight, start
    it again and return the run once finished. In flight means: the site received the call, numbered above
    `after`, and with the `slow` fault on has not answered it yet."""
    wait_until(
        lambda: WorkflowRun.objects.filter(pk=run.pk, current_step=step, state=RunState.RUNNING).exists(),
        30,
        f"the {step} step starting",
    )
    method, path_end = call
    wait_until(
        lambda: [c for c in sim.api_calls(code, after=after) if c["method"] == method and c["path"].endswith(path_end)],
        30,
        f"the {step} step's {method} ...{path_end} reaching the site",
    )
    worker.stop(kill=True)
    worker.start()
    sim.clear_faults()
    return finished(run, seconds=40)


def test_a_wipe_whose_worker_is_killed_mid_step_completes_with_each_side_effect_once(
    sim: Simulator, fleet: list[Site], crashable_worker: Worker, settings: Any
) -> None:
    site = fleet[0]
    node = Node.objects.filter(site=site, role="server").first()
    assert node is not None
    devices.node_credentials_issue(node=node, actor="test", source="test")
    sim.add_fault("slow", site=site.code, seconds=0.8)  # every call to the site takes a while

    mark = last_call(sim, site.code)
    run = lifecycle.node_wipe_request(node=node, actor="test", source="test", reason="crash", confirm=node.hostname)
    run = crash_in_flight(
        sim, site.code, crashable_worker, run, step="run_wipe_job", after=mark,
        call=("POST", "/namespaces/kube-system/jobs"),
    )  # fmt: skip

    assert run.state == RunState.SUCCEEDED, (run.error, timeline(run))
    node.refresh_from_db()
    assert node.state == NodeState.WIPED
    assert len(wipe_jobs(sim, site.code)) == 1
    assert AuditEvent.objects.filter(verb="revoke_credentials", object_id=str(node.pk)).count() == 1
    steps = [(step, state) for step, state, _ in timeline(run)]
    assert ("run_wipe_job", StepState.TIMED_OUT) in steps  # the lost attempt shows in the timeline
    assert steps.count(("run_wipe_job", StepState.DONE)) == 1


def test_a_provisioning_whose_worker_is_killed_mid_step_completes_once(
    sim: Simulator, fleet: list[Site], crashable_worker: Worker, settings: Any
) -> None:
    site = fleet[1]
    node = services.node_create(
        actor="test", source="test", serial="G6E2E0000077", site=site, hostname="e2e-crash-1", mac="94:c6:91:ee:00:77"
    )
    mark = last_call(sim, site.code)
    run = lifecycle.node_provision_request(node=node, actor="test", source="test")
    _row, token = devices.bootstrap_token_issue(site=site, actor="test", source="test")
    sim.add_fault("slow", site=site.code, seconds=0.8)
    sim.unbox(site.code, serial=node.serial, mac=node.mac, hostname=node.hostname, bootstrap_token=token)

    run = crash_in_flight(
        sim, site.code, crashable_worker, run, step="label", after=mark, call=("PATCH", f"/nodes/{node.hostname}")
    )

    assert run.state == RunState.SUCCEEDED, (run.error, timeline(run))
    node.refresh_from_db()
    assert node.state == NodeState.ACTIVE
    steps = [(step, state) for step, state, _ in timeline(run)]
    assert ("label", StepState.TIMED_OUT) in steps
    assert steps.count(("label", StepState.DONE)) == 1
    activations = AuditEvent.objects.filter(verb="transition", object_id=str(node.pk), payload__to="active")
    assert activations.count() == 1
    assert AuditEvent.objects.filter(verb="register", object_id=str(node.pk)).count() == 1
