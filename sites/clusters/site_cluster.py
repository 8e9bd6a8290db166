"""`SiteCluster`: every operation on one site's K3s API, gathered from the modules that hold them."""

from sites.clusters.gitops import GitOpsOperations
from sites.clusters.health import WorkloadOperations
from sites.clusters.jobs import JobOperations
from sites.clusters.nodes import NodeOperations


class SiteCluster(NodeOperations, JobOperations, GitOpsOperations, WorkloadOperations):
    """Operations on one site's K3s API. Build with `SiteCluster.for_cluster(cluster)`."""
