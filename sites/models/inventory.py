"""Inventory of the fleet: a Site (one restaurant), its K3s Cluster, and the Nodes (machines) in it."""

import json
from typing import Any

from django.db import models
from django.db.models import Q

from sites import crypto
from sites.choices import ClusterReachability, NodeHealth, NodeRole, NodeState, SiteHealth, SiteState
from sites.validators import validate_hostname, validate_labels, validate_site_code, validate_timezone
from sites.windows import validate_windows


class Site(models.Model):
    """One location: a small K3s cluster, its own git repository, its business hours.

    Windows (business hours, maintenance windows) are in the site's local time zone; see sites.windows.
    """

    code = models.CharField(max_length=16, unique=True, validators=[validate_site_code], help_text="e.g. TX-0412")
    name = models.CharField(max_length=200)
    region = models.CharField(max_length=64, db_index=True, help_text="region or market, e.g. us-south")
    timezone = models.CharField(max_length=64, validators=[validate_timezone], db_index=True, help_text="IANA name")
    labels = models.JSONField(default=dict, blank=True, validators=[validate_labels])
    business_hours = models.JSONField(default=list, blank=True, validators=[validate_windows])
    maintenance_windows = models.JSONField(default=list, blank=True, validators=[validate_windows])
    state = models.CharField(max_length=16, choices=SiteState.choices, default=SiteState.PLANNED, db_index=True)
    repo_url = models.CharField(max_length=500, blank=True, help_text="the site's desired-state git repository")
    last_heartbeat_at = models.DateTimeField(null=True, blank=True, db_index=True)
    last_applied_revision = models.CharField(max_length=64, blank=True)
    # Health (sites.health.site_health), kept up to date by whoever changes one of its inputs (the probe,
    # heartbeats, the drift check, node and site transitions: sites.health_records), so lists filter and
    # sort on columns (indexed with its since, below). `health_since` is when the site entered this
    # health; `health_reason` names what.
    health = models.CharField(max_length=16, choices=SiteHealth.choices, default=SiteHealth.OFFLINE)
    health_since = models.DateTimeField(null=True, blank=True, db_index=True)
    health_reason = models.CharField(max_length=500, blank=True)
    # Inputs of the health that only the rollouts app can observe, recorded by its drift check.
    repo_head_revision = models.CharField(max_length=64, blank=True, help_text="main of the repository, last checked")
    drifted_since = models.DateTimeField(null=True, blank=True, help_text="applied revision differs from the head")
    sync_error = models.CharField(max_length=500, blank=True, help_text="the GitOps agent's failure, if it reports one")
    rollout_error = models.CharField(max_length=500, blank=True, help_text="the latest rollout failed here: why")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["code"]
        indexes = [
            models.Index(fields=["health", "health_since"], name="site_health_since_idx"),
            # The API's `?ordering=health` page, and the dashboard's count by health (read from the index).
            models.Index(fields=["health", "code", "state"], name="site_health_code_idx"),
            models.Index(fields=["drifted_since"], condition=Q(drifted_since__isnull=False), name="site_drifted_idx"),
        ]
        permissions = [
            ("probe_site", "Can probe a site's cluster"),
            # Final (the state machine has no way back): support staff get it deliberately, apart from change_site.
            ("decommission_site", "Can decommission a site (final)"),
            # Creates the site's project on the git host, commits its base stack, issues its first bootstrap
            # token for the machines waiting there and points its edge at the project (sites.site_lifecycle).
            ("onboard_site", "Can onboard a site (git host project, base stack, first bootstrap token)"),
        ]

    def __str__(self) -> str:
        return self.code


class Cluster(models.Model):
    """The K3s API of a site. Credentials are stored encrypted (sites.crypto) and never leave the server."""

    site = models.OneToOneField(Site, on_delete=models.CASCADE, related_name="cluster")
    api_url = models.CharField(max_length=500, blank=True)
    credentials_encrypted = models.TextField(blank=True, editable=False, help_text="Fernet token of JSON")
    # What a registering machine is told to join (K3S_URL / K3S_TOKEN). The URL is not secret; the token is,
    # so it is encrypted like the credentials and never shown by the API or the admin.
    join_server_url = models.CharField(max_length=500, blank=True, help_text="K3s server URL machines join")
    join_token_encrypted = models.TextField(blank=True, editable=False, help_text="Fernet token of the K3s token")
    k3s_version = models.CharField(max_length=64, blank=True, db_index=True)  # the fleet's versions, grouped
    reachability = models.CharField(
        max_length=16, choices=ClusterReachability.choices, default=ClusterReachability.UNKNOWN, db_index=True
    )
    last_contact_at = models.DateTimeField(null=True, blank=True)
    last_probe_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, help_text="a sentence for people (sites.messages)")
    last_error_detail = models.TextField(blank=True, help_text="the raw error behind last_error, for engineers")
    failing_since = models.DateTimeField(null=True, blank=True, help_text="first failed probe since the last contact")
    sync_status = models.CharField(max_length=200, blank=True, help_text="the edge GitOps agent's last status")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"cluster of {self.site.code}"

    @property
    def has_credentials(self) -> bool:
        return bool(self.credentials_encrypted)

    @property
    def has_join_config(self) -> bool:
        return bool(self.join_server_url and self.join_token_encrypted)

    def join_token(self) -> str:
        """The decrypted K3s join token ("" when none is set)."""
        return crypto.decrypt(self.join_token_encrypted) if self.join_token_encrypted else ""

    def credentials(self) -> dict[str, Any]:
        """The decrypted credentials: {"kubeconfig": str} or {"token": str, "ca_data": str|None, ...}."""
        return json.loads(crypto.decrypt(self.credentials_encrypted)) if self.credentials_encrypted else {}


class Node(models.Model):
    """A machine. Its lifecycle state changes only through sites.services.node_transition."""

    serial = models.CharField(max_length=64, unique=True)
    hostname = models.CharField(max_length=63, validators=[validate_hostname])
    mac = models.CharField(
        max_length=17,
        db_index=True,
        blank=True,
        help_text="lower-case, colon separated; empty until a replacement checks in",
    )
    role = models.CharField(max_length=8, choices=NodeRole.choices, default=NodeRole.AGENT)
    hardware_model = models.CharField(max_length=100, blank=True, db_index=True)
    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="nodes")
    state = models.CharField(max_length=16, choices=NodeState.choices, default=NodeState.PREREGISTERED, db_index=True)
    state_changed_at = models.DateTimeField(null=True, blank=True)
    state_deadline = models.DateTimeField(null=True, blank=True, help_text="when an in-progress state times out")
    state_reason = models.CharField(max_length=500, blank=True)
    # The later of the machine's last heartbeat and the cluster's last word from its kubelet (the probe).
    last_seen_at = models.DateTimeField(null=True, blank=True, db_index=True)
    last_heartbeat_at = models.DateTimeField(null=True, blank=True, help_text="the machine's own last heartbeat")
    # Health (sites.health.node_health): from the cluster's Node object and the heartbeats; see sites.health.
    health = models.CharField(max_length=16, choices=NodeHealth.choices, default=NodeHealth.NOT_SEEN)
    health_since = models.DateTimeField(null=True, blank=True, db_index=True)
    health_reason = models.CharField(max_length=500, blank=True)
    facts = models.JSONField(default=dict, blank=True, help_text="hardware facts reported at registration")
    versions = models.JSONField(default=dict, blank=True, help_text="software versions from the last heartbeat")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["site__code", "hostname"]
        # Separate from change_node: starting these workflows changes machines, not records; a wipe or a
        # replacement destroys what is on a machine, so support staff get them deliberately.
        permissions = [
            ("provision_node", "Can provision a node"),
            ("wipe_node", "Can wipe or replace a node (destructive)"),
            ("retire_node", "Can retire a node (final)"),
        ]
        indexes = [
            models.Index(fields=["health", "health_since"], name="node_health_since_idx"),
            models.Index(fields=["health", "state"], name="node_health_state_idx"),  # the dashboard's count
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["site", "hostname"], condition=~Q(state=NodeState.RETIRED), name="node_hostname_unique_per_site"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.hostname} ({self.serial})"
