"""The objects a machine's kubelet writes into its cluster: its Node (Ready, with K3s's labels and
annotations) and its Lease in `kube-node-lease`."""

import hashlib
from typing import Any

from simulator.devices.machine import KERNEL_VERSION, OS_IMAGE, Device, micro_time
from simulator.store import now_iso


def node_object(device: Device, k3s_version: str) -> dict[str, Any]:
    labels = {
        "kubernetes.io/hostname": device.hostname,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": "amd64",
        "node.kubernetes.io/instance-type": "k3s",
        "edgefleet.io/serial": device.serial,
    }
    for item in device.k3s.get("node_labels") or []:  # K3s's --node-label k=v
        if isinstance(item, str) and "=" in item:
            key, value = item.split("=", 1)
            labels[key] = value
    if device.role == "server":
        labels.update({"node-role.kubernetes.io/control-plane": "true", "node-role.kubernetes.io/master": "true"})
    digest = hashlib.sha256(device.serial.encode()).hexdigest()
    index = int(digest[:2], 16)
    resources = {"cpu": "4", "memory": "16262796Ki", "pods": "110", "ephemeral-storage": "490617784Ki"}
    now = now_iso()
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": device.hostname,
            "labels": labels,
            "annotations": {
                "k3s.io/hostname": device.hostname,
                "k3s.io/internal-ip": device.ip,
                "edgefleet.io/mac": device.mac,
                "node.alpha.kubernetes.io/ttl": "0",
            },
        },
        "spec": {
            "podCIDR": f"10.42.{index}.0/24",
            "podCIDRs": [f"10.42.{index}.0/24"],
            "providerID": f"k3s://{device.hostname}",
        },
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "conditions": [
                _node_condition(
                    "MemoryPressure",
                    "False",
                    "KubeletHasSufficientMemory",
                    "kubelet has sufficient memory available",
                    now,
                ),
                _node_condition(
                    "DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure", now
                ),
                _node_condition(
                    "PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available", now
                ),
                _node_condition("Ready", "True", "KubeletReady", "kubelet is posting ready status", now),
            ],
            "addresses": [
                {"type": "InternalIP", "address": device.ip},
                {"type": "Hostname", "address": device.hostname},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": digest[:32],
                "systemUUID": f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}",
                "bootID": hashlib.sha256(f"{device.serial}{device.wipes}".encode()).hexdigest()[:32],
                "kernelVersion": KERNEL_VERSION,
                "osImage": OS_IMAGE,
                "containerRuntimeVersion": "containerd://1.7.23-k3s2",
                "kubeletVersion": k3s_version,
                "kubeProxyVersion": k3s_version,
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        },
    }


def lease_object(device: Device, node_uid: str) -> dict[str, Any]:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": device.hostname,
            "namespace": "kube-node-lease",
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": device.hostname, "uid": node_uid}],
        },
        "spec": {"holderIdentity": device.hostname, "leaseDurationSeconds": 40, "renewTime": micro_time()},
    }


def _node_condition(kind: str, status: str, reason: str, message: str, now: str) -> dict[str, Any]:
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastHeartbeatTime": now,
        "lastTransitionTime": now,
    }
