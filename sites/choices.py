"""States of sites and nodes, and the transitions each state machine allows."""

from django.db import models


class SiteState(models.TextChoices):
    PLANNED = "planned", "Planned"
    PROVISIONING = "provisioning", "Provisioning"
    ACTIVE = "active", "Active"
    DEGRADED = "degraded", "Degraded"
    OFFLINE = "offline", "Offline"
    DECOMMISSIONED = "decommissioned", "Decommissioned"


SITE_TRANSITIONS: dict[str, frozenset[str]] = {
    SiteState.PLANNED: frozenset({SiteState.PROVISIONING, SiteState.ACTIVE, SiteState.DECOMMISSIONED}),
    # A site whose onboarding never finished may be given up: provisioning -> decommissioned.
    SiteState.PROVISIONING: frozenset(
        {SiteState.ACTIVE, SiteState.DEGRADED, SiteState.OFFLINE, SiteState.PLANNED, SiteState.DECOMMISSIONED}
    ),
    SiteState.ACTIVE: frozenset({SiteState.DEGRADED, SiteState.OFFLINE, SiteState.DECOMMISSIONED}),
    SiteState.DEGRADED: frozenset({SiteState.ACTIVE, SiteState.OFFLINE, SiteState.DECOMMISSIONED}),
    SiteState.OFFLINE: frozenset({SiteState.ACTIVE, SiteState.DEGRADED, SiteState.DECOMMISSIONED}),
    SiteState.DECOMMISSIONED: frozenset(),
}
# What a person may do by changing a site's state (API PATCH `state`, the admin's state field): every move
# but decommissioning, which has its own door (sites.site_lifecycle.site_decommission_request: the
# sites.decommission_site permission, a reason and the site's code typed to confirm).
SITE_MANUAL_TRANSITIONS: dict[str, frozenset[str]] = {
    state: targets - {SiteState.DECOMMISSIONED} for state, targets in SITE_TRANSITIONS.items()
}


class NodeRole(models.TextChoices):
    SERVER = "server", "K3s server"
    AGENT = "agent", "K3s agent"


class NodeState(models.TextChoices):
    PREREGISTERED = "preregistered", "Pre-registered"
    JOINING = "joining", "Joining"
    ACTIVE = "active", "Active"
    CORDONED = "cordoned", "Cordoned"
    DRAINING = "draining", "Draining"
    WIPING = "wiping", "Wiping"
    WIPED = "wiped", "Wiped"
    BROKEN = "broken", "Broken"
    QUARANTINED = "quarantined", "Quarantined"
    RETIRED = "retired", "Retired"


# Which states a node may move to from each state. Every change of Node.state goes through
# sites.services.node_transition, which checks this table. (After MAAS' NODE_TRANSITIONS.)
NODE_TRANSITIONS: dict[str, frozenset[str]] = {
    NodeState.PREREGISTERED: frozenset({NodeState.JOINING, NodeState.QUARANTINED, NodeState.RETIRED}),
    NodeState.JOINING: frozenset(
        {NodeState.ACTIVE, NodeState.BROKEN, NodeState.QUARANTINED, NodeState.PREREGISTERED, NodeState.RETIRED}
    ),
    NodeState.ACTIVE: frozenset({NodeState.CORDONED, NodeState.DRAINING, NodeState.BROKEN, NodeState.RETIRED}),
    NodeState.CORDONED: frozenset({NodeState.ACTIVE, NodeState.DRAINING, NodeState.WIPING, NodeState.BROKEN}),
    NodeState.DRAINING: frozenset({NodeState.CORDONED, NodeState.ACTIVE, NodeState.WIPING, NodeState.BROKEN}),
    NodeState.WIPING: frozenset({NodeState.WIPED, NodeState.BROKEN}),
    NodeState.WIPED: frozenset({NodeState.PREREGISTERED, NodeState.JOINING, NodeState.RETIRED}),
    NodeState.BROKEN: frozenset({NodeState.CORDONED, NodeState.WIPING, NodeState.RETIRED}),
    NodeState.QUARANTINED: frozenset({NodeState.PREREGISTERED, NodeState.RETIRED}),
    NodeState.RETIRED: frozenset(),
}

# What a person may do by changing a node's state (API PATCH `state`, the admin's state field): cordon,
# uncordon, mark a machine broken, accept a quarantined machine. Every other move belongs to a workflow
# (wipe, replace, provision: each with its own permission, a reason and the hostname typed to confirm)
# or to the retire door (sites.lifecycle.node_retire: sites.retire_node, a reason, the hostname), so
# change_node alone can never put a machine into wiping, wiped, retired or quarantined.
NODE_MANUAL_TRANSITIONS: dict[str, frozenset[str]] = {
    NodeState.ACTIVE: frozenset({NodeState.CORDONED, NodeState.BROKEN}),
    NodeState.CORDONED: frozenset({NodeState.ACTIVE, NodeState.BROKEN}),
    NodeState.QUARANTINED: frozenset({NodeState.PREREGISTERED}),
}
# Manual moves that need a named permission beyond change_node: accepting a quarantined machine lets it
# register and join a cluster, which is provisioning.
NODE_MANUAL_PERMISSIONS: dict[tuple[str, str], str] = {
    (NodeState.QUARANTINED, NodeState.PREREGISTERED): "sites.provision_node",
}
# Moving a node into one of these revokes its device credential (sites.services.node_transition, whoever
# moves it): the machine is being wiped, was wiped, left the fleet or is not trusted.
NODE_CREDENTIAL_REVOKED_STATES = frozenset(
    {NodeState.WIPING, NodeState.WIPED, NodeState.RETIRED, NodeState.QUARANTINED}
)
# What the retire door accepts: a machine with nothing of the site's on it (never shipped, wiped) or one
# that was never trusted (quarantined). A machine in service is wiped (with retire) or replaced instead.
NODE_RETIRABLE_STATES = frozenset({NodeState.PREREGISTERED, NodeState.WIPED, NodeState.QUARANTINED})

# States in which the machine is part of its site's cluster (or should be).
NODE_IN_SERVICE_STATES = frozenset({NodeState.ACTIVE, NodeState.CORDONED, NodeState.DRAINING})
# States that a workflow is in the middle of; each has a deadline (Node.state_deadline).
NODE_IN_PROGRESS_STATES = frozenset({NodeState.JOINING, NodeState.DRAINING, NodeState.WIPING})
NODE_TERMINAL_STATES = frozenset({NodeState.RETIRED})
# Where an in-progress state goes when its deadline passes.
NODE_DEADLINE_FAILURE_STATE: dict[str, str] = {
    NodeState.JOINING: NodeState.BROKEN,
    NodeState.DRAINING: NodeState.CORDONED,
    NodeState.WIPING: NodeState.BROKEN,
}


class ClusterReachability(models.TextChoices):
    UNKNOWN = "unknown", "Unknown"
    REACHABLE = "reachable", "Reachable"
    UNREACHABLE = "unreachable", "Unreachable"
    UNAUTHORIZED = "unauthorized", "Credentials refused"


class BootstrapTokenState(models.TextChoices):
    """Derived from a token's timestamps (BootstrapToken.state_at), never stored."""

    ACTIVE = "active", "Active"
    USED = "used", "Used"
    EXPIRED = "expired", "Expired"
    REVOKED = "revoked", "Revoked"


class NodeHealth(models.TextChoices):
    """What the edge and the cluster say about a machine (sites.health.node_health), with since when."""

    READY = "ready", "Ready"
    NOT_READY = "not_ready", "Not ready"
    NOT_SEEN = "not_seen", "Not seen"


class SiteHealth(models.TextChoices):
    """A site as support staff should see it (sites.health.site_health), with since when and why."""

    HEALTHY = "healthy", "Healthy"
    DEGRADED = "degraded", "Degraded"
    UNREACHABLE = "unreachable", "Unreachable"
    OFFLINE = "offline", "Offline (planned)"


# The nodes whose health counts for their site's: machines in service, and broken ones (the site runs
# without them until they are replaced). Wiped, retired, quarantined and not yet joined machines do not.
NODE_HEALTH_COUNTED_STATES = frozenset({*NODE_IN_SERVICE_STATES, NodeState.BROKEN})
# A site in one of these states is not expected to answer: its health is `offline`.
SITE_NOT_IN_SERVICE_STATES = frozenset({SiteState.PLANNED, SiteState.OFFLINE, SiteState.DECOMMISSIONED})


class AlertKind(models.TextChoices):
    NODE_DOWN = "node_down", "Node down"


# The kinds of the lifecycle workflows (sites/workflows/), named here so the doors that start them
# (sites.lifecycle, sites.site_lifecycle) need not import the workflows, which call back into the doors.
PROVISION_KIND = "node.provision"
WIPE_KIND = "node.wipe"
REPLACE_KIND = "node.replace"
ONBOARD_KIND = "site.onboard"
DECOMMISSION_KIND = "site.decommission"
