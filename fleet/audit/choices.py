"""Who acts and through which door, as the audit log records them.

`Source` is the door an action came through (the audit row's `source`); `SystemActor` names the code that
acts on its own authority (beat, the workflow engine, a command...), recorded as `system:<component>`.
Both are `str` enums whose values are what the rows always held, so comparing with a stored value works
either way. People are actors as themselves (their user); a workflow step acts as `workflow:<kind>#<id>`
(sites.workflows.common.actor_of) and a machine as `device:<serial>` (sites.devices.device_actor).
"""

from django.db import models


class Source(models.TextChoices):
    API = "api", "REST API"
    ADMIN = "admin", "admin site"
    BEAT = "beat", "beat (scheduled)"
    COMMAND = "command", "management command"
    DEVICE = "device", "a machine (device API)"
    WORKFLOW = "workflow", "a workflow run"


class SystemActor(models.TextChoices):
    BASE_STACK = "system:base-stack", "the base stack's application and releases (rollouts.base_stack)"
    BASE_STACK_RELEASE = "system:base_stack_release", "manage.py base_stack_release"
    BEAT = "system:beat", "scheduled rollout starts (beat)"
    DEMO = "system:demo", "manage.py demo_rollout"
    FLEET_IMPORT = "system:fleet_import", "manage.py fleet_import"
    HEALTH = "system:health", "node-down alerts (sites.alerts)"
    K3S = "system:k3s", "the k3s platform application and its releases (rollouts.k3s)"
    K3S_RELEASE = "system:k3s_release", "manage.py k3s_release"
    ROLLOUT = "system:rollout", "the rollout workflow"
    WORKFLOW = "system:workflow", "the workflow engine"
