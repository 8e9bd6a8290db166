"""The resource types the simulator serves: one `ResourceType` per (group, version, plural).

This table drives discovery, OpenAPI, routing and the storage semantics (namespaced or not, which
subresources exist, whether `metadata.generation` is kept), so adding a plain resource is one line.
"""

from dataclasses import dataclass, field

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class ResourceType:
    """One served resource. `subresources` may hold "status", "scale" and "eviction"."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    # Node objects are created by the kubelet with their status; every other type resets status on create.
    keep_status_on_create: bool = False
    field_selectors: tuple[str, ...] = field(default=("metadata.name", "metadata.namespace"))

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version(self) -> str:
        return self.api_version

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources

    @property
    def tracks_generation(self) -> bool:
        """Types with a spec/status split bump `metadata.generation` when their spec changes."""
        return self.has_status and self.plural not in ("namespaces", "nodes")

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def url_prefix(self) -> str:
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"


_POD_FIELDS = ("metadata.name", "metadata.namespace", "spec.nodeName", "status.phase")

RESOURCE_TYPES: tuple[ResourceType, ...] = (
    ResourceType("", "v1", "namespaces", "Namespace", False, ("ns",), ("status",), keep_status_on_create=False),
    ResourceType("", "v1", "nodes", "Node", False, ("no",), ("status",), keep_status_on_create=True),
    ResourceType("", "v1", "pods", "Pod", True, ("po",), ("status", "eviction"), ("all",), field_selectors=_POD_FIELDS),
    ResourceType("", "v1", "configmaps", "ConfigMap", True, ("cm",)),
    ResourceType("", "v1", "secrets", "Secret", True),
    ResourceType("", "v1", "services", "Service", True, ("svc",), ("status",), ("all",)),
    ResourceType("", "v1", "serviceaccounts", "ServiceAccount", True, ("sa",)),
    ResourceType("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", True, ("pvc",), ("status",)),
    ResourceType("", "v1", "events", "Event", True, ("ev",)),
    ResourceType("apps", "v1", "deployments", "Deployment", True, ("deploy",), ("status", "scale"), ("all",)),
    ResourceType("apps", "v1", "replicasets", "ReplicaSet", True, ("rs",), ("status", "scale"), ("all",)),
    ResourceType("apps", "v1", "daemonsets", "DaemonSet", True, ("ds",), ("status",), ("all",)),
    ResourceType("apps", "v1", "statefulsets", "StatefulSet", True, ("sts",), ("status", "scale"), ("all",)),
    ResourceType("batch", "v1", "jobs", "Job", True, (), ("status",), ("all",)),
    ResourceType("batch", "v1", "cronjobs", "CronJob", True, ("cj",), ("status",), ("all",)),
    ResourceType("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", True, ("pdb",), ("status",)),
    ResourceType("coordination.k8s.io", "v1", "leases", "Lease", True),
    ResourceType("networking.k8s.io", "v1", "ingresses", "Ingress", True, ("ing",), ("status",)),
    ResourceType("rbac.authorization.k8s.io", "v1", "roles", "Role", True),
    ResourceType("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True),
    ResourceType("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False),
    ResourceType("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False),
    ResourceType("kustomize.toolkit.fluxcd.io", "v1", "kustomizations", "Kustomization", True, ("ks",), ("status",)),
    ResourceType("source.toolkit.fluxcd.io", "v1", "gitrepositories", "GitRepository", True, ("gitrepo",), ("status",)),
    # Stored only: the simulator serves the kinds it knows whether or not their CRD was applied.
    ResourceType(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        False,
        ("crd", "crds"),
        ("status",),
    ),
    # Rancher's system-upgrade-controller CRD (simulator.controllers.upgrades runs its Plans).
    ResourceType("upgrade.cattle.io", "v1", "plans", "Plan", True, (), ("status",)),
)

BY_PATH: dict[tuple[str, str, str], ResourceType] = {(r.group, r.version, r.plural): r for r in RESOURCE_TYPES}
BY_KIND: dict[tuple[str, str], ResourceType] = {(r.api_version, r.kind): r for r in RESOURCE_TYPES}
BY_PLURAL: dict[str, ResourceType] = {r.plural: r for r in RESOURCE_TYPES}


def group_versions() -> dict[str, list[str]]:
    """Group name -> its versions, in table order ("" is the legacy core group)."""
    found: dict[str, list[str]] = {}
    for r in RESOURCE_TYPES:
        versions = found.setdefault(r.group, [])
        if r.version not in versions:
            versions.append(r.version)
    return found


def resources_in(group: str, version: str) -> list[ResourceType]:
    return [r for r in RESOURCE_TYPES if r.group == group and r.version == version]


def lookup(api_version: str, kind: str) -> ResourceType | None:
    return BY_KIND.get((api_version, kind))
