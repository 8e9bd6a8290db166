"""`ApiServer`: the API semantics of one site, independent of HTTP: reads, create, replace, patch (four
flavours), delete with garbage collection, the status and scale subresources, eviction and dry runs.

The HTTP layer (`simulator.server`) parses requests and calls these; controllers, the GitOps agent and
devices call them too, so every writer goes through the same rules.
"""

import copy
import ipaddress
import uuid
from collections.abc import Callable
from typing import Any

from simulator import errors
from simulator.apiserver.bodies import PATCH_TYPES, apply_patch, check_body, clone, parse_body, random_suffix, spec_part
from simulator.apiserver.defaults import apply_defaults
from simulator.apiserver.deletion import collect_dependents, finalize_namespace
from simulator.apiserver.subresources import check_eviction, scale_view
from simulator.errors import ApiError
from simulator.patching import drop_unapplied, strategic_merge
from simulator.resources import BY_PLURAL, ResourceType
from simulator.selectors import fields_match, labels_match
from simulator.store import Store, Stored, dumps, now_iso
from simulator.validation import validate

NAMESPACE_FINALIZE_SECONDS = 1.0


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
        obj = check_body(rt, body)
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
        apply_defaults(rt, obj, cluster_ip=self._cluster_ip)
        if dry_run:
            meta["resourceVersion"] = ""
            return obj
        return self.store.put(rt.plural, obj).load()

    def _check_namespace_open(self, namespace: str) -> None:
        ns = self.store.get("namespaces", "", namespace)
        if ns is None:
            raise errors.not_found("namespaces", namespace)
        if ns.fields.get("status.phase") == "Terminating":
            raise ApiError(
                403,
                f"unable to create new content in namespace {namespace} because it is being terminated",
            )

    def _cluster_ip(self) -> str:
        self._next_ip += 1
        return str(ipaddress.ip_address("10.43.0.0") + self._next_ip)

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
        obj = check_body(rt, body)
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
        patched = apply_patch(kind, old, body)
        if not isinstance(patched, dict):
            raise ApiError(422, "the patched object is not a Kubernetes object")
        patched_meta: dict[str, Any] = patched["metadata"] if isinstance(patched.get("metadata"), dict) else {}
        wanted_rv = patched_meta.get("resourceVersion")
        if wanted_rv and str(wanted_rv) != str(current.rv):
            raise errors.conflict(rt.plural, name, rt.group)
        if patched_meta.get("name") != name:
            raise errors.bad_request("the patch may not change the object's name")
        return 200, self._write(rt, old, check_body(rt, patched), subresource=subresource, dry_run=dry_run)

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
        obj = check_body(rt, body)
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
                self.applied[key] = clone(body)
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
            self.applied[key] = clone(body)
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
            changed = spec_part(result) != spec_part(old)
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
            collect_dependents(self.store, obj)
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

    def _terminate_namespace(self, ns: dict[str, Any]) -> dict[str, Any]:
        name = ns["metadata"]["name"]
        if ns.get("status", {}).get("phase") != "Terminating":
            ns["metadata"]["deletionTimestamp"] = now_iso()
            ns["status"] = {"phase": "Terminating"}
            ns = self.store.put("namespaces", ns).load()
        # Emptying the namespace happens a moment after the answer, as the namespace controller does it,
        # so clients see it Terminating (and may still delete what is in it) as on a real cluster.
        self.defer(NAMESPACE_FINALIZE_SECONDS, lambda: finalize_namespace(self.store, name))
        return ns

    # --- subresources -------------------------------------------------------------------------------

    def scale(self, rt: ResourceType, namespace: str, name: str) -> dict[str, Any]:
        return scale_view(self.get(rt, namespace, name).load())

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
        check_eviction(self.store, namespace, pod)
        if not dry_run:
            self.store.remove("pods", namespace, name)
        return errors.status_body(201, "", reason="")
