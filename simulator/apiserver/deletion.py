"""What a delete takes with it, straight on the store: garbage collection of an owner's dependents
(background propagation, at once) and the emptying of a terminated namespace."""

from typing import Any

from simulator.resources import BY_PLURAL
from simulator.store import Store


def collect_dependents(store: Store, owner: dict[str, Any]) -> None:
    """Delete what `owner` controlled (its ownerReferences' dependents), and theirs in turn."""
    uid = owner["metadata"].get("uid", "")
    namespace = owner["metadata"].get("namespace")
    needle = uid.encode()
    for plural, bucket in list(store.objects.items()):
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
                dependent = store.remove(plural, ns, name)
                if dependent:
                    collect_dependents(store, dependent)


def finalize_namespace(store: Store, name: str) -> None:
    """Remove everything in namespace `name`, then the namespace itself (the namespace controller's job)."""
    for plural, bucket in list(store.objects.items()):
        rt = BY_PLURAL.get(plural)
        if rt is None or not rt.namespaced:
            continue
        for ns, obj_name in [k for k in bucket if k[0] == name]:
            store.remove(plural, ns, obj_name)
    store.remove("namespaces", "", name)
