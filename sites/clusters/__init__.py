"""The Kubernetes adapter for one site: `SiteCluster`, over the official `kubernetes` client. Nothing
else in edgefleet imports `kubernetes`; steps see the small values defined here, never a client object.
`connection` builds and caches one ApiClient per site per process from the checked credentials,
`client` wraps every call (timeout, errors), `errors` maps client failures to the adapter's three
outcomes, and `nodes`, `jobs`, `gitops` and `health` hold the operations and values of each concern."""

from sites.clusters.connection import client_cache
from sites.clusters.errors import (
    ClusterError,
    ClusterNotConfigured,
    ClusterNotFound,
    ClusterRefused,
    ClusterUnavailable,
)
from sites.clusters.gitops import FLUX_GROUP, FLUX_SOURCE_GROUP, FLUX_VERSION, GitSource, SyncStatus, revision_sha
from sites.clusters.health import (
    PROGRESS_DEADLINE_EXCEEDED,
    ContainerWaiting,
    DeploymentHealth,
    PodHealth,
    WorkloadCondition,
)
from sites.clusters.jobs import JobStatus
from sites.clusters.nodes import MIRROR_ANNOTATION, NODE_LEASE_NAMESPACE, DrainProgress, NodeInfo, PodInfo
from sites.clusters.site_cluster import SiteCluster

__all__ = [
    "FLUX_GROUP",
    "FLUX_SOURCE_GROUP",
    "FLUX_VERSION",
    "MIRROR_ANNOTATION",
    "NODE_LEASE_NAMESPACE",
    "PROGRESS_DEADLINE_EXCEEDED",
    "ClusterError",
    "ClusterNotConfigured",
    "ClusterNotFound",
    "ClusterRefused",
    "ClusterUnavailable",
    "ContainerWaiting",
    "DeploymentHealth",
    "DrainProgress",
    "GitSource",
    "JobStatus",
    "NodeInfo",
    "PodHealth",
    "PodInfo",
    "SiteCluster",
    "SyncStatus",
    "WorkloadCondition",
    "client_cache",
    "revision_sha",
]
