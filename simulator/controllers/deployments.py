"""The Deployment controller: one ReplicaSet per pod template (named after the template's hash), rolling over
at once (old ReplicaSets go to zero as the new one is created), and the Deployment's status with the
Kubernetes progress conditions (`simulator.workload_status`), so `kubectl rollout status` reads its answer.
"""

import json

from simulator.controllers.context import DEPLOYMENTS, REPLICASETS, TEMPLATE_HASH, Context, Obj, Observed, template_hash
from simulator.workload_status import deployment_status
from simulator.workloads import owned_by, owner_reference

REVISION = "deployment.kubernetes.io/revision"


class DeploymentController:
    def __init__(self, ctx: Context):
        self.ctx = ctx
        # The ReplicaSets this pass created ("namespace/name"): a new rollout starts (NewReplicaSetCreated).
        self._created: set[str] = set()

    def reconcile(self) -> None:
        self._created = set()
        replicasets = self.ctx.load_all("replicasets")
        for deploy in self.ctx.load_all("deployments"):
            self._sync(deploy, replicasets)

    def _sync(self, deploy: Obj, replicasets: list[Obj]) -> None:
        ctx = self.ctx
        meta, spec = deploy["metadata"], deploy.get("spec") or {}
        template = spec.get("template") or {}
        digest = template_hash(template)
        name = f"{meta['name']}-{digest}"
        owned = [rs for rs in replicasets if owned_by(rs, meta["uid"])]
        replicas = int(spec.get("replicas", 1))
        current = next((rs for rs in owned if rs["metadata"]["name"] == name), None)
        if current is None:
            labels = {**((template.get("metadata") or {}).get("labels") or {}), TEMPLATE_HASH: digest}
            selector = json.loads(json.dumps(spec.get("selector") or {}))
            selector.setdefault("matchLabels", {})[TEMPLATE_HASH] = digest
            pod_template = json.loads(json.dumps(template))
            pod_template.setdefault("metadata", {})["labels"] = labels
            revision = 1 + max((int(rs["metadata"].get("annotations", {}).get(REVISION, 0)) for rs in owned), default=0)
            rs_spec = {"replicas": replicas, "selector": selector, "template": pod_template}
            if spec.get("minReadySeconds"):
                rs_spec["minReadySeconds"] = spec["minReadySeconds"]
            made = ctx.create(
                REPLICASETS,
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "metadata": {
                        "name": name,
                        "namespace": meta["namespace"],
                        "labels": labels,
                        "annotations": {REVISION: str(revision)},
                        "ownerReferences": [owner_reference(deploy)],
                    },
                    "spec": rs_spec,
                },
            )
            if made is not None:
                self._created.add(f"{meta['namespace']}/{name}")
        elif current["spec"].get("replicas") != replicas:
            current["spec"]["replicas"] = replicas
            ctx.api.write(REPLICASETS, current)
        for old in owned:  # rolling over at once
            if old["metadata"]["name"] != name and old["spec"].get("replicas", 0) != 0:
                old["spec"]["replicas"] = 0
                ctx.api.write(REPLICASETS, old)

    def report(self, seen: Observed) -> None:
        for deploy in self.ctx.load_all("deployments"):
            meta, spec = deploy["metadata"], deploy.get("spec") or {}
            owned = [rs for rs in seen.replicasets if owned_by(rs, meta["uid"])]
            new_name = f"{meta['name']}-{template_hash(spec.get('template') or {})}"
            new_rs = next((rs for rs in owned if rs["metadata"]["name"] == new_name), None)
            status, wake = deployment_status(
                deploy,
                new_name=new_name,
                created=f"{meta['namespace']}/{new_name}" in self._created,
                all_pods=[p for rs in owned for p in seen.by_replicaset.get(rs["metadata"]["uid"], [])],
                updated_pods=seen.by_replicaset.get(new_rs["metadata"]["uid"], []) if new_rs else [],
                now=seen.now,
            )
            self.ctx.wake_wall(wake)
            self.ctx.write_status(DEPLOYMENTS, deploy, status)
