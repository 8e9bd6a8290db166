"""Models of the sites app: the inventory (sites, clusters, nodes) and the device credentials."""

from sites.models.inventory import Cluster, Node, Site

__all__ = ["Cluster", "Node", "Site"]
