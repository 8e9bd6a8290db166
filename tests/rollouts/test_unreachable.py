"""A site that cannot be reached during a rollout: the converge step, called directly against a simulated
site, moves it to its own state `unreachable` (counted apart from syncing, with a sentence for people and
since when), and back to where it was as soon as the cluster answers again."""

from typing import Any

import pytest

from fleet.workflows.outcomes import Done, Wait
from rollouts.choices import SiteRolloutState
from rollouts.models import Rollout, SiteRollout
from rollouts.workflows.site import site_commit, site_converge
from tests.rollouts.test_site_steps import site_run  # noqa: F401 (the fixture)

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


def test_an_unreachable_site_waits_as_unreachable_then_goes_back_to_syncing(site_run: Any) -> None:  # noqa: F811
    sim, row, run, _ = site_run
    ctx: dict[str, Any] = {}
    committed = site_commit(run, ctx)
    assert isinstance(committed, Done)
    ctx.update(committed.data)

    # Given the site goes offline after the push
    fault = sim.add_fault("offline", site=row.site.code)

    # When the converge step looks, it waits, and the site is unreachable (not syncing), saying why and since when
    outcome = site_converge(run, ctx)
    assert isinstance(outcome, Wait) and outcome.reason.startswith("waiting: unreachable since ")
    waiting = SiteRollout.objects.get(pk=row.pk)
    assert waiting.state == SiteRolloutState.UNREACHABLE and waiting.unreachable_since is not None
    assert "cannot reach the cluster at" in waiting.error and "MaxRetryError" not in waiting.error
    rollout = Rollout.objects.get(pk=row.rollout_id)
    assert (rollout.n_unreachable, rollout.n_syncing, rollout.n_succeeded) == (1, 0, 0)

    # When the site answers again, it is back where it was, its sentence and since cleared
    sim.remove_fault(fault)
    site_converge(run, ctx)
    back = SiteRollout.objects.get(pk=row.pk)
    assert back.state in (SiteRolloutState.SYNCING, SiteRolloutState.VERIFYING)
    assert back.unreachable_since is None and back.error == ""
    assert Rollout.objects.get(pk=row.rollout_id).n_unreachable == 0
