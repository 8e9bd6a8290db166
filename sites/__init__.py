"""One location: Site, Cluster and Node, the adapters to its K3s cluster and git repository."""
