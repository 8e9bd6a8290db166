"""The site run's steps called directly, against a simulated site's real bare repository: what a crash
between a push and its recording leaves behind, and how the steps find their way from git alone."""

from collections.abc import Callable
from typing import Any

import pytest
from django.db import transaction

from fleet.workflows.models import WorkflowRun
from fleet.workflows.outcomes import Done, Fail, Wait
from fleet.workflows.services import workflow_start
from rollouts import services
from rollouts.choices import ROLLBACK_KIND, SITE_KIND, RolloutState, SiteRolloutState, SkipReason
from rollouts.models import Application, RolloutWave, SiteRollout
from rollouts.workflows.common import REPO_WAIT_CAP
from rollouts.workflows.rollback import rollback_revert
from rollouts.workflows.site import site_commit, site_converge, site_finished
from simulator.testing import Simulator
from sites.models import Site
from sites.repos import Author, SiteRepo
from tests.factories import SiteFactory
from tests.rollouts.conftest import POS_BRIDGE_TEMPLATES, commit_count, git_show, wait_sweeping
from tests.support import free_port

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

CONFIGMAP = "apps/pos-bridge/configmap.yaml"


class WorkerDied(Exception):
    """The worker's process ending between the step's push and the engine's recording transaction."""


def committing_site_rollout(application: Application) -> SiteRollout:
    """The one site's row of a rollout of `application` 2.0.0 to every site, moved on to committing."""
    release = services.release_create(
        actor="t", source="test", application=application, version="2.0.0", templates=POS_BRIDGE_TEMPLATES
    )
    plan = services.rollout_plan_create(
        actor="t", source="test", name="p", release=release, target={"all": True}, waves=[{"percent": 100}],
        max_parallel=1, failure_threshold={"count": 0}, respect_windows=False,
    )  # fmt: skip
    row = SiteRollout.objects.get(rollout=services.rollout_start(plan=plan, actor="t", source="test"))
    services.site_rollout_transition(site_rollout=row, to=SiteRolloutState.COMMITTING, actor="t", source="test")
    return row


@pytest.fixture
def site_run(simulated_fleet: Callable[[int], Simulator]) -> tuple[Simulator, SiteRollout, WorkflowRun, str]:
    """A one-site rollout of pos-bridge 2.0 whose site run is about to commit, on top of a repository
    that already holds 1.0 (the head before is returned)."""
    sim = simulated_fleet(1)
    site = Site.objects.get()
    application = services.application_create(
        actor="t", source="test", name="pos-bridge", team="payments", namespace="pos"
    )
    v1 = SiteRepo.for_site(site).write(
        {CONFIGMAP: "v1\n"}, owned_prefix="apps/pos-bridge", message="v1", author=Author.of("t")
    )
    row = committing_site_rollout(application)
    run = workflow_start(kind=SITE_KIND, subject=row, actor="t", source="test")
    assert v1.revision is not None
    return sim, row, run, v1.revision


def test_a_commit_step_re_run_after_a_crash_finds_its_push_and_what_came_before(
    site_run: tuple[Simulator, SiteRollout, WorkflowRun, str],
) -> None:
    sim, row, run, v1 = site_run
    bare = sim.repo_path(row.site.code)
    before = commit_count(bare)
    # Given a commit step whose push landed but whose recording was lost with its worker
    with pytest.raises(WorkerDied), transaction.atomic():
        assert isinstance(site_commit(run, {}), Done)
        raise WorkerDied
    row.refresh_from_db()
    assert (row.state, row.revision, row.previous_revision) == (SiteRolloutState.COMMITTING, "", "")
    assert commit_count(bare) == before + 1

    # When the step runs again
    outcome = site_commit(run, {})

    # Then it commits nothing more and still knows the revision it replaced, from the commit's trailer
    assert isinstance(outcome, Done) and outcome.data is not None
    row.refresh_from_db()
    head = (git_show(bare, "main") or "").split()[1]
    assert commit_count(bare) == before + 1
    assert (row.state, row.revision, row.previous_revision) == (SiteRolloutState.SYNCING, head, v1)
    assert (outcome.data["changed"], outcome.data["previous"]) == (False, v1)
    assert outcome.data["deployments"] == [["pos", "pos-bridge"]]
    assert outcome.after > 0  # the edge needs a moment to see the push
    assert f"Edgefleet-Rollout: {row.rollout_id}" in (git_show(bare, "main") or "")


def test_a_roll_back_reverts_a_push_that_was_never_recorded(
    site_run: tuple[Simulator, SiteRollout, WorkflowRun, str],
) -> None:
    sim, row, run, v1 = site_run
    bare = sim.repo_path(row.site.code)
    with pytest.raises(WorkerDied), transaction.atomic():
        site_commit(run, {})
        raise WorkerDied
    assert 'version: "2.0.0"' in (git_show(bare, f"main:{CONFIGMAP}") or "")
    WorkflowRun.objects.filter(pk=run.pk).update(state="cancelled")  # the rollout was rolled back meanwhile
    row.refresh_from_db()

    revert = workflow_start(kind=ROLLBACK_KIND, subject=row, actor="t", source="test")
    outcome = rollback_revert(revert, {})

    assert isinstance(outcome, Done) and outcome.data and outcome.data["revert_changed"] is True
    assert git_show(bare, f"main:{CONFIGMAP}") == "v1\n"


def test_a_roll_back_of_a_site_that_never_pushed_commits_nothing(
    site_run: tuple[Simulator, SiteRollout, WorkflowRun, str],
) -> None:
    sim, row, run, _ = site_run
    bare = sim.repo_path(row.site.code)
    before = commit_count(bare)
    WorkflowRun.objects.filter(pk=run.pk).update(state="cancelled")

    outcome = rollback_revert(workflow_start(kind=ROLLBACK_KIND, subject=row, actor="t", source="test"), {})

    assert outcome == Done({"revert_revision": None})
    assert commit_count(bare) == before


def test_a_site_whose_repo_url_was_planted_fails_with_the_reason(settings: object) -> None:
    # Given a site whose repo_url names an unlisted server, written straight into the database
    settings.FLEET_GIT_HOSTS = ["gitlab.example.com"]  # type: ignore[attr-defined]
    site = SiteFactory(code="TX-0666", business_hours=[], maintenance_windows=[])
    Site.objects.filter(pk=site.pk).update(repo_url="https://attacker.example/fleet/x.git")
    application = services.application_create(actor="t", source="test", name="pos-bridge", team="p", namespace="pos")
    row = committing_site_rollout(application)

    # When its commit step and its roll back run
    commit = site_commit(workflow_start(kind=SITE_KIND, subject=row, actor="t", source="test"), {})
    WorkflowRun.objects.filter(kind=SITE_KIND).update(state="cancelled")
    revert = rollback_revert(workflow_start(kind=ROLLBACK_KIND, subject=row, actor="t", source="test"), {})

    # Then both fail for good (no retrying a URL that will not change), saying why
    for outcome in (commit, revert):
        assert isinstance(outcome, Fail)
        assert "TX-0666: repository URL refused" in outcome.reason
        assert "git host attacker.example is not in FLEET_GIT_HOSTS" in outcome.reason


@pytest.mark.parametrize("closed_by", ["failures", "halt"])
def test_the_commit_step_pushes_nothing_once_the_gate_is_closed(
    site_run: tuple[Simulator, SiteRollout, WorkflowRun, str], closed_by: str
) -> None:
    sim, row, run, _ = site_run
    bare = sim.repo_path(row.site.code)
    before = commit_count(bare)
    # Given a site started just before its wave went past the threshold (none tolerated), or the rollout halted
    if closed_by == "failures":
        RolloutWave.objects.filter(pk=row.wave_id).update(n_failed=1)
    else:
        services.rollout_transition(rollout=row.rollout, to=RolloutState.HALTED, actor="t", source="test")

    # When its commit step runs
    outcome = site_commit(run, {})

    # Then nothing is pushed; the site is skipped as never started and its run asked to stop
    assert isinstance(outcome, Wait)
    assert commit_count(bare) == before
    row.refresh_from_db()
    assert (row.state, row.skip_reason) == (SiteRolloutState.SKIPPED, SkipReason.NOT_STARTED)
    expected = "more than the threshold of 0 site(s)" if closed_by == "failures" else "the rollout is halted"
    assert row.error.startswith("not started: ") and expected in row.error
    assert WorkflowRun.objects.get(pk=run.pk).cancel_requested


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        ({"skip": "unreachable"}, (SiteRolloutState.SKIPPED, SkipReason.UNREACHABLE)),
        ({}, (SiteRolloutState.FAILED, "")),
    ],
)
def test_a_failed_run_fails_its_site_unless_the_site_could_not_be_reached(
    site_run: tuple[Simulator, SiteRollout, WorkflowRun, str], context: dict, expected: tuple[str, str]
) -> None:
    _, row, run, _ = site_run
    services.site_rollout_transition(site_rollout=row, to=SiteRolloutState.SYNCING, actor="t", source="test")
    WorkflowRun.objects.filter(pk=run.pk).update(state="failed", context=context, error="it ended")
    run.refresh_from_db()

    site_finished(run)

    row.refresh_from_db()
    assert (row.state, row.skip_reason) == expected
    assert row.error == "it ended"


def test_a_git_host_that_does_not_answer_makes_the_commit_step_wait_backing_off_not_use_up_attempts(
    site_run: tuple[Simulator, SiteRollout, WorkflowRun, str], settings: Any
) -> None:
    # Given a site whose git host does not answer (nothing listens on its port): an outage of minutes
    # used to exhaust the step's attempts and skip the site as unreachable, though the site was fine
    sim, row, run, _ = site_run
    server = f"127.0.0.1:{free_port()}"
    settings.FLEET_GIT_HOSTS = [*settings.FLEET_GIT_HOSTS, server]
    original = row.site.repo_url
    Site.objects.filter(pk=row.site_id).update(repo_url=f"https://{server}/fleet/{row.site.code}.git")
    ctx: dict[str, Any] = {}

    # When the commit step runs, again and again
    waits = [site_commit(run, ctx) for _ in range(8)]

    # Then each time it waits (a Wait costs no attempt), saying why, longer and longer up to the cap
    assert all(isinstance(outcome, Wait) for outcome in waits)
    assert all(1.0 <= outcome.seconds <= REPO_WAIT_CAP for outcome in waits if isinstance(outcome, Wait))
    assert "cannot push to the site's repository" in ctx["last_status"] and ctx["repo_waits"] == 8
    assert commit_count(sim.repo_path(row.site.code)) == 1

    # And once the host answers again, the same run commits, forgetting the outage
    Site.objects.filter(pk=row.site_id).update(repo_url=original)
    assert isinstance(site_commit(run, ctx), Done)
    assert "skip" not in ctx and "repo_waits" not in ctx
    assert commit_count(sim.repo_path(row.site.code)) == 2


def test_a_commit_the_edge_applied_only_as_part_of_a_later_head_counts_as_applied(
    site_run: tuple[Simulator, SiteRollout, WorkflowRun, str],
) -> None:
    # Given our commit pushed, and another writer's commit on top of it (another application's rollout)
    # before the edge synced: Flux applies the head, and never names our commit
    sim, row, run, _ = site_run
    ctx: dict[str, Any] = {}
    done = site_commit(run, ctx)
    assert isinstance(done, Done) and done.data is not None
    ctx.update(done.data)
    kiosk = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: kiosk\n  namespace: pos\ndata:\n  v: '1'\n"
    later = SiteRepo.for_site(row.site).write(
        {"apps/kiosk/configmap.yaml": kiosk}, owned_prefix="apps/kiosk", message="kiosk", author=Author.of("t")
    )
    assert later.revision is not None and later.previous == ctx["revision"]

    # When the converge step polls until the edge has applied the later head
    outcomes: list[Any] = []

    def past_sync() -> bool:
        outcomes.append(site_converge(run, ctx))
        row.refresh_from_db()
        return isinstance(outcomes[-1], Done) or row.state == SiteRolloutState.VERIFYING

    wait_sweeping(past_sync, 60, "the site past waiting for its commit")

    # Then our commit counted as applied (before, the step waited for it forever), and the site is judged
    assert "waiting for the edge to apply" not in ctx.get("last_status", "")
