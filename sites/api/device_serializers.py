"""Shapes of the device API (what machines send and receive) and of bootstrap tokens and backups as staff
see them. Input serializers check shapes, types and sizes; sites.devices decides what is allowed."""

import datetime as dt
import json
from typing import Any

from django.core.exceptions import ValidationError
from django.utils import timezone
from rest_framework import serializers

from sites.devices import DEFAULT_BOOTSTRAP_LIFETIME, MAX_BOOTSTRAP_LIFETIME, MAX_SERIALS_PER_TOKEN
from sites.heartbeats import MAX_BACKUPS_PER_HEARTBEAT, latest_acceptable_taken_at
from sites.models import Backup, BootstrapToken
from sites.validators import normalize_mac

MAX_FACTS_BYTES = 16 * 1024
MAX_VERSIONS = 100


def _check_json_size(value: Any, limit: int, what: str) -> Any:
    if len(json.dumps(value)) > limit:
        raise serializers.ValidationError(f"{what} is larger than {limit // 1024} KiB")
    return value


# --- machines ----------------------------------------------------------------------------------------------


class DeviceRegisterSerializer(serializers.Serializer):
    serial = serializers.CharField(max_length=64)
    mac = serializers.CharField(max_length=32)
    bootstrap_token = serializers.CharField(max_length=200)
    facts = serializers.DictField(required=False, default=dict, help_text="hardware facts: cpus, memory_mb, model")

    def validate_mac(self, value: str) -> str:
        try:
            return normalize_mac(value)
        except ValidationError as exc:
            raise serializers.ValidationError(exc.messages[0]) from exc

    def validate_facts(self, value: dict[str, Any]) -> dict[str, Any]:
        return _check_json_size(value, MAX_FACTS_BYTES, "facts")


class K3sJoinSerializer(serializers.Serializer):
    server_url = serializers.CharField()
    token = serializers.CharField()
    node_name = serializers.CharField()
    node_labels = serializers.ListField(child=serializers.CharField(), help_text='"key=value" strings')


class DeviceRegisteredSerializer(serializers.Serializer):
    node_id = serializers.IntegerField()
    node_token = serializers.CharField(help_text="send as `Authorization: Node <node_token>`; shown only here")
    hostname = serializers.CharField()
    role = serializers.CharField()
    site = serializers.CharField()
    k3s = K3sJoinSerializer()


class BackupReportSerializer(serializers.Serializer):
    application = serializers.CharField(max_length=100)
    namespace = serializers.CharField(max_length=63)
    taken_at = serializers.DateTimeField(input_formats=["iso-8601"])
    location = serializers.CharField(max_length=1000)
    size = serializers.IntegerField(min_value=0, max_value=2**62)
    restore_image = serializers.CharField(
        max_length=500,
        required=False,
        allow_blank=True,
        default="",
        help_text="accepted and ignored: the control plane restores with the application's own restore image",
    )

    def validate_taken_at(self, value: dt.datetime) -> dt.datetime:
        now = timezone.now()
        if value > latest_acceptable_taken_at(now):
            raise serializers.ValidationError(
                f"{value.isoformat()} is in the future (server time {now.isoformat()}); check the machine's clock"
            )
        return value


class HeartbeatSerializer(serializers.Serializer):
    versions = serializers.DictField(
        child=serializers.CharField(max_length=200, allow_blank=True), required=False, help_text="component: version"
    )
    backups = serializers.ListField(
        child=BackupReportSerializer(), required=False, default=list, max_length=MAX_BACKUPS_PER_HEARTBEAT
    )

    def validate_versions(self, value: dict[str, str]) -> dict[str, str]:
        if len(value) > MAX_VERSIONS:
            raise serializers.ValidationError(f"at most {MAX_VERSIONS} entries")
        if any(len(key) > 100 for key in value):
            raise serializers.ValidationError("component names are at most 100 characters")
        return value


class HeartbeatAnswerSerializer(serializers.Serializer):
    node_id = serializers.IntegerField()
    state = serializers.CharField(help_text="the node's lifecycle state as the control plane sees it")
    server_time = serializers.DateTimeField()
    backups_kept = serializers.IntegerField(help_text="reported backups recorded")
    backups_ignored = serializers.DictField(
        child=serializers.CharField(), help_text="application: why its backups were not recorded"
    )


# --- staff -------------------------------------------------------------------------------------------------


class BootstrapTokenSerializer(serializers.ModelSerializer):
    """A token as staff see it: never the secret, only its prefix and state."""

    site: serializers.SlugRelatedField = serializers.SlugRelatedField(slug_field="code", read_only=True)
    state = serializers.CharField(read_only=True)
    created_by: serializers.StringRelatedField = serializers.StringRelatedField()
    revoked_by: serializers.StringRelatedField = serializers.StringRelatedField()
    used_by = serializers.SerializerMethodField()

    class Meta:
        model = BootstrapToken
        fields = [
            "id",
            "site",
            "prefix",
            "state",
            "note",
            "serials",
            "any_serial",
            "created_at",
            "created_by",
            "expires_at",
            "used_at",
            "used_by",
            "revoked_at",
            "revoked_by",
            "revoke_reason",
            "refusals",
            "quarantines",
        ]
        read_only_fields = fields

    def get_used_by(self, token: BootstrapToken) -> str | None:
        return token.used_by.serial if token.used_by else None


class BootstrapTokenIssueSerializer(serializers.Serializer):
    lifetime_hours = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=int(MAX_BOOTSTRAP_LIFETIME.total_seconds() // 3600),
        help_text=f"default {int(DEFAULT_BOOTSTRAP_LIFETIME.total_seconds() // 3600)}",
    )
    note = serializers.CharField(required=False, allow_blank=True, max_length=200, default="")
    serials = serializers.ListField(
        child=serializers.CharField(max_length=64),
        required=False,
        allow_empty=False,
        max_length=MAX_SERIALS_PER_TOKEN,
        help_text="the machines it may register (each pre-registered at the site); default: the site's machines "
        "waiting to register",
    )
    any_serial = serializers.BooleanField(
        required=False,
        default=False,
        help_text="a site-wide token any machine of the site may use (needs sites.issue_any_serial_bootstraptoken)",
    )


class BootstrapTokenIssuedSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    token = serializers.CharField(help_text="the secret, shown in this answer only")
    prefix = serializers.CharField()
    expires_at = serializers.DateTimeField()
    site = serializers.CharField()
    serials = serializers.ListField(child=serializers.CharField(), help_text="the machines it may register")
    any_serial = serializers.BooleanField()


class BackupSerializer(serializers.ModelSerializer):
    site: serializers.SlugRelatedField = serializers.SlugRelatedField(slug_field="code", read_only=True)
    reported_by = serializers.SerializerMethodField()

    class Meta:
        model = Backup
        fields = [
            "id",
            "site",
            "application",
            "namespace",
            "taken_at",
            "location",
            "size",
            "reported_by",
            "reported_at",
        ]
        read_only_fields = fields

    def get_reported_by(self, backup: Backup) -> str | None:
        return backup.reported_by.hostname if backup.reported_by else None
