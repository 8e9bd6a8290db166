"""The drift check against the simulator over HTTP: a site whose agent applied its repository head is
in sync, one whose agent fails the new head has drifted, an offline one is unreachable (not drifted)."""

import time
from collections.abc import Callable

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from rollouts.choices import DriftState
from rollouts.drift import drift_check_site, drift_due_sites
from rollouts.models import SiteSyncState
from simulator.testing import Simulator
from sites.models import Site
from sites.repos import Author, SiteRepo
from tests.rollouts.conftest import client_for, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


def write(site: Site, text: str) -> str:
    result = SiteRepo.for_site(site).write(
        {"apps/demo/cm.yaml": text}, owned_prefix="apps/demo", message="test", author=Author.of("test")
    )
    assert result.revision is not None
    return result.revision


CM = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: demo\n  namespace: demo\ndata:\n  v: '{}'\n"


def test_drift_check_records_in_sync_drifted_and_unreachable_sites(
    simulated_fleet: Callable[[int], Simulator],
) -> None:
    sim = simulated_fleet(3)
    synced, drifting, offline = (Site.objects.get(code=code) for code in sim.codes)
    # Given three sites at a first commit their agents applied...
    heads = {site.code: write(site, CM.format(1)) for site in (synced, drifting, offline)}
    for site in (synced, drifting, offline):
        wait_for(lambda site=site: drift_check_site(site).state == DriftState.IN_SYNC, 15, f"{site.code} in sync")
    # ...then a new head that one agent fails to apply, and one site going offline.
    sim.add_fault("sync_failure", site=drifting.code)
    new_head = write(drifting, CM.format(2))
    sim.add_fault("offline", site=offline.code)
    time.sleep(0.6)  # a few agent polls

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
    # The sites checked longest ago come first in the next batch.
    assert drift_due_sites(limit=1) == [synced.pk]

    api: APIClient = client_for("support", ["rollouts.view_sitesyncstate"])
    answer = api.get("/api/v1/drift/", {"state": "drifted"})
    assert answer.status_code == 200, answer.content
    assert [row["site"] for row in answer.json()["results"]] == [drifting.code]
    assert SiteSyncState.objects.count() == 3


@pytest.mark.django_db
def test_the_beat_task_fans_out_a_bounded_batch_never_checked_sites_first(
    monkeypatch: pytest.MonkeyPatch, settings: object
) -> None:
    from rollouts import tasks
    from tests.factories import SiteFactory

    sites = SiteFactory.create_batch(5)
    SiteSyncState.objects.create(site=sites[0], state=DriftState.IN_SYNC, checked_at=timezone.now())
    sent: list[tuple[int, ...]] = []
    monkeypatch.setattr(tasks.drift_site_task, "apply_async", lambda args, **kw: sent.append(args))
    settings.FLEET_DRIFT_BATCH = 4  # type: ignore[attr-defined]

    assert tasks.drift_check_task() == 4

    assert len(sent) == 4
    assert (sites[0].pk,) not in sent  # checked recently: it waits for the next round
