"""The controllers that make a site's objects behave, one per module over a shared context
(`context.Context`: the site's API, the parse cache of a pass, wake-ups and the site's hooks):

- `garbage`: pods on a deleted node or whose controller is gone, Secrets whose owners are gone;
- `deployments`: Deployment -> ReplicaSet per pod template, and the progress conditions;
- `replicasets`: ReplicaSet -> pods, and their counts;
- `daemonsets`: a pod per matching node, and the rollout status;
- `jobs`: Job -> pods until complete, failed by deadline or back-off limit;
- `scheduler`: binds pods to Ready, schedulable nodes they tolerate, spreading by load;
- `kubelet`: starts pods with their environment (Secret and ConfigMap references resolved), readiness,
  Job completion, and the pod faults (crash loop, image pull) the site asks for;
- `disruption`: PodDisruptionBudget status;
- `upgrades`: Rancher's system-upgrade-controller: Plans (upgrade.cattle.io/v1) -> a Job per node that
  cordons, drains within the disruption budgets and moves the node to the Plan's K3s version;

and `loop.Controllers`, which runs them in order, one pass at a time.

They are event-driven: a site runs `Controllers.reconcile()` when one of its objects changed (coalesced,
see `simulator.site`) or when a timer it asked for is due (a pod finishing its start, a Job finishing its
run). An idle site costs nothing. Every write is skipped when it would not change the object, so a
reconcile pass that finds the world as it should be writes nothing and the site goes quiet. Nothing here
imports the rest of the simulated site (devices, GitOps agent): the site's hooks are the only way out.
"""

from simulator.controllers.loop import Controllers

__all__ = ["Controllers"]
