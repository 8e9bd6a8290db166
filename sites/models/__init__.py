"""Models of the sites app: the inventory (sites, clusters, nodes), the device credentials, alerts."""

from sites.models.alerts import Alert
from sites.models.devices import Backup, BootstrapToken, NodeCredential
from sites.models.inventory import Cluster, Node, Site

__all__ = ["Alert", "Backup", "BootstrapToken", "Cluster", "Node", "NodeCredential", "Site"]
