"""Shapes of workflow runs in the API: a run with its step timeline, and the cancel request."""

from typing import Any

from rest_framework import serializers

from fleet.workflows import selectors
from fleet.workflows.models import StepRun, WorkflowRun

# Context keys that may hold secrets (tokens, join configs) are never shown; a step that must keep a
# secret in the context should name it accordingly (or start it with an underscore).
SECRET_MARKERS = ("secret", "token", "password", "credential", "kubeconfig", "private")


def public_context(context: dict[str, Any]) -> dict[str, Any]:
    """The context with secret-looking keys masked, at any depth."""
    shown: dict[str, Any] = {}
    for key, value in context.items():
        lowered = str(key).lower()
        if lowered.startswith("_") or any(marker in lowered for marker in SECRET_MARKERS):
            shown[key] = "********"
        elif isinstance(value, dict):
            shown[key] = public_context(value)
        else:
            shown[key] = value
    return shown


class StepRunSerializer(serializers.ModelSerializer):
    """One row of a run's timeline. A waiting row stands for `polls` consecutive waits of the step, from
    `started_at` (the first poll) to `finished_at` (the last), with the last poll's message."""

    name = serializers.CharField(source="step")
    duration_seconds = serializers.SerializerMethodField()

    class Meta:
        model = StepRun
        fields = [
            "name",
            "state",
            "attempt",
            "started_at",
            "finished_at",
            "message",
            "error",
            "polls",
            "duration_seconds",
        ]
        read_only_fields = fields

    def get_duration_seconds(self, step: StepRun) -> float | None:
        """From the start of the attempt (the first poll) to its end (the last poll), in seconds."""
        if step.started_at is None or step.finished_at is None:
            return None
        return round((step.finished_at - step.started_at).total_seconds(), 3)


class WorkflowRunSerializer(serializers.ModelSerializer):
    subject = serializers.CharField(source="subject_repr")
    created_by = serializers.CharField(source="created_by_repr")
    steps = StepRunSerializer(many=True, read_only=True)

    class Meta:
        model = WorkflowRun
        fields = [
            "id",
            "kind",
            "state",
            "subject",
            "subject_type",
            "subject_id",
            "exclusive_key",
            "current_step",
            "attempt",
            "error",
            "cancel_requested",
            "cancel_reason",
            "wake_at",
            "deadline",
            "created_by",
            "created_at",
            "started_at",
            "finished_at",
            "updated_at",
            "steps",
        ]
        read_only_fields = fields

    def to_representation(self, instance: WorkflowRun) -> dict[str, Any]:
        # Not a declared field: `context` is the serializer's own attribute.
        data = dict(super().to_representation(instance))
        data["context"] = public_context(instance.context or {})
        return data


def run_shape(run: WorkflowRun) -> dict[str, Any]:
    """The run as the API shows it, read again with its timeline: what other apps' views answer with
    after starting a run (202)."""
    return dict(WorkflowRunSerializer(selectors.run_list().get(pk=run.pk)).data)


class CancelSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=2000, help_text="why (kept in the audit log and on the run)")
