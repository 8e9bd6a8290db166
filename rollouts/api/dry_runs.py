"""The shape of a plan's dry run in the API (rollouts.dry_runs): `POST rollout-plans/{id}/dry-run/`
answers 202 with it; `GET` on the same address answers the latest one."""

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from rollouts.choices import DryRunState
from rollouts.models import DryRun


class PlanDryRunSerializer(serializers.ModelSerializer):
    """A dry run: its state, how far rendering got and, once it succeeded, the waves and each site's
    window (`result`, the shape the synchronous dry run used to answer); `error` names the site and the
    limit or problem when it failed. `run` is its workflow run (cancel it at workflow-runs/{run}/cancel/)."""

    progress = serializers.SerializerMethodField()
    result = serializers.SerializerMethodField()
    requested_by = serializers.CharField(source="requested_by_name")

    class Meta:
        model = DryRun
        fields = [
            "id",
            "plan",
            "release",
            "state",
            "at",
            "run",
            "progress",
            "error",
            "result",
            "requested_by",
            "created_at",
            "finished_at",
        ]
        read_only_fields = fields

    @extend_schema_field(
        {"type": "object", "properties": {"rendered": {"type": "integer"}, "total": {"type": "integer"}}}
    )
    def get_progress(self, dry_run: DryRun) -> dict[str, int]:
        return {"rendered": dry_run.rendered_sites, "total": dry_run.total_sites}

    @extend_schema_field({"type": "object", "nullable": True})
    def get_result(self, dry_run: DryRun) -> dict[str, Any] | None:
        return dry_run.result if dry_run.state == DryRunState.SUCCEEDED else None
