"""A site run that succeeds hands its parallel slot to the next pending site of its wave, without
waking the driver, and only when nothing else needs deciding."""

import pytest

from fleet.workflows.choices import RunState
from fleet.workflows.models import WorkflowRun
from rollouts import services
from rollouts.choices import SITE_KIND
from rollouts.models import Rollout, SiteRollout
from rollouts.workflows.site import site_finished
from tests.factories import SiteFactory
from tests.rollouts.factories import RolloutPlanFactory

pytestmark = pytest.mark.django_db


def running_wave(**plan: object) -> tuple[Rollout, list[SiteRollout]]:
    """A rollout of 4 sites in one open wave, max_parallel 1, its first site committing."""
    for _ in range(4):
        SiteFactory()
    fields: dict[str, object] = {"waves": [{"percent": 100}], "max_parallel": 1}
    fields.update(plan)
    rollout = services.rollout_start(plan=RolloutPlanFactory(**fields), actor="t", source="test")
    services.rollout_wave_open(rollout=rollout, index=0, actor="workflow", source="workflow")
    rows = list(SiteRollout.objects.filter(rollout=rollout).order_by("position"))
    run = WorkflowRun.objects.create(kind=SITE_KIND, subject_type="rollouts.siterollout", subject_id=str(rows[0].pk))
    services.site_rollouts_start(run_ids={rows[0].pk: run.pk})
    return rollout, rows


def end_run(row: SiteRollout, state: str, error: str = "") -> None:
    row.refresh_from_db()
    run = row.workflow_run
    assert run is not None
    run.state, run.error = state, error
    run.save()
    site_finished(run)


def states(rollout: Rollout) -> list[str]:
    return list(SiteRollout.objects.filter(rollout=rollout).order_by("position").values_list("state", flat=True))


def test_a_success_starts_the_next_pending_site_in_its_place() -> None:
    rollout, rows = running_wave()

    end_run(rows[0], RunState.SUCCEEDED)

    assert states(rollout) == ["succeeded", "committing", "pending", "pending"]
    successor = SiteRollout.objects.get(pk=rows[1].pk)
    assert successor.workflow_run is not None and successor.workflow_run.kind == SITE_KIND
    rollout.refresh_from_db()
    assert (rollout.n_succeeded, rollout.n_committing, rollout.n_pending) == (1, 1, 2)


@pytest.mark.parametrize("situation", ["paused", "failed", "windows", "rollback"])
def test_anything_to_decide_is_left_to_the_driver(situation: str) -> None:
    rollout, rows = running_wave(respect_windows=situation == "windows")
    if situation == "paused":
        services.rollout_pause(rollout=rollout, actor="t", source="test")
    if situation == "rollback":
        services.rollout_rollback(rollout=rollout, actor="t", source="test")
    if situation == "failed":  # a second site in flight fails first: the threshold (0) is exceeded
        run = WorkflowRun.objects.create(
            kind=SITE_KIND, subject_type="rollouts.siterollout", subject_id=str(rows[3].pk)
        )
        services.site_rollouts_start(run_ids={rows[3].pk: run.pk})
        end_run(rows[3], RunState.FAILED, "ImagePullBackOff")

    end_run(rows[0], RunState.SUCCEEDED)

    assert states(rollout)[:3] == ["succeeded", "pending", "pending"]
