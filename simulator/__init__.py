"""The fleet simulator: one aiohttp server that serves many virtual K3s locations.

Each virtual site answers the Kubernetes REST API under `/sites/<code>/` (so the official client and
kubectl work unchanged), runs a GitOps agent that applies the site's git repository, and has virtual
devices that register with the control plane, heartbeat, obey wipe Jobs and die when told.
Nothing here imports the Django project: the simulator only speaks HTTP and git, as a real location does.
See docs/SIMULATOR.md.
"""
