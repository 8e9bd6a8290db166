"""Every write to sites, clusters and nodes. Admin, API, tasks and commands call these names (`from sites
import services`), so each door validates, audits and refuses in the same way. The modules: `sites`
(create, describe, move, delete, probe), `clusters` (endpoint, credentials, join configuration), `nodes`
(pre-register, describe, move, delete); the shared plumbing (state_transition, model_update) is in fleet."""

from sites.services.clusters import cluster_set_credentials, cluster_set_join_config, clusters_rotate_keys
from sites.services.nodes import (
    NODE_FIELDS,
    NODE_MACHINE,
    node_create,
    node_delete,
    node_set_state,
    node_transition,
    node_update,
)
from sites.services.sites import (
    SITE_FIELDS,
    SITE_MACHINE,
    site_create,
    site_delete,
    site_probe,
    site_probe_request,
    site_set_state,
    site_transition,
    site_update,
)

__all__ = [
    "NODE_FIELDS",
    "NODE_MACHINE",
    "SITE_FIELDS",
    "SITE_MACHINE",
    "cluster_set_credentials",
    "cluster_set_join_config",
    "clusters_rotate_keys",
    "node_create",
    "node_delete",
    "node_set_state",
    "node_transition",
    "node_update",
    "site_create",
    "site_delete",
    "site_probe",
    "site_probe_request",
    "site_set_state",
    "site_transition",
    "site_update",
]
