"""The drift check against the simulator over HTTP: a site whose agent applied its repository head is
in sync, one whose agent fails the new head has drifted, an offline one is unreachable (not drifted)."""

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from rollouts.choices import DriftState
from rollouts.drift import drift_check_site, drift_check_sites, drift_due_chunks, drift_due_sites
from rollouts.models import SiteSyncState
from simulator.testing import Simulator
from sites.models import Site
from sites.repos import Author, SiteRepo
from sites.services import site_probe
from tests.rollouts.conftest import client_for, wait_sweeping
from tests.support import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


def write(site: Site, text: str) -> str:
    result = SiteRepo.for_site(site).write(
        {"apps/demo/cm.yaml": text}, owned_prefix="apps/demo", message="test", author=Author.of("test")
    )
    assert result.revision is not None
    return result.revision


HOUR = dt.timedelta(hours=1)
CM = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: demo\n  namespace: demo\ndata:\n  v: '{}'\n"


def test_drift_check_records_in_sync_drifted_and_unreachable_sites(
    simulated_fleet: Callable[[int], Simulator],
) -> None:
    sim = simulated_fleet(3)
    synced, drifting, offline = (Site.objects.get(code=code) for code in sim.codes)
    # Given three sites at a first commit their agents applied...
    heads = {site.code: write(site, CM.format(1)) for site in (synced, drifting, offline)}
    for site in (synced, drifting, offline):
        wait_sweeping(lambda site=site: drift_check_site(site).state == DriftState.IN_SYNC, 15, f"{site.code} in sync")
        site_probe(site=site)  # reached: its health is then the nodes' and the drift's to say
    # ...then a new head that one agent fails to apply, and one site going offline.
    sim.add_fault("sync_failure", site=drifting.code)
    new_head = write(drifting, CM.format(2))
    sim.add_fault("offline", site=offline.code)
    wait_until(
        lambda: (sync := sim.summary(drifting.code)["sync"])["attempted"] == new_head and sync["failed"],
        15,
        "the drifting site's agent failing to apply the new head",
    )

    # When the check runs for each site
    rows = {site.code: drift_check_site(site) for site in (synced, drifting, offline)}

    # Then
    assert rows[synced.code].state == DriftState.IN_SYNC
    assert rows[synced.code].applied_revision == heads[synced.code] == rows[synced.code].head_revision
    assert rows[drifting.code].state == DriftState.DRIFTED
    assert rows[drifting.code].head_revision == new_head
    assert rows[drifting.code].applied_revision == heads[drifting.code]
    assert rows[drifting.code].drifted_since is not None
    assert "simulated sync failure" in rows[drifting.code].message
    assert rows[offline.code].state == DriftState.UNREACHABLE
    assert Site.objects.get(pk=drifting.pk).last_applied_revision == heads[drifting.code]
    # The site's health hears of it (sites.health_records.site_record_sync): a failing sync degrades the site
    # at once, naming the failure and the revisions; an unreachable one is the probe's to judge.
    drifting_site = Site.objects.get(pk=drifting.pk)
    assert drifting_site.repo_head_revision == new_head and drifting_site.drifted_since is not None
    assert (
        drifting_site.health_reason.startswith("sync failing: ")
        and "simulated sync failure" in drifting_site.health_reason
    )
    assert f"drift: applied {heads[drifting.code][:7]}, head {new_head[:7]} since " in drifting_site.health_reason
    assert Site.objects.get(pk=synced.pk).drifted_since is None
    assert Site.objects.get(pk=offline.pk).sync_error == ""
    # The sites checked longest ago come first in the next batch.
    assert drift_due_sites(limit=1) == [synced.pk]

    api: APIClient = client_for("support", ["rollouts.view_sitesyncstate"])
    answer = api.get("/api/v1/drift/", {"state": "drifted"})
    assert answer.status_code == 200, answer.content
    assert [row["site"] for row in answer.json()["results"]] == [drifting.code]
    assert SiteSyncState.objects.count() == 3


def test_a_chunk_loads_its_sites_at_once_and_an_unchanged_site_only_moves_its_checked_at(
    simulated_fleet: Callable[[int], Simulator], django_assert_num_queries: Callable[..., Any]
) -> None:
    sim = simulated_fleet(2)
    sites = [Site.objects.get(code=code) for code in sim.codes]
    ids = [site.pk for site in sites]
    for site in sites:
        write(site, CM.format(1))
    wait_sweeping(lambda: drift_check_sites(ids) == {DriftState.IN_SYNC: 2}, 15, "both sites in sync")
    before = dict(SiteSyncState.objects.values_list("site_id", "checked_at"))
    health = list(Site.objects.order_by("pk").values_list("health", "health_since", "repo_head_revision"))

    # When nothing changed at either site: the chunk's one load, then one UPDATE of both checked_at
    with django_assert_num_queries(2):
        assert drift_check_sites(ids) == {DriftState.IN_SYNC: 2}

    after = dict(SiteSyncState.objects.values_list("site_id", "checked_at"))
    assert all(after[site_id] > before[site_id] for site_id in ids)  # type: ignore[operator]
    assert list(Site.objects.order_by("pk").values_list("health", "health_since", "repo_head_revision")) == health

    # A new head is recorded in full again: the row, the site's drift inputs
    new_head = write(sites[0], CM.format(2))
    wait_sweeping(lambda: drift_check_sites(ids) == {DriftState.IN_SYNC: 2}, 15, "the new head applied")
    assert SiteSyncState.objects.get(site=sites[0]).head_revision == new_head
    assert Site.objects.get(pk=sites[0].pk).repo_head_revision == new_head


@pytest.mark.django_db
def test_the_beat_round_is_a_bounded_batch_in_chunks_never_checked_sites_first() -> None:
    from tests.factories import SiteFactory

    sites = SiteFactory.create_batch(7)
    SiteSyncState.objects.create(site=sites[0], state=DriftState.IN_SYNC, checked_at=timezone.now())
    SiteSyncState.objects.create(site=sites[1], state=DriftState.IN_SYNC, checked_at=timezone.now() - HOUR)

    chunks = drift_due_chunks(limit=6, size=4)

    assert [len(chunk) for chunk in chunks] == [4, 2]
    ids = [site_id for chunk in chunks for site_id in chunk]
    assert sites[0].pk not in ids  # checked recently: it waits for the next round
    assert ids[-1] == sites[1].pk  # checked an hour ago: after every never-checked site


@pytest.mark.django_db
def test_a_site_whose_latest_rollout_failed_there_is_degraded_until_a_later_one_succeeds() -> None:
    from rollouts.choices import RolloutState, SiteRolloutState
    from rollouts.drift import site_sync_state_record
    from rollouts.models import Rollout, RolloutWave, SiteRollout
    from sites.choices import ClusterReachability, SiteHealth
    from sites.models import Cluster
    from tests.factories import SiteFactory
    from tests.rollouts.factories import RolloutPlanFactory

    site = SiteFactory()
    Cluster.objects.filter(site=site).update(reachability=ClusterReachability.REACHABLE)  # as a probe found it

    def finished(state: str, error: str, minutes_ago: int) -> None:
        plan = RolloutPlanFactory()
        rollout = Rollout.objects.create(
            plan=plan, release=plan.release, state=RolloutState.HALTED, plan_snapshot={}, started_at=timezone.now()
        )
        wave = RolloutWave.objects.create(rollout=rollout, index=0, name="all", size=1)
        at = timezone.now() - dt.timedelta(minutes=minutes_ago)
        SiteRollout.objects.create(
            rollout=rollout, wave=wave, site=site, position=0, state=state, error=error, finished_at=at
        )

    def record() -> Site:
        site_sync_state_record(site=site, state=DriftState.IN_SYNC, head="abc", applied="abc", message="")
        return Site.objects.get(pk=site.pk)

    finished(SiteRolloutState.SUCCEEDED, "", minutes_ago=30)
    finished(SiteRolloutState.FAILED, "Deployment pos/web: ProgressDeadlineExceeded", minutes_ago=10)
    degraded = record()
    finished(SiteRolloutState.SUCCEEDED, "", minutes_ago=1)
    healthy = record()

    assert degraded.health == SiteHealth.DEGRADED
    assert degraded.health_reason == "last rollout failed here: Deployment pos/web: ProgressDeadlineExceeded"
    assert (healthy.health, healthy.rollout_error) == (SiteHealth.HEALTHY, "")
