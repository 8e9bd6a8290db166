"""The disruption controller: each PodDisruptionBudget's status over the pods of its namespace (healthy,
desired, expected, disruptions allowed and the DisruptionAllowed condition), as `kubectl get pdb` shows it.
The eviction API counts the same way (`simulator.workloads.pdb_status`) at the moment of each eviction."""

from simulator.controllers.context import PDBS, Context, Observed
from simulator.workloads import pdb_status, set_condition


class DisruptionController:
    def __init__(self, ctx: Context):
        self.ctx = ctx

    def report(self, seen: Observed) -> None:
        for pdb in self.ctx.load_all("poddisruptionbudgets"):
            namespace = pdb["metadata"]["namespace"]
            status = pdb_status(pdb, [p for p in seen.pods if p["metadata"]["namespace"] == namespace])
            allowed = status["disruptionsAllowed"] > 0
            status["conditions"] = set_condition(
                list((pdb.get("status") or {}).get("conditions") or []),
                "DisruptionAllowed",
                "True" if allowed else "False",
                "SufficientPods" if allowed else "InsufficientPods",
                "",
            )
            for cond in status["conditions"]:
                cond["observedGeneration"] = status["observedGeneration"]
            self.ctx.write_status(PDBS, pdb, status)
