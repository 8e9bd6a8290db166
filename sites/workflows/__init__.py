"""The lifecycle workflows on the engine (fleet.workflows): the machines' `node.provision`, `node.wipe` and
`node.replace`, and the sites' `site.onboard` and `site.decommission`, one module each, with what they
share in `common` (machines) and `site_common` (sites: the git host's answers as outcomes).

Each is exclusive per subject (node or site), so "wipe this node" while it is being provisioned, or
"decommission this site" while it is being onboarded, is refused with a 409 naming the running workflow.
Every step checks the world before acting ("already cordoned? done"), and timings (polls, drain and wipe
deadlines) travel in the run's context, set by the doors in sites.lifecycle and sites.site_lifecycle.
Importing this package registers the kinds (Django imports it at start).
"""

from sites.workflows.decommission import DECOMMISSION
from sites.workflows.onboard import ONBOARD
from sites.workflows.provision import PROVISION
from sites.workflows.replace import REPLACE
from sites.workflows.wipe import WIPE

__all__ = ["DECOMMISSION", "ONBOARD", "PROVISION", "REPLACE", "WIPE"]
