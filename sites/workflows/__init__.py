"""The machine lifecycle workflows on the engine (fleet.workflows): `node.provision`, `node.wipe` and
`node.replace`, one module each, with what they share in `common`.

Each is exclusive per node (the run's subject), so "wipe this node" while it is being provisioned is
refused with a 409 naming the running workflow. Every step checks the world before acting ("already
cordoned? done"), and timings (polls, drain and wipe deadlines) travel in the run's context, set by the
doors in sites.lifecycle. Importing this package registers the three kinds (Django imports it at start).
"""

from sites.workflows.provision import PROVISION
from sites.workflows.replace import REPLACE
from sites.workflows.wipe import WIPE

__all__ = ["PROVISION", "REPLACE", "WIPE"]
