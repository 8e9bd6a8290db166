"""Rancher's system-upgrade-controller, the pure half: what a `Plan` (upgrade.cattle.io/v1) resolves to,
which nodes it selects next, the Job it creates per node, and the printer columns of its CRD.

Mirrors github.com/rancher/system-upgrade-controller (pkg/upgrade/plan, pkg/upgrade/job): `latestVersion`
is `spec.version` with `+` made `-` (MungeVersion), `latestHash` the sha224 of latestVersion and the
service account name (DigestStatus); a node is done with a plan when its label
`plan.upgrade.cattle.io/<plan>` holds the latest hash; candidates are ordered by sha256(node uid, plan uid,
hash) and `concurrency` of them are applied at a time (SelectConcurrentNodes); each gets the Job
`apply-<plan>-on-<node>-with-<hash>` (name.SafeConcatName) with backoffLimit 2 and activeDeadlineSeconds
600 unless `spec.jobActiveDeadlineSecs` says otherwise.
"""

import hashlib
import json
from typing import Any

from simulator.selectors import selector_from_label_selector
from simulator.workloads import condition

Obj = dict[str, Any]

GROUP = "upgrade.cattle.io"
LABEL_CONTROLLER = f"{GROUP}/controller"
LABEL_NODE = f"{GROUP}/node"
LABEL_PLAN = f"{GROUP}/plan"
LABEL_VERSION = f"{GROUP}/version"
LABEL_EXCLUSIVE = f"{GROUP}/exclusive"
HOSTNAME = "kubernetes.io/hostname"
CONTROLLER_NAME = "system-upgrade-controller"
KUBECTL_IMAGE = "rancher/kubectl:v1.30.3"
BACKOFF_LIMIT = 2
ACTIVE_DEADLINE_SECONDS = 600
ERR_UNRESOLVABLE = "cannot resolve plan: version or channel required"
ERR_DRAIN_DELETE_CONFLICT = "spec.drain cannot specify both deleteEmptydirData and deleteLocalData"


def plan_label(plan_name: str) -> str:
    return f"plan.{GROUP}/{plan_name}"


def munge_version(version: str) -> str:
    return version.replace("+", "-")


def latest_hash(latest_version: str, service_account: str) -> str:
    return hashlib.sha224((latest_version + service_account).encode()).hexdigest()


def safe_concat_name(*parts: str) -> str:
    """wrangler's name.SafeConcatName: joined with '-', cut to 57 characters and a digest past 63."""
    full = "-".join(parts)
    if len(full) < 64:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:5]
    return (full[:57] + "-" + digest).replace(".-", "-")


def job_name(plan: Obj, node: Obj, hash_: str) -> str:
    short = node["metadata"]["name"].split(".", 1)[0]
    return safe_concat_name("apply", plan["metadata"]["name"], "on", short, "with", hash_)


def validation_error(plan: Obj) -> str:
    """Why the plan is invalid ("" when it is valid), as Validate and the CRD's required fields say."""
    spec = plan.get("spec") or {}
    upgrade = spec.get("upgrade")
    if not isinstance(upgrade, dict) or not upgrade.get("image"):
        return "spec.upgrade.image is required"
    drain = spec.get("drain")
    if isinstance(drain, dict) and "deleteEmptydirData" in drain and "deleteLocalData" in drain:
        return ERR_DRAIN_DELETE_CONFLICT
    return ""


def selects(plan: Obj, node: Obj) -> bool:
    """The node matches the plan's nodeSelector and has a hostname label (NodeSelector)."""
    labels = node["metadata"].get("labels") or {}
    selector = (plan.get("spec") or {}).get("nodeSelector")
    return HOSTNAME in labels and selector_from_label_selector(selector if selector is not None else {})(labels)


def pending(plan: Obj, node: Obj, hash_: str) -> bool:
    """The node still needs the plan: its plan label is neither "disabled" nor the latest hash."""
    value = (node["metadata"].get("labels") or {}).get(plan_label(plan["metadata"]["name"]))
    return value not in ("disabled", hash_)


def concurrent_nodes(plan: Obj, nodes: list[Obj], applying: list[str], hash_: str) -> list[str]:
    """SelectConcurrentNodes: the nodes being applied that still need it, topped up to `concurrency`."""
    candidates = [n for n in nodes if selects(plan, n) and pending(plan, n, hash_)]
    selected = [n for n in candidates if n["metadata"]["name"] in applying]
    concurrency = int((plan.get("spec") or {}).get("concurrency") or 0)
    if len(selected) < concurrency:
        plan_uid = plan["metadata"].get("uid", "")
        rest = [n for n in candidates if n["metadata"]["name"] not in applying]
        rest.sort(key=lambda n: hashlib.sha256((n["metadata"].get("uid", "") + plan_uid + hash_).encode()).hexdigest())
        selected += rest[: concurrency - len(selected)]
    return sorted(n["metadata"]["name"] for n in selected)


def _container(name: str, image: str, args: list[str], plan: Obj) -> Obj:
    status = plan.get("status") or {}
    env = [
        {"name": "SYSTEM_UPGRADE_NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "SYSTEM_UPGRADE_PLAN_NAME", "value": plan["metadata"]["name"]},
        {"name": "SYSTEM_UPGRADE_PLAN_LATEST_HASH", "value": status.get("latestHash", "")},
        {"name": "SYSTEM_UPGRADE_PLAN_LATEST_VERSION", "value": status.get("latestVersion", "")},
    ]
    return {"name": name, "image": image, "args": args, "env": env, "imagePullPolicy": "IfNotPresent"}


def drain_args(plan: Obj, node_name: str) -> list[str]:
    """The `kubectl drain` arguments job.New gives its drain init container."""
    drain = (plan.get("spec") or {}).get("drain") or {}
    args = ["drain", node_name, "--pod-selector", f"!{LABEL_CONTROLLER}"]
    if drain.get("ignoreDaemonSets", True):
        args.append("--ignore-daemonsets")
    if drain.get("deleteLocalData", True) and drain.get("deleteEmptydirData", True):
        args.append("--delete-emptydir-data")
    if drain.get("force"):
        args.append("--force")
    if drain.get("timeout") is not None:
        args += ["--timeout", str(drain["timeout"])]
    if drain.get("skipWaitForDeleteTimeout"):
        args += ["--skip-wait-for-delete-timeout", str(drain["skipWaitForDeleteTimeout"])]
    return args


def job_for(plan: Obj, node: Obj) -> Obj:
    """The Job that applies the plan on the node (job.New): prepare, cordon or drain, then upgrade."""
    meta, spec, status = plan["metadata"], plan.get("spec") or {}, plan.get("status") or {}
    node_name, hash_ = node["metadata"]["name"], status.get("latestHash", "")
    labels = {
        LABEL_CONTROLLER: CONTROLLER_NAME,
        LABEL_EXCLUSIVE: "true" if spec.get("exclusive") else "false",
        LABEL_NODE: node_name,
        LABEL_PLAN: meta["name"],
        LABEL_VERSION: status.get("latestVersion", ""),
        plan_label(meta["name"]): hash_,
    }
    init: list[Obj] = []
    prepare = spec.get("prepare")
    if isinstance(prepare, dict) and prepare.get("image"):
        init.append(_container("prepare", str(prepare["image"]), list(prepare.get("args") or []), plan))
    if spec.get("drain") is not None:
        init.append(_container("drain", KUBECTL_IMAGE, drain_args(plan, node_name), plan))
    elif spec.get("cordon"):
        init.append(_container("cordon", KUBECTL_IMAGE, ["cordon", node_name], plan))
    upgrade = spec.get("upgrade") or {}
    image = str(upgrade.get("image", ""))
    tagged = image if ":" in image.rsplit("/", 1)[-1] else f"{image}:{status.get('latestVersion', '')}"
    main = _container("upgrade", tagged, list(upgrade.get("args") or []), plan)
    if upgrade.get("command"):
        main["command"] = list(upgrade["command"])
    pod_spec: Obj = {
        "nodeName": node_name,  # job.New uses a required node affinity on the hostname; the effect is the same
        "serviceAccountName": spec.get("serviceAccountName", ""),
        "hostIPC": True,
        "hostNetwork": True,
        "hostPID": True,
        "restartPolicy": "Never",
        "tolerations": [{"operator": "Exists"}],
        "containers": [main],
    }
    if init:
        pod_spec["initContainers"] = init
    deadline = spec.get("jobActiveDeadlineSecs")
    if not isinstance(deadline, int) or deadline <= 0:
        deadline = ACTIVE_DEADLINE_SECONDS
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(plan, node, hash_),
            "namespace": meta["namespace"],
            "labels": labels,
            "annotations": {f"{GROUP}/ttl-seconds-after-finished": "900"},
        },
        "spec": {
            "backoffLimit": BACKOFF_LIMIT,
            "activeDeadlineSeconds": int(deadline)
            if isinstance(deadline, int) and deadline > 0
            else ACTIVE_DEADLINE_SECONDS,
            "template": {"metadata": {"labels": dict(labels)}, "spec": pod_spec},
        },
    }


def job_state(job: Obj) -> tuple[str, str, str]:
    """("complete" | "failed" | "running", reason, message) of a Job."""
    for kind, state in (("Complete", "complete"), ("Failed", "failed")):
        cond = condition(job, kind)
        if cond and cond.get("status") == "True":
            return state, str(cond.get("reason", "")), str(cond.get("message", ""))
    return "running", "", ""


def plan_row(plan: Obj) -> list[Any]:
    """The CRD's additionalPrinterColumns: Image, Channel, Version, Complete, Message, Applying (wide)."""
    spec, status = plan.get("spec") or {}, plan.get("status") or {}
    complete = condition(plan, "Complete") or {}
    message = next((c.get("message") for c in status.get("conditions") or [] if c.get("message")), "")
    applying = status.get("applying")
    return [
        plan["metadata"]["name"],
        (spec.get("upgrade") or {}).get("image", ""),
        spec.get("channel", ""),
        spec.get("version", ""),
        complete.get("status", ""),
        message,
        json.dumps(applying, separators=(",", ":")) if applying else "",  # kubectl prints a list as JSON
    ]
