"""Shapes of sites, clusters and nodes in the API. Input serializers check shapes and types only;
the services decide what is allowed."""

from typing import Any

from rest_framework import serializers

from fleet.api.fields import BoundedJSONField
from fleet.workflows.api.serializers import WorkflowRunSerializer
from sites.choices import NodeRole, NodeState, SiteState
from sites.models import Cluster, Node, Site
from sites.services import NODE_FIELDS, SITE_FIELDS


class ClusterSerializer(serializers.ModelSerializer):
    """A cluster as the API shows it: never its credentials, only whether it has some."""

    has_credentials = serializers.BooleanField(read_only=True)
    has_join_token = serializers.SerializerMethodField()

    class Meta:
        model = Cluster
        fields = [
            "api_url",
            "has_credentials",
            "join_server_url",
            "has_join_token",
            "k3s_version",
            "reachability",
            "last_contact_at",
            "last_probe_at",
            "last_error",
            "last_error_detail",
            "failing_since",
            "sync_status",
            "updated_at",
        ]
        read_only_fields = fields

    def get_has_join_token(self, cluster: Cluster) -> bool:
        return bool(cluster.join_token_encrypted)


class ClusterCredentialsSerializer(serializers.Serializer):
    """Write-only: a kubeconfig, or an api_url with a bearer token (and optionally a CA); and/or the K3s
    join configuration registering machines receive (join_server_url, join_token). Credentials are inline
    data only (sites.kubeconfig): anything that would run a command or read a file is a 400."""

    CREDENTIAL_FIELDS = ("api_url", "kubeconfig", "token", "ca_data")

    api_url = serializers.CharField(
        required=False, allow_blank=False, max_length=500, help_text="https (http only outside production)"
    )
    kubeconfig = serializers.CharField(
        required=False,
        write_only=True,
        max_length=100_000,
        trim_whitespace=False,
        help_text="one cluster (server, certificate-authority-data), one user (token, or client-certificate-data "
        "with client-key-data) and one context; any other field (exec, auth-provider, tokenFile, file paths, "
        "proxy-url, impersonation, ...) is refused",
    )
    token = serializers.CharField(required=False, write_only=True, max_length=10_000)
    ca_data = serializers.CharField(
        required=False, write_only=True, max_length=100_000, allow_blank=True, help_text="PEM, or base64 of PEM"
    )
    insecure_skip_tls_verify = serializers.BooleanField(
        required=False, default=False, help_text="refused in production"
    )
    join_server_url = serializers.CharField(required=False, allow_blank=False, max_length=500)
    join_token = serializers.CharField(required=False, write_only=True, max_length=1000)


class SiteSerializer(serializers.ModelSerializer):
    cluster = ClusterSerializer(read_only=True)
    node_count = serializers.IntegerField(read_only=True)
    active_node_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = Site
        fields = [
            "code",
            *SITE_FIELDS,
            "state",
            "last_heartbeat_at",
            "last_applied_revision",
            "health",
            "health_since",
            "health_reason",
            "repo_head_revision",
            "drifted_since",
            "node_count",
            "active_node_count",
            "cluster",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class SiteWriteSerializer(serializers.Serializer):
    """Fields a client may set on a site: the code, SITE_FIELDS, the state (and why). Validation of values
    happens in the model's validators."""

    code = serializers.CharField(max_length=16)
    name = serializers.CharField(max_length=200)
    region = serializers.CharField(max_length=64)
    timezone = serializers.CharField(max_length=64)
    labels = BoundedJSONField(required=False)
    business_hours = BoundedJSONField(required=False)
    maintenance_windows = BoundedJSONField(required=False)
    repo_url = serializers.CharField(required=False, allow_blank=True, max_length=500)
    state = serializers.ChoiceField(choices=SiteState.choices, required=False)
    reason = serializers.CharField(required=False, allow_blank=True, max_length=500, write_only=True)


class NodeSerializer(serializers.ModelSerializer):
    site: serializers.SlugRelatedField = serializers.SlugRelatedField(slug_field="code", read_only=True)

    class Meta:
        model = Node
        fields = [
            "id",
            "serial",
            *NODE_FIELDS,
            "site",
            "state",
            "state_changed_at",
            "state_deadline",
            "state_reason",
            "last_seen_at",
            "last_heartbeat_at",
            "health",
            "health_since",
            "health_reason",
            "facts",
            "versions",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class NodeWriteSerializer(serializers.Serializer):
    """Fields a client may set on a node: the serial, the site, NODE_FIELDS, the state (and why)."""

    serial = serializers.CharField(max_length=64)
    site = serializers.SlugRelatedField(
        slug_field="code",
        queryset=Site.objects.all(),
        error_messages={"does_not_exist": "no site has code {value}"},
    )
    hostname = serializers.CharField(max_length=63)
    mac = serializers.CharField(max_length=32)
    role = serializers.ChoiceField(choices=NodeRole.choices, default=NodeRole.AGENT)
    hardware_model = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    state = serializers.ChoiceField(choices=NodeState.choices, required=False)
    reason = serializers.CharField(required=False, allow_blank=True, max_length=500, write_only=True)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not self.partial and "state" in attrs:
            raise serializers.ValidationError({"state": "a new node is always pre-registered; omit state"})
        return attrs


class ProbeAcceptedSerializer(serializers.Serializer):
    site = serializers.CharField()
    queued = serializers.BooleanField()


class RevokeCredentialsSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=500)


class RevokedCredentialsSerializer(serializers.Serializer):
    revoked = serializers.IntegerField(help_text="how many active credentials were revoked (0 or 1)")


class NodeProvisionSerializer(serializers.Serializer):
    """`{}`: provisioning needs nothing but the pre-registered node."""


class NodeWipeSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=500)
    confirm = serializers.CharField(max_length=63, help_text="the node's hostname, typed to confirm")
    rejoin = serializers.BooleanField(default=False, help_text="register again with a fresh token and be active")
    retire = serializers.BooleanField(default=False, help_text="retire the node once wiped (without rejoin)")


class NodeRetireSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=500)
    confirm = serializers.CharField(max_length=63, help_text="the node's hostname, typed to confirm")


class SiteOnboardSerializer(serializers.Serializer):
    """`{}`: onboarding needs nothing but the site (and the git host's settings)."""


class FirstBootTokenSerializer(serializers.Serializer):
    """The bootstrap token an onboarding issued for the site's machines waiting to register: shown once."""

    id = serializers.IntegerField()
    token = serializers.CharField(help_text="shown in this answer only: it goes on the machines' boot media")
    prefix = serializers.CharField()
    serials = serializers.ListField(child=serializers.CharField())
    expires_at = serializers.DateTimeField()


class OnboardAcceptedSerializer(WorkflowRunSerializer):
    """The onboarding run (202), with the first bootstrap token when machines were waiting to register."""

    first_boot = FirstBootTokenSerializer(required=False, read_only=True)

    class Meta(WorkflowRunSerializer.Meta):
        fields = [*WorkflowRunSerializer.Meta.fields, "first_boot"]
        read_only_fields = fields


class SiteDecommissionSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=500)
    confirm = serializers.CharField(max_length=16, help_text="the site's code, typed to confirm")


class NodeReplaceSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=500)
    confirm = serializers.CharField(max_length=63, help_text="the node's hostname, typed to confirm")
    replacement_serial = serializers.CharField(max_length=64)
    shipment_ref = serializers.CharField(max_length=200, allow_blank=True, default="")
    replacement_mac = serializers.CharField(
        max_length=17,
        required=False,
        allow_blank=True,
        default="",
        help_text="the replacement machine's MAC, if known; otherwise recorded when it checks in",
    )
    hostname = serializers.CharField(max_length=63, required=False, help_text="default: the old node's hostname")
    role = serializers.ChoiceField(choices=NodeRole.choices, required=False, help_text="default: the old node's")
