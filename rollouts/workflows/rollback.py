"""Rolling a rollout back: the driver's part (`roll_back`: stop the site runs, then start one
`rollout.site_rollback` run per site whose repository may hold the release, and end `rolled_back` once
they all have ended) and that run, `revert` (the application's folder back at the revision before the
rollout, as a new commit) then `sync` (await the edge's sync of the revert). docs/ARCHITECTURE.md
("Rollouts") tells which sites are reverted and to what."""

import datetime as dt
from typing import Any

from django.db import transaction
from django.db.models import Q

from fleet.errors import Conflict
from fleet.workflows import ACTIVE_STATES, Done, Outcome, RunState, Wait, Workflow, WorkflowRun, register, start
from rollouts import services
from rollouts.choices import (
    ROLLBACK_KIND,
    SITE_ROLLOUT_TRANSITIONS,
    SITE_TOUCHED_STATES,
    SKIP_MAY_HOLD_RELEASE,
    RolloutState,
    SiteRolloutState,
)
from rollouts.models import Rollout, SiteRollout
from rollouts.workflows import converge
from rollouts.workflows.common import (
    ACTOR,
    DRIVE_POLL_SECONDS,
    SOURCE,
    author_of,
    move,
    owned_prefix,
    rollout_trailer,
    site_io_step,
    site_rollout_of,
    site_step,
    wake_driver,
)
from rollouts.workflows.converge import SYNC_POLL_SECONDS
from rollouts.workflows.site import cancel_site_runs
from sites.repos import SiteRepo


def roll_back(rollout: Rollout) -> Outcome:
    """The driver's step while a roll back is requested: skip the sites not started, stop the site runs,
    then start a roll-back run per site that may hold the release; Done (`rolled_back`) when every
    roll-back run has ended, naming how many sites could not be reverted."""
    with transaction.atomic():
        services.skip_not_started_sites(rollout=rollout)
    active = cancel_site_runs(rollout, reason="the rollout is being rolled back")
    if active:
        return Wait(DRIVE_POLL_SECONDS, f"roll back: {active} site run(s) stopping first")
    touched = (
        SiteRollout.objects.filter(rollout=rollout)
        .filter(
            Q(state__in=SITE_TOUCHED_STATES) | Q(state=SiteRolloutState.SKIPPED, skip_reason__in=SKIP_MAY_HOLD_RELEASE)
        )
        .select_related("workflow_run")
    )
    running = 0
    for row in touched:
        run = row.workflow_run
        if run is not None and run.kind == ROLLBACK_KIND:
            running += run.state in ACTIVE_STATES
            continue
        with transaction.atomic():
            try:
                run = start(kind=ROLLBACK_KIND, subject=row, actor=ACTOR, source=SOURCE)
            except Conflict:
                running += 1
                continue
            services.site_rollout_transition(
                site_rollout=row, to=row.state, actor=ACTOR, source=SOURCE, workflow_run_id=run.pk
            )
        running += 1
    if running:
        return Wait(DRIVE_POLL_SECONDS, f"roll back: {running} site(s) reverting")
    failed = SiteRollout.objects.filter(rollout=rollout, state__in=SITE_TOUCHED_STATES).count()
    reason = rollout.rollback_reason or "rolled back"
    if failed:
        reason = f"{reason}; {failed} site(s) could not be reverted (see their errors)"
    services.rollout_transition(rollout=rollout, to=RolloutState.ROLLED_BACK, actor=ACTOR, source=SOURCE, reason=reason)
    return Done({"final_state": RolloutState.ROLLED_BACK, "not_reverted": failed})


# --- rolling one site back ------------------------------------------------------------------------


@site_step
def rollback_revert(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
    """Put `apps/<application>/` back as it was before the rollout, as a new commit. What came before is
    the revision the forward run recorded; when it recorded none (cancelled or crashed around its push),
    the commit carrying the rollout's trailer tells whether anything was pushed, and on top of what."""
    row = site_rollout_of(run, release=True)
    release = row.rollout.release
    message = f"Roll back {release.application.name} {release.version} (rollout {row.rollout_id})"
    author = author_of(row.rollout)
    repo = SiteRepo.for_site(row.site)
    if row.revision:
        previous = row.previous_revision or None
    else:
        marked = repo.find_trailer(rollout_trailer(row))
        if marked is None:
            return Done({"revert_revision": None})  # nothing of this rollout reached the repository
        previous = marked.parent
    if previous:
        result = repo.revert_to(previous, owned_prefix=owned_prefix(row), message=message, author=author)
    else:  # the repository was empty before: the application's folder goes away
        result = repo.write({}, owned_prefix=owned_prefix(row), message=message, author=author)
    if result.revision is None:
        return Done({"revert_revision": None})
    return Done({"revert_revision": result.revision, "revert_changed": result.changed})


@site_step
def rollback_sync(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
    """Wait until the edge applied the revert (a site skipped as unreachable is not waited for)."""
    sha = ctx.get("revert_revision")
    if not sha:
        return Done()
    row = site_rollout_of(run)
    if row.state == SiteRolloutState.SKIPPED:
        return Done()  # it could not be reached: the revert waits in its repository for the site's return
    status = converge.sync_status(row)
    if status is not None and status.applied(sha):
        return Done()
    # A failing edge keeps retrying the revert: wait for it (until the run's deadline) rather than give up.
    detail = status.message if status is not None and status.failed_at(sha) else "not applied yet"
    return Wait(SYNC_POLL_SECONDS, f"waiting for the edge to apply the revert {sha[:12]}: {detail}")


def rollback_finished(run: WorkflowRun) -> None:
    """on_finish of a roll-back run: the site is `rolled_back` (or, skipped, says the revert waits in its
    repository), or keeps its state with why the roll back did not succeed; the driver is woken."""
    row = SiteRollout.objects.filter(pk=run.subject_id).first()
    if row is None:
        return
    if run.state == RunState.SUCCEEDED:
        if SiteRolloutState.ROLLED_BACK in SITE_ROLLOUT_TRANSITIONS[row.state]:
            move(row, SiteRolloutState.ROLLED_BACK)
        elif row.state == SiteRolloutState.SKIPPED and (run.context or {}).get("revert_revision"):
            note = "; the release was reverted in its repository, applied when the site is back"
            move(row, row.state, error=f"{row.error}{note}"[:2000])
    else:
        move(row, row.state, error=f"roll back {run.state}: {run.error}"[:2000])
    transaction.on_commit(lambda: wake_driver(row.rollout_id), robust=True)


ROLLBACK = register(
    Workflow(
        kind=ROLLBACK_KIND,
        steps=[
            site_io_step("revert", rollback_revert, max_attempts=8),
            site_io_step("sync", rollback_sync, max_attempts=10),
        ],
        deadline=dt.timedelta(hours=1),
        exclusive=True,
        on_finish=rollback_finished,
        description="puts one site's application folder back at the revision before the rollout",
    )
)
