"""Health end to end: the simulator over HTTP (its `node_death` and `offline` faults), probes carried out by
a real Celery worker on a real Redis, the database as the only thing the test reads.

The worker is this module's own, started with FLEET_NODE_DOWN_AFTER=3 (a setting the worker reads, so
it cannot be changed from the test process) and fed on a queue of its own, so the session's worker never
takes these probes.
"""

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from django.utils import timezone

from fleet.audit.models import AuditEvent
from fleet.celery import app as celery_app
from simulator.testing import Simulator, running_simulator
from sites import lifecycle
from sites.choices import AlertKind, ClusterReachability, NodeHealth, NodeState, SiteHealth
from sites.messages import clock
from sites.models import Alert, Cluster, Node, Site
from sites.tasks import site_probe_task, sites_probe_task
from tests.sites.test_lifecycle_support import FAST_SIM, agent, at_step, drive, import_fleet
from tests.support import wait_until
from tests.support.services import Worker, worker_env

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

DOWN_AFTER = 3.0
QUEUE = "health-probes"
LEASE_SECONDS = 1.0


@pytest.fixture(scope="module")
def probe_worker(
    django_db_setup: None, django_db_blocker: Any, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Worker]:
    data_dir = tmp_path_factory.mktemp("health-worker")
    env = {**worker_env(redis_url, data_dir), "FLEET_NODE_DOWN_AFTER": str(DOWN_AFTER), "FLEET_KUBE_TIMEOUT": "3"}
    worker = Worker(env, data_dir / "worker.log", queues=QUEUE, concurrency=1)
    worker.start()
    yield worker
    worker.stop()


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    extra = [*FAST_SIM, "--lease-interval", str(LEASE_SECONDS)]
    with running_simulator(sites=2, state_dir=tmp_path_factory.mktemp("sim"), extra_args=extra) as running:
        yield running


@pytest.fixture
def fleet(sim: Simulator, probe_worker: Worker) -> Iterator[list[Site]]:
    yield import_fleet(sim)
    sim.clear_faults()


def probe(site: Site, worker: Worker) -> Site:
    """One probe by the worker, waited for (its recorded time moves on). Sent on a connection to the
    worker's own broker: the process's producer stays bound to whichever Redis it first published to
    (tests/rollouts uses another), so the default one may not reach this worker."""
    before = Cluster.objects.get(site=site).last_probe_at
    with celery_app.connection_for_write(url=worker.env["FLEET_REDIS_URL"]) as connection:
        celery_app.send_task(site_probe_task.name, args=[site.pk], queue=QUEUE, connection=connection)
    wait_until(lambda: Cluster.objects.get(site=site).last_probe_at != before, 60, f"a probe of {site.code}")
    return Site.objects.get(pk=site.pk)


def probe_until(site: Site, worker: Worker, check: Any, what: str, seconds: float = 90) -> Site:
    give_up = timezone.now() + dt.timedelta(seconds=seconds)
    while True:
        site = probe(site, worker)
        if check(site):
            return site
        if timezone.now() > give_up:
            pytest.fail(f"{what} did not happen within {seconds} s of probes")


def test_a_dead_machine_is_not_seen_its_site_degraded_and_a_node_down_alert_opens_then_resolves(
    sim: Simulator, fleet: list[Site], probe_worker: Worker
) -> None:
    site = fleet[0]
    nodes = Node.objects.filter(site=site)
    assert nodes.exists() and not nodes.exclude(last_seen_at=None).exists()  # imported: never heard from
    started = timezone.now()

    # The first probe: every imported machine is ready and seen, the site healthy
    site = probe(site, probe_worker)
    assert (site.health, site.health_reason) == (SiteHealth.HEALTHY, "")
    assert all(n.health == NodeHealth.READY and n.last_seen_at >= started for n in nodes.all())  # type: ignore[operator]

    # A machine dies
    victim = agent(site)
    fault = sim.add_fault("node_death", site=site.code, node=victim.hostname)
    died = timezone.now()

    # Within FLEET_NODE_DOWN_AFTER and a probe: not seen since it died, the site names it, an alert opens
    site = probe_until(site, probe_worker, lambda s: Alert.objects.filter(node=victim).exists(), "a node-down alert")
    victim.refresh_from_db()
    assert victim.health == NodeHealth.NOT_SEEN
    assert victim.health_since is not None
    assert died - dt.timedelta(seconds=LEASE_SECONDS + 2) <= victim.health_since <= died + dt.timedelta(seconds=2)
    assert victim.last_seen_at == victim.health_since  # its lease's last renewal
    assert site.health == SiteHealth.DEGRADED
    assert site.health_reason == f"node {victim.hostname} not seen since {clock(victim.health_since, timezone.now())}"
    alert = Alert.objects.get(node=victim)
    assert (alert.kind, alert.site_id, alert.resolved_at) == (AlertKind.NODE_DOWN, site.pk, None)
    assert alert.opened_at - victim.health_since >= dt.timedelta(seconds=DOWN_AFTER)
    assert alert.message.startswith(f"node {victim.hostname} at {site.code} is not seen since ")
    assert AuditEvent.objects.filter(verb="alert_open", object_id=str(alert.pk)).count() == 1
    assert Node.objects.filter(site=site).exclude(pk=victim.pk).filter(health=NodeHealth.READY).count() >= 1

    # It comes back: ready again, the alert resolves itself, the site is healthy
    sim.remove_fault(fault)
    site = probe_until(site, probe_worker, lambda s: s.health == SiteHealth.HEALTHY, "the site healthy again")
    alert.refresh_from_db()
    victim.refresh_from_db()
    assert victim.health == NodeHealth.READY
    assert alert.resolved_at is not None and alert.resolution == f"node {victim.hostname} is ready again"
    assert Alert.objects.filter(resolved_at__isnull=True).count() == 0


def test_a_dead_machine_being_replaced_resolves_its_alert(
    sim: Simulator, fleet: list[Site], probe_worker: Worker
) -> None:
    site = fleet[1]
    probe(site, probe_worker)
    victim = agent(site)
    sim.add_fault("node_death", site=site.code, node=victim.hostname)
    site = probe_until(
        site, probe_worker, lambda s: Alert.objects.filter(node=victim, resolved_at=None).exists(), "an alert"
    )

    # Support answers the alert: replace the machine (the workflow, driven here up to the replacement's wait)
    run = lifecycle.node_replace_request(
        node=victim, actor="test", source="test", reason="dead", confirm=victim.hostname,
        replacement_serial="G6HEALTH0001", replacement_mac="94:c6:91:ee:01:01",
    )  # fmt: skip
    drive(run, until=at_step("await_checkin"), seconds=60)

    # Marked broken (its first step), the alert is answered; then retired, its hostname handed to the
    # replacement, which is pre-registered and awaited (not counted until it joins)
    victim.refresh_from_db()
    alert = Alert.objects.get(node=victim)
    assert alert.resolved_at is not None and alert.resolution == f"node {victim.hostname} is broken"
    assert victim.state == NodeState.RETIRED
    site = probe(site, probe_worker)
    assert (site.health, site.health_reason) == (SiteHealth.HEALTHY, "")
    assert not Alert.objects.filter(resolved_at__isnull=True).exists()


def test_an_offline_site_is_unreachable_since_its_first_failed_probe_in_words(
    sim: Simulator, fleet: list[Site], probe_worker: Worker
) -> None:
    site = probe(fleet[0], probe_worker)
    assert site.health == SiteHealth.HEALTHY
    fault = sim.add_fault("offline", site=site.code)
    went = timezone.now()

    site = probe(site, probe_worker)
    cluster = Cluster.objects.get(site=site)

    assert cluster.reachability == ClusterReachability.UNREACHABLE
    assert site.health == SiteHealth.UNREACHABLE and site.health_since == cluster.failing_since
    assert site.health_since is not None and site.health_since >= went
    host_port = sim.base_url.split("://", 1)[1].split("/", 1)[0]
    assert (
        site.health_reason
        == cluster.last_error
        == (
            f"cannot reach the cluster at {host_port} (the connection was dropped without an answer) "
            f"since {clock(site.health_since, timezone.now())}"
        )
    )
    assert "Error" in cluster.last_error_detail and "Error" not in cluster.last_error  # the raw error, kept behind
    assert not Alert.objects.exists()  # its machines are not dead: the site cannot be reached

    # Still offline: still unreachable since the first failure
    since = site.health_since
    assert probe(site, probe_worker).health_since == since

    # Back: healthy, the error cleared
    sim.remove_fault(fault)
    site = probe_until(site, probe_worker, lambda s: s.health == SiteHealth.HEALTHY, "the site healthy again")
    cluster.refresh_from_db()
    assert (cluster.last_error, cluster.last_error_detail, cluster.failing_since) == ("", "", None)


def test_the_beat_rounds_chunk_probes_each_of_its_sites_in_one_message(fleet: list[Site], probe_worker: Worker) -> None:
    before = dict(Cluster.objects.values_list("site_id", "last_probe_at"))
    ids = [site.pk for site in fleet]
    with celery_app.connection_for_write(url=probe_worker.env["FLEET_REDIS_URL"]) as connection:
        celery_app.send_task(sites_probe_task.name, args=[ids], queue=QUEUE, connection=connection)

    def all_probed() -> bool:
        now = dict(Cluster.objects.values_list("site_id", "last_probe_at"))
        return all(now[site_id] is not None and now[site_id] != before[site_id] for site_id in ids)

    wait_until(all_probed, 60, "both sites probed by the one chunk")
    assert set(Cluster.objects.filter(site_id__in=ids).values_list("reachability", flat=True)) == {
        ClusterReachability.REACHABLE
    }
