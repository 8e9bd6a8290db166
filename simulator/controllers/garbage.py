"""Garbage collection: pods bound to a node that no longer exists, pods whose controller is gone, and
Secrets all of whose owners (of the kinds below) are gone, e.g. a Job's Secret once the Job is deleted.

Deleting an owner through the API already deletes its dependents unless the client asked to orphan them
(`simulator.apiserver`); this controller catches the rest, such as the pods of a deleted Node.
"""

from collections.abc import Callable

from simulator.controllers.context import PODS, SECRETS, Context, Nodes
from simulator.workloads import controller_of

OWNER_KINDS = frozenset({"ReplicaSet", "DaemonSet", "Job", "StatefulSet"})  # the owners GC knows of


class GarbageCollector:
    """Deletes orphans; `forget(uid)` tells the kubelet to drop what it kept about a deleted pod."""

    def __init__(self, ctx: Context, *, forget: Callable[[str], None]):
        self.ctx = ctx
        self.forget = forget

    def reconcile(self, nodes: Nodes) -> None:
        ctx = self.ctx
        owners = {
            obj["metadata"]["uid"]
            for plural in ("replicasets", "daemonsets", "jobs", "statefulsets")
            for obj in ctx.load_all(plural)
        }
        for pod in ctx.load_all("pods"):
            node = (pod.get("spec") or {}).get("nodeName")
            ref = controller_of(pod)
            if (node and node not in nodes) or (ref and ref.get("uid") not in owners):
                ctx.delete(PODS, pod)
                self.forget(pod["metadata"]["uid"])
        for secret in ctx.load_all("secrets"):
            refs = secret["metadata"].get("ownerReferences") or []
            if refs and all(r.get("kind") in OWNER_KINDS and r.get("uid") not in owners for r in refs):
                ctx.delete(SECRETS, secret)
