"""Releases and rollouts: what an edge application is, which version of it goes where, and how far it got.

Rollout and RolloutWave keep one integer counter per site state (`n_<state>`), changed with
F()-expressions by rollouts.services whenever a SiteRollout changes state, so lists and progress bars
read counters and never count rows.
"""

from django.conf import settings
from django.db import models
from django_celery_beat.models import PeriodicTask

from rollouts.choices import DriftState, DryRunState, RolloutState, SiteRolloutState, SkipReason, WaveState
from rollouts.validators import (
    validate_dns_label,
    validate_image_reference,
    validate_json_object,
    validate_kind_list,
    validate_namespace_list,
)
from sites.models import Site
from sites.validators import validate_timezone

SITE_STATES: tuple[str, ...] = tuple(SiteRolloutState.values)
SKIP_REASONS: tuple[str, ...] = tuple(SkipReason.values)


def counter_field(state: str) -> str:
    """The counter column of a site state on Rollout and RolloutWave."""
    return f"n_{state}"


def skip_counter_field(reason: str) -> str:
    """The counter column of skipped sites with this SkipReason (they add up to n_skipped)."""
    return f"n_skipped_{reason}"


class SiteCounters(models.Model):
    """One counter per SiteRollout state, and the skipped ones split by why. Changed only by
    rollouts.services (F()-expressions). `n_failed` is what the failure threshold counts."""

    n_pending = models.PositiveIntegerField(default=0)
    n_waiting_window = models.PositiveIntegerField(default=0)
    n_committing = models.PositiveIntegerField(default=0)
    n_syncing = models.PositiveIntegerField(default=0)
    n_verifying = models.PositiveIntegerField(default=0)
    n_unreachable = models.PositiveIntegerField(default=0, help_text="in flight, but the site does not answer")
    n_succeeded = models.PositiveIntegerField(default=0)
    n_failed = models.PositiveIntegerField(default=0)
    n_rolled_back = models.PositiveIntegerField(default=0)
    n_skipped = models.PositiveIntegerField(default=0)
    n_skipped_unreachable = models.PositiveIntegerField(default=0, help_text="skipped: could not be reached")
    n_skipped_not_started = models.PositiveIntegerField(default=0, help_text="skipped: never started")
    n_skipped_cancelled = models.PositiveIntegerField(default=0, help_text="skipped: stopped by a cancel")
    n_skipped_by_person = models.PositiveIntegerField(default=0, help_text="skipped: by a person, with a reason")

    class Meta:
        abstract = True

    @property
    def counts(self) -> dict[str, int]:
        """`{"<site state>": n}` for every site state, zeros included."""
        return {state: getattr(self, counter_field(state)) for state in SITE_STATES}

    @property
    def skipped_counts(self) -> dict[str, int]:
        """`{"<skip reason>": n}` for every SkipReason: which skipped sites could not be reached and which
        were never started (or stopped by a cancel)."""
        return {reason: getattr(self, skip_counter_field(reason)) for reason in SKIP_REASONS}

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def done(self) -> int:
        return self.n_succeeded + self.n_failed + self.n_rolled_back + self.n_skipped


class Application(models.Model):
    """An edge application: its owning team, the namespace it lives in, whether it holds data to re-hydrate.

    A stateful application with a `restore_image` is restored on a replacement machine by a Job running
    that image in the application's namespace (rollouts.restore gives sites these restore targets): the
    edge reports where its backups are, never what restores them.
    """

    name = models.CharField(
        max_length=63, unique=True, validators=[validate_dns_label], help_text="also the repository folder apps/<name>/"
    )
    team = models.CharField(max_length=100, help_text="the owning team")
    namespace = models.CharField(max_length=63, validators=[validate_dns_label], db_index=True)
    stateful = models.BooleanField(
        default=False, help_text="its data is restored from the latest cloud backup when a machine is replaced"
    )
    restore_image = models.CharField(
        max_length=500,
        blank=True,
        validators=[validate_image_reference],
        help_text="the image (with a tag or digest) that restores its backup on a replacement machine; "
        "a stateful application without one is not restored",
    )
    extra_namespaces = models.JSONField(
        default=list, blank=True, validators=[validate_namespace_list], help_text="other namespaces it may write to"
    )
    allowed_cluster_kinds = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_kind_list],
        help_text='cluster-scoped kinds its manifests may contain, e.g. ["ClusterRole"]',
    )
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def namespaces(self) -> list[str]:
        """Every namespace its manifests may use: its own first."""
        return [self.namespace, *self.extra_namespaces]


class Release(models.Model):
    """A version of an application: Jinja2 manifest templates (rendered per site, see rollouts.rendering)
    and values. Immutable once `locked_at` is set, which the first rollout using it does."""

    application = models.ForeignKey(Application, on_delete=models.PROTECT, related_name="releases")
    version = models.CharField(max_length=64)
    templates = models.JSONField(validators=[validate_json_object], help_text='{"<path>.yaml": "<template>"}')
    values = models.JSONField(default=dict, blank=True, validators=[validate_json_object])
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # With created_by, the release's authors: neither may approve a rollout of it under the two-person rule.
    last_edited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="who last changed its templates or values",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    locked_at = models.DateTimeField(null=True, blank=True, help_text="set when a rollout first used it")

    class Meta:
        ordering = ["application__name", "-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["application", "version"], name="release_version_unique_per_application")
        ]

    def __str__(self) -> str:
        return f"{self.application.name} {self.version}"

    @property
    def locked(self) -> bool:
        return self.locked_at is not None


class RolloutPlan(models.Model):
    """How a release goes out: to which sites, in which waves, how fast, with which safety gates, when.

    `target`: {"all": true} | {"labels": "<selector>"} | {"sites": ["<code>", ...]}.
    `waves`: a list of {"name"?, "sites": [codes]} | {"name"?, "percent": 1-100} | {"name"?, "count": n};
    percent and count are *cumulative*: see rollouts.planning for the exact rules.
    `failure_threshold`: {"percent": 0-100} | {"count": n}, the most failed sites a wave tolerates.
    `cron` (five fields, in `timezone`) and/or `start_at` keep a django-celery-beat PeriodicTask in step.
    """

    name = models.CharField(max_length=100, unique=True)
    release = models.ForeignKey(Release, on_delete=models.PROTECT, related_name="plans")
    target = models.JSONField(default=dict)
    waves = models.JSONField(default=list)
    max_parallel = models.PositiveIntegerField(default=10)
    failure_threshold = models.JSONField(default=dict)
    bake_seconds = models.PositiveIntegerField(default=0)
    require_approval = models.BooleanField(
        default=False,
        help_text="a person approves each wave after the first (with FLEET_ROLLOUT_APPROVAL_POLICY on: every "
        "wave, the first included, unless the plan is low-risk)",
    )
    two_person_rule = models.BooleanField(
        default=False,
        help_text="the approver is none of: who started it, the plan's last editor, the release's authors",
    )
    low_risk = models.BooleanField(
        default=False,
        help_text="exempt from FLEET_ROLLOUT_APPROVAL_POLICY; only with rollouts.mark_low_risk, and cleared by any "
        "later change to the plan or its release",
    )
    low_risk_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )
    low_risk_at = models.DateTimeField(null=True, blank=True, editable=False)
    respect_windows = models.BooleanField(default=True, help_text="change a site only in its maintenance window")
    auto_rollback = models.BooleanField(default=False, help_text="roll back every touched site when halted")
    start_at = models.DateTimeField(null=True, blank=True)
    cron = models.CharField(max_length=100, blank=True, help_text="minute hour day-of-month month day-of-week")
    timezone = models.CharField(max_length=64, default="UTC", validators=[validate_timezone], help_text="of the cron")
    site_deadline_seconds = models.PositiveIntegerField(
        default=6 * 3600,
        help_text="how long a started site may take; then it fails if it was reached, else it is skipped",
    )
    progress_deadline_seconds = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="a site fails when a Deployment of the release makes no progress this long "
        "(empty: each Deployment's own progressDeadlineSeconds, Kubernetes' default 600)",
    )
    min_success_seconds = models.PositiveIntegerField(
        default=0, help_text="a site counts as succeeded only after staying healthy this long"
    )
    allow_unreachable_waves = models.BooleanField(
        default=False,
        help_text="a wave whose every site was skipped (none reached) counts as passed instead of halting",
    )
    periodic_task = models.OneToOneField(
        PeriodicTask, null=True, blank=True, editable=False, on_delete=models.SET_NULL, related_name="+"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    last_edited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        editable=False,
        help_text="who last created or changed the plan (may not approve its rollouts under the two-person rule)",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        permissions = [("mark_low_risk", "Can mark a rollout plan low-risk (no approval gates)")]

    def __str__(self) -> str:
        return self.name


class Rollout(SiteCounters):
    """One execution of a plan. Wave membership is computed once at start and stored (RolloutWave, SiteRollout)."""

    plan = models.ForeignKey(RolloutPlan, on_delete=models.PROTECT, related_name="rollouts")
    release = models.ForeignKey(Release, on_delete=models.PROTECT, related_name="rollouts")
    state = models.CharField(max_length=20, choices=RolloutState.choices, default=RolloutState.RUNNING)
    current_wave = models.PositiveIntegerField(default=0, help_text="index of the wave in progress")
    plan_snapshot = models.JSONField(default=dict, help_text="the plan's settings as they were at start")
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    started_by_name = models.CharField(max_length=150, blank=True, help_text="user name or system:<component>")
    started_at = models.DateTimeField(null=True, blank=True)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    finished_at = models.DateTimeField(null=True, blank=True)
    halted_reason = models.CharField(max_length=500, blank=True)
    rollback_requested_at = models.DateTimeField(null=True, blank=True)
    rollback_requested_by = models.CharField(max_length=150, blank=True)
    rollback_reason = models.CharField(max_length=500, blank=True)
    state_changed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["state", "-id"], name="rollout_state_idx")]
        permissions = [
            ("start_rollout", "Can start a rollout of a plan"),
            ("approve_rollout", "Can approve the next wave of a rollout"),
        ]

    def __str__(self) -> str:
        return f"rollout {self.pk} of {self.plan_id and self.plan.name}"


class RolloutWave(SiteCounters):
    """One wave of a rollout, with its own counters, bake deadline and approval."""

    rollout = models.ForeignKey(Rollout, on_delete=models.CASCADE, related_name="waves")
    index = models.PositiveIntegerField()
    name = models.CharField(max_length=100)
    size = models.PositiveIntegerField()
    state = models.CharField(max_length=10, choices=WaveState.choices, default=WaveState.PENDING)
    opened_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    bake_until = models.DateTimeField(null=True, blank=True)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    approved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["rollout", "index"]
        constraints = [models.UniqueConstraint(fields=["rollout", "index"], name="rollout_wave_index_unique")]

    def __str__(self) -> str:
        return f"wave {self.index} ({self.name})"


class SiteRollout(models.Model):
    """One site in one rollout: its wave, its state, the revisions before and after, the edge's error."""

    rollout = models.ForeignKey(Rollout, on_delete=models.CASCADE, related_name="site_rollouts")
    wave = models.ForeignKey(RolloutWave, on_delete=models.CASCADE, related_name="site_rollouts")
    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="rollouts")
    position = models.PositiveIntegerField(help_text="order within the rollout, as planned")
    state = models.CharField(max_length=16, choices=SiteRolloutState.choices, default=SiteRolloutState.PENDING)
    previous_revision = models.CharField(max_length=64, blank=True)
    revision = models.CharField(max_length=64, blank=True)
    error = models.TextField(blank=True, help_text="why it failed or was skipped: a sentence for people")
    skip_reason = models.CharField(
        max_length=12, choices=SkipReason.choices, blank=True, help_text="when skipped: unreachable or never started"
    )
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    unreachable_since = models.DateTimeField(
        null=True, blank=True, help_text="since when the site has not answered (state unreachable)"
    )
    # The run driving the site now: the forward `rollout.site` run, then a `rollout.site_rollback` run.
    workflow_run = models.ForeignKey(
        "workflows.WorkflowRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["rollout", "position"]
        constraints = [models.UniqueConstraint(fields=["rollout", "site"], name="site_rollout_unique_site")]
        indexes = [
            models.Index(fields=["rollout", "state", "position"], name="site_rollout_state_idx"),
            models.Index(fields=["rollout", "wave", "position"], name="site_rollout_wave_idx"),
            # The driver's reads: a wave's sites in one state, in planned order (rollouts.selectors).
            models.Index(fields=["wave", "state", "position"], name="site_rollout_wave_state_idx"),
            models.Index(fields=["site", "state"], name="site_rollout_site_idx"),
            # The planned order; "-rollout" as the lists order by it (Rollout orders by -id) before the position.
            models.Index(fields=["-rollout", "position"], name="site_rollout_position_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.site_id and self.site.code} in rollout {self.rollout_id}"


class SiteSyncState(models.Model):
    """The last drift check of one site: its repository head, what its GitOps agent applied, and whether
    they agree. Kept here (not on Site) so the check owns its rows; one row per site, upserted."""

    site = models.OneToOneField(Site, on_delete=models.CASCADE, related_name="sync_state")
    state = models.CharField(max_length=12, choices=DriftState.choices, default=DriftState.UNKNOWN, db_index=True)
    head_revision = models.CharField(max_length=64, blank=True, help_text="main of the site's repository")
    applied_revision = models.CharField(max_length=64, blank=True, help_text="lastAppliedRevision at the edge")
    message = models.CharField(max_length=500, blank=True, help_text="the edge's status, or why it could not be read")
    checked_at = models.DateTimeField(null=True, blank=True, db_index=True)
    drifted_since = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["site__code"]
        verbose_name = "site drift"
        verbose_name_plural = "site drift"

    def __str__(self) -> str:
        return f"{self.site_id and self.site.code}: {self.state}"


class DryRun(models.Model):
    """One dry run of a rollout plan (rollouts.dry_runs): which sites would go in which wave if it started
    at `at`, when each site's window opens, and whether the release renders at every targeted site
    within the renderer's limits. A `rollout.dry_run` workflow run works it out in the background;
    `result` is filled when it succeeds, `error` names the site and the reason when it fails.

    Starting one needs `rollouts.add_dryrun`; reading a plan's dry runs, `rollouts.view_rolloutplan`.
    """

    plan = models.ForeignKey(RolloutPlan, on_delete=models.CASCADE, related_name="dry_runs")
    release = models.ForeignKey(Release, on_delete=models.CASCADE, related_name="+")
    run = models.OneToOneField(
        "workflows.WorkflowRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    state = models.CharField(max_length=16, choices=DryRunState.choices, default=DryRunState.RUNNING)
    at = models.DateTimeField(help_text="when the rollout would start")
    total_sites = models.PositiveIntegerField(default=0)
    rendered_sites = models.PositiveIntegerField(default=0)
    result = models.JSONField(default=dict, blank=True, help_text="waves, sites and windows (when succeeded)")
    error = models.TextField(blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    requested_by_name = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["plan", "-id"], name="dry_run_plan_idx")]

    def __str__(self) -> str:
        return f"dry run {self.pk} of {self.plan_id and self.plan.name}"
