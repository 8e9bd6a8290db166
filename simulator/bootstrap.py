"""What a fresh K3s location holds before anything is deployed to it: the system namespaces, the K3s
add-ons (CoreDNS, local-path-provisioner, metrics-server, the service load balancer DaemonSet), the Flux
controllers and the Kustomization `site` that the GitOps agent reports through."""

from typing import Any

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease", "flux-system")


def _deployment(namespace: str, name: str, image: str, app: str) -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": app}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [{"name": name, "image": image}],
                    "priorityClassName": "system-cluster-critical",
                    "tolerations": [{"key": "CriticalAddonsOnly", "operator": "Exists"}],
                },
            },
        },
    }


def system_objects(*, repo_url: str, sync_interval: float) -> list[dict[str, Any]]:
    """The objects every site starts with, namespaces first."""
    objects: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}} for name in SYSTEM_NAMESPACES
    ]
    objects += [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "kube-root-ca.crt", "namespace": ns},
            "data": {"ca.crt": "-----BEGIN CERTIFICATE-----\nsimulated\n-----END CERTIFICATE-----\n"},
        }
        for ns in SYSTEM_NAMESPACES
    ]
    objects += [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "coredns", "namespace": "kube-system"},
            "data": {
                "Corefile": (
                    ".:53 {\n    errors\n    health\n    kubernetes cluster.local\n    forward . /etc/resolv.conf\n}\n"
                )
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"component": "apiserver"}},
            "spec": {"ports": [{"name": "https", "port": 443, "targetPort": 6443}]},
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": {"k8s-app": "kube-dns"}},
            "spec": {"selector": {"k8s-app": "kube-dns"}, "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]},
        },
        _deployment("kube-system", "coredns", "rancher/mirrored-coredns-coredns:1.12.0", "coredns"),
        _deployment("kube-system", "local-path-provisioner", "rancher/local-path-provisioner:v0.0.30", "local-path"),
        _deployment("kube-system", "metrics-server", "rancher/mirrored-metrics-server:v0.7.2", "metrics-server"),
        _deployment("flux-system", "source-controller", "ghcr.io/fluxcd/source-controller:v1.4.1", "source-controller"),
        _deployment(
            "flux-system", "kustomize-controller", "ghcr.io/fluxcd/kustomize-controller:v1.4.0", "kustomize-controller"
        ),
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": "svclb-traefik", "namespace": "kube-system", "labels": {"app": "svclb-traefik"}},
            "spec": {
                "selector": {"matchLabels": {"app": "svclb-traefik"}},
                "template": {
                    "metadata": {"labels": {"app": "svclb-traefik"}},
                    "spec": {"containers": [{"name": "lb-tcp-80", "image": "rancher/klipper-lb:v0.4.9"}]},
                },
            },
        },
        {
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "kind": "GitRepository",
            "metadata": {"name": "site", "namespace": "flux-system"},
            "spec": {"url": repo_url, "ref": {"branch": "main"}, "interval": f"{sync_interval:g}s"},
        },
        {
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
            "kind": "Kustomization",
            "metadata": {"name": "site", "namespace": "flux-system"},
            "spec": {
                "interval": f"{sync_interval:g}s",
                "path": "./",
                "prune": True,
                "sourceRef": {"kind": "GitRepository", "name": "site"},
                "timeout": "2m",
            },
        },
    ]
    return objects
