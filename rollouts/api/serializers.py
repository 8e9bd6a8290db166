"""Shapes of applications, releases, plans and rollouts in the API. Input serializers check shapes and
types only; the services decide what is allowed."""

from rest_framework import serializers

from fleet.api.fields import BoundedJSONField, bounded_integer, username_of
from rollouts.models import Application, Release, Rollout, RolloutPlan, RolloutWave, SiteRollout, SiteSyncState
from rollouts.planning import PLAN_NUMBER_RANGES
from rollouts.services import APPLICATION_FIELDS, PLAN_FIELDS, RELEASE_FIELDS


# Shared declared fields (comments, not docstrings: a docstring would become the schema's description of
# every serializer that has none of its own).
class _Counted(serializers.Serializer):
    # The site counters of a rollout or a wave (rollouts.models.SiteCounters).

    counts = serializers.DictField(child=serializers.IntegerField(), read_only=True)
    skipped = serializers.DictField(
        source="skipped_counts",
        child=serializers.IntegerField(),
        read_only=True,
        help_text="skipped sites by reason: unreachable, not_started, cancelled (failed ones are in counts)",
    )


class _OfRelease(serializers.Serializer):
    # What a plan or a rollout rolls out, by name.

    application = serializers.CharField(source="release.application.name", read_only=True)
    release_version = serializers.CharField(source="release.version", read_only=True)


class ApplicationSerializer(serializers.ModelSerializer):
    class Meta:
        model = Application
        fields = [
            "id",
            *APPLICATION_FIELDS,
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class ApplicationWriteSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=63)
    team = serializers.CharField(max_length=100)
    namespace = serializers.CharField(max_length=63)
    stateful = serializers.BooleanField(required=False)
    restore_image = serializers.CharField(required=False, allow_blank=True, max_length=500)
    extra_namespaces = BoundedJSONField(required=False)
    allowed_cluster_kinds = BoundedJSONField(required=False)
    description = serializers.CharField(required=False, allow_blank=True)


class ReleaseSerializer(serializers.ModelSerializer):
    application_name = serializers.CharField(source="application.name", read_only=True)
    created_by = username_of("created_by")
    locked = serializers.BooleanField(read_only=True)

    class Meta:
        model = Release
        fields = [
            "id",
            "application",
            "application_name",
            *RELEASE_FIELDS,
            "created_by",
            "created_at",
            "locked_at",
            "locked",
        ]
        read_only_fields = fields


class ReleaseWriteSerializer(serializers.Serializer):
    application = serializers.PrimaryKeyRelatedField(queryset=Application.objects.all())
    version = serializers.CharField(max_length=64)
    templates = BoundedJSONField()
    values = BoundedJSONField(required=False)


class RolloutPlanSerializer(_OfRelease, serializers.ModelSerializer):
    created_by = username_of("created_by")
    last_edited_by = username_of("last_edited_by")
    low_risk_by = username_of("low_risk_by")

    class Meta:
        model = RolloutPlan
        fields = [
            "id",
            *PLAN_FIELDS,
            "application",
            "release_version",
            "low_risk_by",
            "low_risk_at",
            "created_by",
            "last_edited_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


def _plan_number(name: str) -> serializers.IntegerField:
    low, high = PLAN_NUMBER_RANGES[name]
    return bounded_integer(min_value=low, max_value=high, required=False)


class RolloutPlanWriteSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    release = serializers.PrimaryKeyRelatedField(queryset=Release.objects.all())
    target = BoundedJSONField()
    waves = BoundedJSONField()
    max_parallel = _plan_number("max_parallel")
    failure_threshold = BoundedJSONField()
    bake_seconds = _plan_number("bake_seconds")
    require_approval = serializers.BooleanField(required=False)
    two_person_rule = serializers.BooleanField(required=False)
    low_risk = serializers.BooleanField(
        required=False, help_text="no approval gates under the approval policy; needs rollouts.mark_low_risk"
    )
    respect_windows = serializers.BooleanField(required=False)
    auto_rollback = serializers.BooleanField(required=False)
    start_at = serializers.DateTimeField(required=False, allow_null=True)
    cron = serializers.CharField(required=False, allow_blank=True, allow_null=True, max_length=100)
    timezone = serializers.CharField(required=False, max_length=64)
    site_deadline_seconds = _plan_number("site_deadline_seconds")
    progress_deadline_seconds = bounded_integer(
        min_value=PLAN_NUMBER_RANGES["progress_deadline_seconds"][0],
        max_value=PLAN_NUMBER_RANGES["progress_deadline_seconds"][1],
        required=False,
        allow_null=True,
        help_text="a site fails when a Deployment makes no progress this long (null: each Deployment's own)",
    )
    min_success_seconds = bounded_integer(
        min_value=PLAN_NUMBER_RANGES["min_success_seconds"][0],
        max_value=PLAN_NUMBER_RANGES["min_success_seconds"][1],
        required=False,
        help_text="a site counts as succeeded only after staying healthy this long",
    )
    allow_unreachable_waves = serializers.BooleanField(
        required=False, help_text="a wave whose every site was skipped passes instead of halting"
    )

    def validate_cron(self, value: str | None) -> str:
        return (value or "").strip()


class DryRunSerializer(serializers.Serializer):
    at = serializers.DateTimeField(required=False, help_text="when the rollout would start (default: now)")


class WaveSerializer(_Counted, serializers.ModelSerializer):
    approved_by = username_of("approved_by")

    class Meta:
        model = RolloutWave
        fields = [
            "index",
            "name",
            "size",
            "state",
            "counts",
            "skipped",
            "opened_at",
            "closed_at",
            "bake_until",
            "approved_by",
            "approved_at",
        ]
        read_only_fields = fields


class RolloutSerializer(_Counted, _OfRelease, serializers.ModelSerializer):
    plan_name = serializers.CharField(source="plan.name", read_only=True)
    total = serializers.IntegerField(read_only=True)
    waves = WaveSerializer(many=True, read_only=True)
    started_by = serializers.CharField(source="started_by_name", read_only=True)
    approved_by = username_of("approved_by")
    rollback_requested = serializers.SerializerMethodField()

    class Meta:
        model = Rollout
        fields = [
            "id",
            "plan",
            "plan_name",
            "release",
            "application",
            "release_version",
            "state",
            "current_wave",
            "counts",
            "skipped",
            "total",
            "waves",
            "started_by",
            "started_at",
            "approved_by",
            "finished_at",
            "halted_reason",
            "rollback_requested",
            "rollback_requested_at",
        ]
        read_only_fields = fields

    def get_rollback_requested(self, rollout: Rollout) -> bool:
        return rollout.rollback_requested_at is not None


class SiteRolloutSerializer(serializers.ModelSerializer):
    site: serializers.SlugRelatedField = serializers.SlugRelatedField(slug_field="code", read_only=True)
    wave = serializers.IntegerField(source="wave.index", read_only=True)
    wave_name = serializers.CharField(source="wave.name", read_only=True)

    class Meta:
        model = SiteRollout
        fields = [
            "site",
            "wave",
            "wave_name",
            "state",
            "skip_reason",
            "revision",
            "previous_revision",
            "error",
            "started_at",
            "finished_at",
            "workflow_run_id",
        ]
        read_only_fields = fields


class RolloutActionSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, max_length=500, default="")


class DriftSerializer(serializers.ModelSerializer):
    """One site's last drift check: repository head against the revision its agent applied."""

    site = serializers.CharField(source="site.code", read_only=True)
    region = serializers.CharField(source="site.region", read_only=True)

    class Meta:
        model = SiteSyncState
        fields = [
            "site",
            "region",
            "state",
            "head_revision",
            "applied_revision",
            "message",
            "checked_at",
            "drifted_since",
        ]
        read_only_fields = fields
