"""Models of the sites app: the inventory (sites, clusters, nodes) and the device credentials."""

from sites.models.devices import Backup, BootstrapToken, NodeCredential
from sites.models.inventory import Cluster, Node, Site

__all__ = ["Backup", "BootstrapToken", "Cluster", "Node", "NodeCredential", "Site"]
