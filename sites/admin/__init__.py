"""Admin pages for support staff: sites (a 360° page), nodes with their lifecycle buttons, clusters, alerts,
and the device API's tokens and credentials.

Every save and action goes through the services (see fleet.admin_forms), so it is validated and audited
exactly as through the API. Cluster credentials are write-only here too. One module per page:

- `site`: the site list and the site page (sites/admin/overview.py builds the 360° view);
- `node` and `node_actions`: the node list and page, with Wipe, Replace, Provision, Retire, Revoke;
- `cluster`, `health` (alerts), `devices` (bootstrap tokens, credentials, backups);
- `lifecycle`: Onboard and Decommission on the site page; `filters`: list filters.
"""

from sites.admin import cluster, devices, health, node, site

__all__ = ["cluster", "devices", "health", "node", "site"]
