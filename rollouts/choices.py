"""States of rollouts, their waves and their sites, the transitions each state machine allows, and the
kinds of the rollout workflows."""

from django.db import models


class RolloutState(models.TextChoices):
    SCHEDULED = "scheduled", "Scheduled"
    RUNNING = "running", "Running"
    PAUSED = "paused", "Paused"
    AWAITING_APPROVAL = "awaiting_approval", "Awaiting approval"
    HALTED = "halted", "Halted"
    SUCCEEDED = "succeeded", "Succeeded"
    CANCELLED = "cancelled", "Cancelled"
    ROLLED_BACK = "rolled_back", "Rolled back"


# Which states a rollout may move to from each state; every change goes through
# rollouts.services, which checks this table. A halted rollout is not resumed: its failures exceeded
# the plan's threshold, so it is rolled back or cancelled, and a new rollout is started once fixed.
ROLLOUT_TRANSITIONS: dict[str, frozenset[str]] = {
    RolloutState.SCHEDULED: frozenset({RolloutState.RUNNING, RolloutState.PAUSED, RolloutState.CANCELLED}),
    RolloutState.RUNNING: frozenset(
        {
            RolloutState.PAUSED,
            RolloutState.AWAITING_APPROVAL,
            RolloutState.HALTED,
            RolloutState.SUCCEEDED,
            RolloutState.CANCELLED,
            RolloutState.ROLLED_BACK,
        }
    ),
    RolloutState.PAUSED: frozenset(
        {RolloutState.RUNNING, RolloutState.CANCELLED, RolloutState.HALTED, RolloutState.ROLLED_BACK}
    ),
    RolloutState.AWAITING_APPROVAL: frozenset(
        {RolloutState.RUNNING, RolloutState.PAUSED, RolloutState.CANCELLED, RolloutState.ROLLED_BACK}
    ),
    RolloutState.HALTED: frozenset({RolloutState.CANCELLED, RolloutState.ROLLED_BACK}),
    RolloutState.SUCCEEDED: frozenset({RolloutState.ROLLED_BACK}),
    RolloutState.CANCELLED: frozenset({RolloutState.ROLLED_BACK}),
    RolloutState.ROLLED_BACK: frozenset(),
}

# Rollouts that still hold their sites: another rollout into the same namespace may not touch them.
ROLLOUT_ACTIVE_STATES = frozenset(
    {
        RolloutState.SCHEDULED,
        RolloutState.RUNNING,
        RolloutState.PAUSED,
        RolloutState.AWAITING_APPROVAL,
        RolloutState.HALTED,
    }
)
ROLLOUT_FINISHED_STATES = frozenset({RolloutState.SUCCEEDED, RolloutState.CANCELLED, RolloutState.ROLLED_BACK})
# States from which a roll back may be requested (the workflow carries it out, then -> rolled_back).
ROLLOUT_ROLLBACK_STATES = frozenset(
    s for s, targets in ROLLOUT_TRANSITIONS.items() if RolloutState.ROLLED_BACK in targets
)


class WaveState(models.TextChoices):
    PENDING = "pending", "Pending"
    OPEN = "open", "Open"
    CLOSED = "closed", "Closed"
    HALTED = "halted", "Halted"


class SiteRolloutState(models.TextChoices):
    PENDING = "pending", "Pending"
    WAITING_WINDOW = "waiting_window", "Waiting for its window"
    COMMITTING = "committing", "Committing"
    SYNCING = "syncing", "Syncing"
    VERIFYING = "verifying", "Verifying"
    # In flight, but the site's cluster does not answer (since SiteRollout.unreachable_since): counted
    # apart from syncing, never healthy; skipped as unreachable at its deadline unless it answers again.
    UNREACHABLE = "unreachable", "Waiting: unreachable"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    ROLLED_BACK = "rolled_back", "Rolled back"
    SKIPPED = "skipped", "Skipped"


class SkipReason(models.TextChoices):
    """Why a site was skipped. A skipped site never counts against the failure threshold: the release
    was not judged there (a site that was reached and is not healthy with the release is `failed`)."""

    UNREACHABLE = "unreachable", "Could not be reached"
    NOT_STARTED = "not_started", "Never started"
    CANCELLED = "cancelled", "Stopped by a cancel"
    BY_PERSON = "by_person", "Skipped by a person"


# Skipped sites whose repository may hold the release (a commit was or may have been pushed before the
# site went out of reach or was stopped): a roll back reverts them too.
SKIP_MAY_HOLD_RELEASE = frozenset({SkipReason.UNREACHABLE, SkipReason.CANCELLED, SkipReason.BY_PERSON})


SITE_ROLLOUT_TRANSITIONS: dict[str, frozenset[str]] = {
    SiteRolloutState.PENDING: frozenset(
        {SiteRolloutState.WAITING_WINDOW, SiteRolloutState.COMMITTING, SiteRolloutState.SKIPPED}
    ),
    SiteRolloutState.WAITING_WINDOW: frozenset(
        {SiteRolloutState.PENDING, SiteRolloutState.COMMITTING, SiteRolloutState.SKIPPED}
    ),
    # committing -> waiting_window: the site's window closed between the decision to start it and its
    # run's first step. committing -> rolled_back: a run cancelled for a roll back may have pushed.
    SiteRolloutState.COMMITTING: frozenset(
        {
            SiteRolloutState.WAITING_WINDOW,
            SiteRolloutState.SYNCING,
            SiteRolloutState.FAILED,
            SiteRolloutState.SKIPPED,
            SiteRolloutState.SUCCEEDED,
            SiteRolloutState.ROLLED_BACK,
        }
    ),
    # syncing -> succeeded: the edge applied the commit and the Deployments were available at once.
    SiteRolloutState.SYNCING: frozenset(
        {
            SiteRolloutState.VERIFYING,
            SiteRolloutState.UNREACHABLE,
            SiteRolloutState.SUCCEEDED,
            SiteRolloutState.FAILED,
            SiteRolloutState.SKIPPED,
            SiteRolloutState.ROLLED_BACK,
        }
    ),
    SiteRolloutState.VERIFYING: frozenset(
        {
            SiteRolloutState.UNREACHABLE,
            SiteRolloutState.SUCCEEDED,
            SiteRolloutState.FAILED,
            SiteRolloutState.SKIPPED,
            SiteRolloutState.ROLLED_BACK,
        }
    ),
    # unreachable -> syncing/verifying: the site answers again, back where it was.
    SiteRolloutState.UNREACHABLE: frozenset(
        {
            SiteRolloutState.SYNCING,
            SiteRolloutState.VERIFYING,
            SiteRolloutState.SUCCEEDED,
            SiteRolloutState.FAILED,
            SiteRolloutState.SKIPPED,
            SiteRolloutState.ROLLED_BACK,
        }
    ),
    SiteRolloutState.SUCCEEDED: frozenset({SiteRolloutState.ROLLED_BACK}),
    # failed -> pending: a person retries the site in the wave still open (rollouts.services.site_actions).
    SiteRolloutState.FAILED: frozenset({SiteRolloutState.PENDING, SiteRolloutState.ROLLED_BACK}),
    SiteRolloutState.ROLLED_BACK: frozenset(),
    SiteRolloutState.SKIPPED: frozenset(),
}

# A workflow run is driving the site: these take one of the plan's `max_parallel` slots.
SITE_IN_FLIGHT_STATES = frozenset(
    {SiteRolloutState.COMMITTING, SiteRolloutState.SYNCING, SiteRolloutState.VERIFYING, SiteRolloutState.UNREACHABLE}
)
# Not started yet (a site waiting for its maintenance window holds no slot).
SITE_NOT_STARTED_STATES = frozenset({SiteRolloutState.PENDING, SiteRolloutState.WAITING_WINDOW})
SITE_DONE_STATES = frozenset(
    {SiteRolloutState.SUCCEEDED, SiteRolloutState.FAILED, SiteRolloutState.ROLLED_BACK, SiteRolloutState.SKIPPED}
)
# Sites whose repository may hold the release (what an automatic roll back has to revert).
SITE_TOUCHED_STATES = frozenset({*SITE_IN_FLIGHT_STATES, SiteRolloutState.SUCCEEDED, SiteRolloutState.FAILED})


class DriftState(models.TextChoices):
    """How a site's applied revision compares with its repository head (the periodic drift check)."""

    IN_SYNC = "in_sync", "In sync"
    DRIFTED = "drifted", "Drifted"
    UNREACHABLE = "unreachable", "Unreachable"
    UNKNOWN = "unknown", "Unknown"


class DryRunState(models.TextChoices):
    """A dry run's state, kept in step with its workflow run (rollouts.dry_runs)."""

    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


# The kinds of the rollout workflows (rollouts/workflows/), named here beside the states they drive so
# that the services start a driver without importing the workflows, which call the services.
DRIVE_KIND = "rollout.drive"
SITE_KIND = "rollout.site"
ROLLBACK_KIND = "rollout.site_rollback"
