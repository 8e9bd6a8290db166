"""The API semantics of one site, independent of HTTP: create, replace, patch (four flavours), delete with
garbage collection, status and scale subresources, eviction, dry runs, validation and defaulting.

The HTTP layer (`simulator.server`) parses requests and calls these; controllers, the GitOps agent and
devices call them too, so every writer goes through the same rules.
"""

import base64
import copy
import ipaddress
import json
import random
import uuid
from collections.abc import Callable
from typing import Any

import yaml

from simulator import errors
from simulator.errors import ApiError
from simulator.patching import MERGE_KEYS, PatchError, json_patch, merge_patch, strategic_merge
from simulator.resources import BY_PLURAL, ResourceType
from simulator.selectors import fields_match, labels_match
from simulator.store import Store, Stored, dumps, now_iso
from simulator.validation import validate
from simulator.workloads import pdb_matches, pdb_status, pod_finished, pod_ready

NAMESPACE_FINALIZE_SECONDS = 1.0
PATCH_TYPES = {
    "application/json-patch+json": "json",
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
    "application/apply-patch+yaml": "apply",
    "application/apply-patch+cbor": "unsupported",
}


def random_suffix(length: int = 5) -> str:
    # Kubernetes' generateName avoids vowels to keep words out of names; any suffix works here.
    return "".join(random.choices("bcdfghjklmnpqrstvwxz2456789", k=length))  # noqa: S311


def parse_body(data: bytes, *, yaml_allowed: bool) -> Any:
    """Decode a request body as JSON (or YAML, a superset of it, where the API accepts YAML)."""
    if not data.strip():
        raise errors.bad_request("the request body is empty")
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        if not yaml_allowed:
            raise errors.bad_request(f"the body of the request was in an unknown format: {exc}") from exc
    try:
        return yaml.safe_load(data)
    except yaml.YAMLError as exc:
        raise errors.bad_request(f"error converting YAML to JSON: {exc}") from exc


def drop_unapplied(target: dict[str, Any], previous: dict[str, Any], current: dict[str, Any], field: str = "") -> None:
    """Remove from `target` what `previous` (a manager's last apply) set and `current` (its new apply)
    no longer sets: map keys, and items of lists merged by key (containers, env, ...)."""
    for key, before in previous.items():
        if key in ("apiVersion", "kind") or key not in target:
            continue
        if key not in current:
            del target[key]
        elif isinstance(before, dict) and isinstance(current[key], dict) and isinstance(target[key], dict):
            drop_unapplied(target[key], before, current[key], key)
        elif isinstance(before, list) and isinstance(current[key], list) and isinstance(target[key], list):
            merge_key = MERGE_KEYS.get(key)
            if merge_key is None:
                continue
            now = {i.get(merge_key): i for i in current[key] if isinstance(i, dict)}
            gone = {i.get(merge_key) for i in before if isinstance(i, dict)} - set(now)
            target[key] = [i for i in target[key] if not (isinstance(i, dict) and i.get(merge_key) in gone)]
            for item in target[key]:
                if not isinstance(item, dict):
                    continue
                was = next((i for i in before if isinstance(i, dict) and i.get(merge_key) == item.get(merge_key)), None)
                if was is not None and item.get(merge_key) in now:
                    drop_unapplied(item, was, now[item.get(merge_key)], key)


def _secret_string_data(obj: dict[str, Any]) -> None:
    """As the API server: a Secret's write-only `stringData` is merged into `data` (base64), type Opaque."""
    obj.setdefault("type", "Opaque")
    string_data = obj.get("stringData")
    if isinstance(string_data, dict) and all(isinstance(v, str) for v in string_data.values()):
        data: dict[str, Any] = obj["data"] if isinstance(obj.get("data"), dict) else {}
        data.update({k: base64.b64encode(v.encode()).decode() for k, v in string_data.items()})
        obj["data"] = data
        del obj["stringData"]


def _clone(obj: Any) -> Any:
    """A deep copy of JSON data; a JSON round trip is several times faster than copy.deepcopy."""
    return json.loads(json.dumps(obj))


def _spec_part(obj: dict[str, Any]) -> dict[str, Any]:
    """Everything but metadata and status: a change here is a new generation."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


class ApiServer:
    """Kubernetes semantics over one site's `Store`. `defer(seconds, callback)` runs a callback later."""

    def __init__(self, store: Store, *, defer: Callable[[float, Callable[[], None]], None]):
        self.store = store
        self.defer = defer
        self._next_ip = 10
        # The last configuration each field manager applied to each object, for server-side apply.
        self.applied: dict[tuple[str, str, str, str, str], dict[str, Any]] = {}

    # --- reads --------------------------------------------------------------------------------------

    def get(self, rt: ResourceType, namespace: str, name: str) -> Stored:
        found = self.store.get(rt.plural, namespace if rt.namespaced else "", name)
        if found is None:
            raise errors.not_found(rt.plural, name, rt.group)
        return found

    def select(
        self,
        rt: ResourceType,
        namespace: str | None,
        labels: tuple[Any, ...] = (),
        fields: tuple[tuple[str, str, str], ...] = (),
    ) -> list[Stored]:
        items = self.store.scan(rt.plural, namespace if rt.namespaced else None)
        if labels:
            items = [s for s in items if labels_match(labels, s.labels)]
        if fields:
            items = [s for s in items if fields_match(fields, s.fields)]
        return items

    # --- create -------------------------------------------------------------------------------------

    def create(self, rt: ResourceType, namespace: str | None, body: Any, *, dry_run: bool = False) -> dict[str, Any]:
        obj = self._check_body(rt, body)
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise errors.bad_request("metadata must be an object")
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = f"{meta['generateName']}{random_suffix()}"
        if rt.namespaced:
            body_ns = meta.get("namespace")
            if namespace and body_ns and body_ns != namespace:
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            namespace = namespace or body_ns or "default"
            meta["namespace"] = namespace
            self._check_namespace_open(namespace)
        else:
            meta.pop("namespace", None)
        for key in ("uid", "resourceVersion", "creationTimestamp", "deletionTimestamp", "generation"):
            meta.pop(key, None)
        if not rt.keep_status_on_create:
            obj.pop("status", None)
        causes = validate(rt, obj)
        if causes:
            raise errors.invalid(rt.kind, str(meta.get("name") or ""), causes, rt.group)
        if self.store.get(rt.plural, namespace or "", meta["name"]):
            raise errors.already_exists(rt.plural, meta["name"], rt.group)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_iso()
        if rt.tracks_generation:
            meta["generation"] = 1
        self._default(rt, obj)
        if dry_run:
            meta["resourceVersion"] = ""
            return obj
        return self.store.put(rt.plural, obj).load()

    def _check_body(self, rt: ResourceType, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise errors.bad_request("the request body must be a Kubernetes object (a JSON/YAML mapping)")
        obj = _clone(body)
        kind, api_version = obj.get("kind"), obj.get("apiVersion")
        if kind is not None and kind != rt.kind:
            raise errors.bad_request(f"the kind {kind!r} does not match the resource {rt.plural} (kind {rt.kind})")
        if api_version is not None and api_version != rt.api_version:
            raise errors.bad_request(f"the apiVersion {api_version!r} does not match {rt.api_version!r}")
        obj["kind"], obj["apiVersion"] = rt.kind, rt.api_version
        if rt.kind == "Secret":
            _secret_string_data(obj)
        return obj

    def _check_namespace_open(self, namespace: str) -> None:
        ns = self.store.get("namespaces", "", namespace)
        if ns is None:
            raise errors.not_found("namespaces", namespace)
        if ns.fields.get("status.phase") == "Terminating":
            raise ApiError(
                403,
                f"unable to create new content in namespace {namespace} because it is being terminated",
            )

    def _default(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        """The defaults the API server fills in, for the fields clients and controllers read back."""
        meta = obj["metadata"]
        spec: Any = obj.setdefault("spec", {}) if rt.has_status else obj.get("spec")
        if rt.kind == "Namespace":
            meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
            spec.setdefault("finalizers", ["kubernetes"])
            obj["status"] = {"phase": "Active"}
        elif rt.kind == "Pod":
            spec.setdefault("restartPolicy", "Always")
            spec.setdefault("schedulerName", "default-scheduler")
            spec.setdefault("terminationGracePeriodSeconds", 30)
            for container in spec.get("containers") or []:
                container.setdefault("imagePullPolicy", "IfNotPresent")
            obj["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
        elif rt.kind == "Deployment":
            spec.setdefault("replicas", 1)
            spec.setdefault("revisionHistoryLimit", 10)
            spec.setdefault("progressDeadlineSeconds", 600)
            spec.setdefault("strategy", {"type": "RollingUpdate"})
            if spec["strategy"].get("type", "RollingUpdate") == "RollingUpdate":
                spec["strategy"].setdefault("rollingUpdate", {"maxUnavailable": "25%", "maxSurge": "25%"})
        elif rt.kind in ("ReplicaSet", "StatefulSet"):
            spec.setdefault("replicas", 1)
        elif rt.kind == "DaemonSet":
            spec.setdefault("revisionHistoryLimit", 10)
            spec.setdefault("updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}})
        elif rt.kind == "Job":
            uid = meta["uid"]
            spec.setdefault("parallelism", 1)
            spec.setdefault("completions", 1)
            spec.setdefault("backoffLimit", 6)
            spec.setdefault("completionMode", "NonIndexed")
            spec.setdefault("suspend", False)
            job_labels = {
                "batch.kubernetes.io/controller-uid": uid,
                "batch.kubernetes.io/job-name": meta["name"],
                "controller-uid": uid,
                "job-name": meta["name"],
            }
            if not spec.get("selector"):
                spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
                spec["manualSelector"] = False
            template_meta = spec["template"].setdefault("metadata", {})
            template_meta.setdefault("labels", {}).update(job_labels)
            meta.setdefault("labels", {}).update(
                {k: v for k, v in job_labels.items() if k.endswith("job-name") or k.endswith("controller-uid")}
            )
        elif rt.kind == "Service":
            spec.setdefault("type", "ClusterIP")
            spec.setdefault("sessionAffinity", "None")
            if spec.get("clusterIP") != "None":
                self._next_ip += 1
                spec["clusterIP"] = str(ipaddress.ip_address("10.43.0.0") + self._next_ip)
                spec["clusterIPs"] = [spec["clusterIP"]]
            for port in spec.get("ports") or []:
                if isinstance(port, dict):
                    port.setdefault("protocol", "TCP")
                    port.setdefault("targetPort", port.get("port"))
            obj["status"] = {"loadBalancer": {}}
        if rt.has_status and rt.kind not in ("Namespace", "Pod", "Service", "Node"):
            obj.setdefault("status", {})
        if spec == {} and not rt.has_status:
            obj.pop("spec", None)

    # --- update and patch ---------------------------------------------------------------------------

    def replace(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        body: Any,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        current = self.get(rt, namespace, name)
        obj = self._check_body(rt, body)
        meta = obj.get("metadata")
        if not isinstance(meta, dict):
            raise errors.bad_request("metadata must be an object")
        if meta.get("name") != name:
            raise errors.bad_request(f"the name of the object ({meta.get('name')}) does not match the name on the URL")
        wanted_rv = meta.get("resourceVersion")
        if wanted_rv and str(wanted_rv) != str(current.rv):
            raise errors.conflict(rt.plural, name, rt.group)
        return self._write(rt, current.load(), obj, subresource=subresource, dry_run=dry_run)

    def patch(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        patch_type: str,
        data: bytes,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
        field_manager: str | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """Apply a patch; returns (HTTP status, object): 201 when server-side apply created the object."""
        kind = PATCH_TYPES.get(patch_type)
        if kind is None or kind == "unsupported":
            raise ApiError(
                415,
                f"the body of the request was in an unknown format - accepted media types include: "
                f"{', '.join(t for t, k in PATCH_TYPES.items() if k != 'unsupported')}",
            )
        body = parse_body(data, yaml_allowed=kind == "apply")
        if kind == "apply":
            if not field_manager:
                raise errors.bad_request("PATCH with apply-patch+yaml requires a fieldManager query parameter")
            return self._apply(
                rt, namespace, name, body, subresource=subresource, dry_run=dry_run, manager=field_manager
            )
        current = self.get(rt, namespace, name)
        old = current.load()
        try:
            if kind == "json":
                patched = json_patch(old, body)
            elif not isinstance(body, dict):
                raise errors.bad_request("a merge patch must be a JSON object")
            elif kind == "merge":
                patched = merge_patch(old, body)
            else:
                patched = strategic_merge(old, body)
        except PatchError as exc:
            raise ApiError(exc.code, f"the patch could not be applied: {exc}") from exc
        if not isinstance(patched, dict):
            raise ApiError(422, "the patched object is not a Kubernetes object")
        patched_meta: dict[str, Any] = patched["metadata"] if isinstance(patched.get("metadata"), dict) else {}
        wanted_rv = patched_meta.get("resourceVersion")
        if wanted_rv and str(wanted_rv) != str(current.rv):
            raise errors.conflict(rt.plural, name, rt.group)
        if patched_meta.get("name") != name:
            raise errors.bad_request("the patch may not change the object's name")
        return 200, self._write(rt, old, self._check_body(rt, patched), subresource=subresource, dry_run=dry_run)

    def _apply(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        body: Any,
        *,
        subresource: str | None,
        dry_run: bool,
        manager: str,
    ) -> tuple[int, dict[str, Any]]:
        """Server-side apply, approximated: the applied configuration is strategically merged in, and
        fields this manager applied last time and no longer applies are removed (tracked per object and
        manager from its previous apply, as a three-way merge). There are no conflicts between managers
        and no `managedFields` (documented in docs/SIMULATOR.md)."""
        if not isinstance(body, dict) or not body.get("apiVersion") or not body.get("kind"):
            raise errors.bad_request("an apply configuration needs apiVersion and kind")
        obj = self._check_body(rt, body)
        meta = obj.setdefault("metadata", {})
        if meta.get("name") != name:
            raise errors.bad_request(f"the name of the object ({meta.get('name')}) does not match the name on the URL")
        key = (rt.plural, namespace if rt.namespaced else "", name, manager, subresource or "")
        current = self.store.get(rt.plural, namespace if rt.namespaced else "", name)
        if current is None:
            if subresource:
                raise errors.not_found(rt.plural, name, rt.group)
            if rt.namespaced:
                meta["namespace"] = namespace
            created = self.create(rt, namespace if rt.namespaced else None, obj, dry_run=dry_run)
            if not dry_run:
                self.applied[key] = _clone(body)
            return 201, created
        wanted_rv = meta.get("resourceVersion")
        if wanted_rv and str(wanted_rv) != str(current.rv):
            raise errors.conflict(rt.plural, name, rt.group)
        old = current.load()
        merged = strategic_merge(old, obj)
        previous = self.applied.get(key)
        if previous is not None:
            drop_unapplied(merged, previous, obj)
        result = self._write(rt, old, merged, subresource=subresource, dry_run=dry_run)
        if not dry_run:
            self.applied[key] = _clone(body)
        return 200, result

    def _write(
        self,
        rt: ResourceType,
        old: dict[str, Any],
        new: dict[str, Any],
        *,
        subresource: str | None,
        dry_run: bool,
    ) -> dict[str, Any]:
        """Store `new` as the next version of `old`, keeping what clients may not change."""
        if subresource == "status":
            # The status subresource changes status only.
            result = copy.deepcopy(old)
            result["status"] = new.get("status") or {}
        else:
            result = new
            if rt.has_status:
                if "status" in old:
                    result["status"] = old["status"]
                else:
                    result.pop("status", None)
        meta = result.setdefault("metadata", {})
        old_meta = old["metadata"]
        for key in ("uid", "creationTimestamp", "namespace", "name", "deletionTimestamp"):
            if key in old_meta:
                meta[key] = old_meta[key]
            else:
                meta.pop(key, None)
        if rt.tracks_generation:
            changed = _spec_part(result) != _spec_part(old)
            meta["generation"] = int(old_meta.get("generation", 1)) + (1 if changed else 0)
        causes = validate(rt, result)
        if causes:
            raise errors.invalid(rt.kind, meta.get("name", ""), causes, rt.group)
        if dry_run:
            return result
        if result == old:
            return old  # a no-op write does not make a new version, as on a real API server
        return self.store.put(rt.plural, result).load()

    def write(self, rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any] | None:
        """An internal (controller) write of a whole object, status included; skipped when unchanged.

        Unchanged is judged on the serialised form: controllers edit the dicts they loaded in place,
        so an object they left alone serialises to exactly the stored bytes, and no parse is needed."""
        meta = obj["metadata"]
        current = self.store.get(rt.plural, meta.get("namespace", "") if rt.namespaced else "", meta["name"])
        if current is None:
            return None
        merged = dict(obj)
        merged["metadata"] = {**meta, "resourceVersion": str(current.rv)}
        if dumps(merged) == current.raw:
            return merged
        self.store.put(rt.plural, merged)
        return merged

    # --- delete -------------------------------------------------------------------------------------

    def delete(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        *,
        dry_run: bool = False,
        propagation: str | None = None,
        preconditions: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        current = self.get(rt, namespace, name)
        obj = current.load()
        if preconditions:
            if preconditions.get("uid") and preconditions["uid"] != obj["metadata"].get("uid"):
                raise errors.conflict(rt.plural, name, rt.group)
            if preconditions.get("resourceVersion") and str(preconditions["resourceVersion"]) != str(current.rv):
                raise errors.conflict(rt.plural, name, rt.group)
        if dry_run:
            return obj
        if rt.kind == "Namespace":
            return self._terminate_namespace(obj)
        removed = self.store.remove(rt.plural, namespace if rt.namespaced else "", name)
        for key in [k for k in self.applied if k[:3] == (rt.plural, namespace if rt.namespaced else "", name)]:
            del self.applied[key]
        if propagation != "Orphan":
            self._collect_dependents(obj)
        return removed or obj

    def delete_collection(
        self,
        rt: ResourceType,
        namespace: str | None,
        labels: tuple[Any, ...],
        fields: tuple[Any, ...],
        *,
        dry_run: bool,
    ) -> list[dict[str, Any]]:
        doomed = self.select(rt, namespace, labels, fields)
        return [self.delete(rt, s.namespace, s.name, dry_run=dry_run) for s in doomed]

    def _collect_dependents(self, owner: dict[str, Any]) -> None:
        """Garbage collection: delete what the owner controlled (background propagation, at once)."""
        uid = owner["metadata"].get("uid", "")
        namespace = owner["metadata"].get("namespace")
        needle = uid.encode()
        for plural, bucket in list(self.store.objects.items()):
            rt = BY_PLURAL.get(plural)
            if rt is None or not rt.namespaced:
                continue
            for (ns, name), stored in list(bucket.items()):
                if namespace is not None and ns != namespace:
                    continue
                if needle not in stored.raw:
                    continue
                refs = stored.load()["metadata"].get("ownerReferences") or []
                if any(isinstance(r, dict) and r.get("uid") == uid for r in refs):
                    dependent = self.store.remove(plural, ns, name)
                    if dependent:
                        self._collect_dependents(dependent)

    def _terminate_namespace(self, ns: dict[str, Any]) -> dict[str, Any]:
        name = ns["metadata"]["name"]
        if ns.get("status", {}).get("phase") != "Terminating":
            ns["metadata"]["deletionTimestamp"] = now_iso()
            ns["status"] = {"phase": "Terminating"}
            ns = self.store.put("namespaces", ns).load()
        # Emptying the namespace happens a moment after the answer, as the namespace controller does it,
        # so clients see it Terminating (and may still delete what is in it) as on a real cluster.
        self.defer(NAMESPACE_FINALIZE_SECONDS, lambda: self._finalize_namespace(name))
        return ns

    def _finalize_namespace(self, name: str) -> None:
        for plural, bucket in list(self.store.objects.items()):
            rt = BY_PLURAL.get(plural)
            if rt is None or not rt.namespaced:
                continue
            for ns, obj_name in [k for k in bucket if k[0] == name]:
                self.store.remove(plural, ns, obj_name)
        self.store.remove("namespaces", "", name)

    # --- subresources -------------------------------------------------------------------------------

    def scale(self, rt: ResourceType, namespace: str, name: str) -> dict[str, Any]:
        obj = self.get(rt, namespace, name).load()
        meta = obj["metadata"]
        selector = (obj.get("spec") or {}).get("selector") or {}
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")},
            "spec": {"replicas": (obj.get("spec") or {}).get("replicas", 1)},
            "status": {
                "replicas": (obj.get("status") or {}).get("replicas", 0),
                "selector": ",".join(f"{k}={v}" for k, v in (selector.get("matchLabels") or {}).items()),
            },
        }

    def set_scale(self, rt: ResourceType, namespace: str, name: str, scale: Any, *, dry_run: bool) -> dict[str, Any]:
        if not isinstance(scale, dict):
            raise errors.bad_request("the body must be a Scale object")
        replicas = (scale.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise errors.invalid("Scale", name, [("spec.replicas", "Invalid value: must be a non-negative integer")])
        wanted_rv = (scale.get("metadata") or {}).get("resourceVersion")
        current = self.get(rt, namespace, name)
        if wanted_rv and str(wanted_rv) != str(current.rv):
            raise errors.conflict(rt.plural, name, rt.group)
        obj = current.load()
        updated = copy.deepcopy(obj)
        updated["spec"]["replicas"] = replicas
        self._write(rt, obj, updated, subresource=None, dry_run=dry_run)
        result = self.scale(rt, namespace, name)
        result["spec"]["replicas"] = replicas
        return result

    def evict(self, namespace: str, name: str, body: Any, *, dry_run: bool) -> dict[str, Any]:
        """The Eviction API: delete the pod unless a PodDisruptionBudget forbids it now (429)."""
        if not isinstance(body, dict) or body.get("kind") not in (None, "Eviction"):
            raise errors.bad_request("the body must be an Eviction")
        body_name = (body.get("metadata") or {}).get("name")
        if body_name and body_name != name:
            raise errors.bad_request(f"name in URL does not match name in Eviction object: {body_name} != {name}")
        pods_rt = BY_PLURAL["pods"]
        pod = self.get(pods_rt, namespace, name).load()
        if not pod_finished(pod):
            pods = self.store.load_all("pods", namespace)
            for pdb in self.store.load_all("poddisruptionbudgets", namespace):
                if not pdb_matches(pdb, pod):
                    continue
                status = pdb_status(pdb, pods)
                blocked = (
                    status["disruptionsAllowed"] <= 0
                    if pod_ready(pod)
                    else (status["currentHealthy"] < status["desiredHealthy"])
                )
                if blocked:
                    # No Retry-After, as the API server sends none here: client-go would otherwise retry
                    # the POST itself ten times before kubectl drain saw the 429.
                    pdb_name = pdb["metadata"]["name"]
                    raise ApiError(
                        429,
                        "Cannot evict pod as it would violate the pod's disruption budget.",
                        details={
                            "causes": [
                                {
                                    "reason": "DisruptionBudget",
                                    "message": f"The disruption budget {pdb_name} needs {status['desiredHealthy']} "
                                    f"healthy pods and has {status['currentHealthy']} currently",
                                }
                            ]
                        },
                    )
        if not dry_run:
            self.store.remove("pods", namespace, name)
        return errors.status_body(201, "", reason="")
