"""The Kubernetes adapter for one site: `SiteCluster`, over the official `kubernetes` client.

Nothing else in edgefleet imports `kubernetes`. One ApiClient per site per worker process, built from
the site's decrypted credentials (never the global default configuration), and a timeout on every
call. Client errors are mapped to three exception types that workflow steps translate into outcomes:
`ClusterUnavailable` (transient: connection refused, timeout, 5xx, 429 — retry later),
`ClusterRefused` (permanent: credentials refused, forbidden) and `ClusterNotFound` (404).
"""

import base64
import hashlib
import threading
from collections import OrderedDict
from typing import Any

import pydantic
import urllib3
import yaml
from django.conf import settings
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from kubernetes.config.kube_config import KubeConfigLoader

from sites.models import Cluster


class ClusterError(Exception):
    """Base of the adapter's errors; `status` is the HTTP status when there was one."""

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class ClusterUnavailable(ClusterError):
    """The site did not answer or answered with a transient error: try again later."""


class ClusterRefused(ClusterError):
    """The site refused our credentials or the action: retrying will not help."""


class ClusterNotFound(ClusterError):
    """The object asked for does not exist."""


class ClusterNotConfigured(ClusterError):
    """The site has no API endpoint or credentials recorded."""


def _translate(exc: Exception) -> ClusterError:
    if isinstance(exc, ApiException):
        status = exc.status or 0
        reason = _status_message(exc)
        if status == 429 or status >= 500 or status == 0:
            retry_after = None
            if exc.headers and exc.headers.get("Retry-After", "").isdigit():
                retry_after = float(exc.headers["Retry-After"])
            return ClusterUnavailable(f"HTTP {status}: {reason}", status=status, retry_after=retry_after)
        if status == 404:
            return ClusterNotFound(f"not found: {reason}", status=status)
        if status in (401, 403):
            return ClusterRefused(f"HTTP {status}: {reason}", status=status)
        return ClusterRefused(f"HTTP {status}: {reason}", status=status)
    return ClusterUnavailable(f"{type(exc).__name__}: {exc}")


def _status_message(exc: ApiException) -> str:
    try:
        body = yaml.safe_load(exc.body) if exc.body else None
    except yaml.YAMLError:
        body = None
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    return str(exc.reason or "error")


class SiteCluster:
    """Operations on one site's K3s API. Build with `SiteCluster.for_cluster(cluster)`."""

    def __init__(self, api_client: k8s.ApiClient, *, site_code: str, timeout: float):
        self.api_client = api_client
        self.site_code = site_code
        self.timeout = timeout

    @classmethod
    def for_cluster(cls, cluster: Cluster) -> "SiteCluster":
        timeout = settings.KUBE_TIMEOUT_SECONDS
        return cls(_client_cache.get(cluster), site_code=cluster.site.code, timeout=timeout)

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, _request_timeout=(min(5.0, self.timeout), self.timeout), **kwargs)
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise _translate(exc) from exc
        except pydantic.ValidationError as exc:
            # The client validates answers against the API's schema; a malformed one is not a cluster.
            raise ClusterUnavailable(f"the site answered with a malformed {exc.title}") from exc

    def version(self) -> str:
        """The cluster's version string, e.g. `v1.31.4+k3s1`."""
        info = self._call(k8s.VersionApi(self.api_client).get_code)
        return str(info.git_version)


class _ClientCache:
    """One ApiClient per site per process, rebuilt when the cluster's credentials change; bounded LRU."""

    def __init__(self, capacity: int = 4096):
        self.capacity = capacity
        self._clients: OrderedDict[int, tuple[str, k8s.ApiClient]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, cluster: Cluster) -> k8s.ApiClient:
        if not cluster.api_url or not cluster.credentials_encrypted:
            raise ClusterNotConfigured(f"site {cluster.site.code} has no cluster endpoint or credentials")
        fingerprint = hashlib.sha256(f"{cluster.api_url}\n{cluster.credentials_encrypted}".encode()).hexdigest()
        with self._lock:
            cached = self._clients.get(cluster.pk)
            if cached and cached[0] == fingerprint:
                self._clients.move_to_end(cluster.pk)
                return cached[1]
        api_client = k8s.ApiClient(_configuration(cluster))
        with self._lock:
            old = self._clients.pop(cluster.pk, None)
            self._clients[cluster.pk] = (fingerprint, api_client)
            while len(self._clients) > self.capacity:
                _, (_, evicted) = self._clients.popitem(last=False)
                evicted.close()
        if old:
            old[1].close()
        return api_client

    def clear(self) -> None:
        with self._lock:
            for _, api_client in self._clients.values():
                api_client.close()
            self._clients.clear()


_client_cache = _ClientCache()


def _configuration(cluster: Cluster) -> k8s.Configuration:
    secret = cluster.credentials()
    configuration = k8s.Configuration()
    if "kubeconfig" in secret:
        KubeConfigLoader(config_dict=yaml.safe_load(secret["kubeconfig"])).load_and_set(configuration)
    else:
        configuration.host = cluster.api_url
        configuration.api_key = {"authorization": secret["token"]}
        configuration.api_key_prefix = {"authorization": "Bearer"}
        if secret.get("insecure_skip_tls_verify"):
            configuration.verify_ssl = False
        if secret.get("ca_data"):
            configuration.ssl_ca_cert = _ca_file(secret["ca_data"])
    # No silent urllib3 retries: a step decides when to try again, and a timeout must mean the timeout.
    configuration.retries = 0
    configuration.connection_pool_maxsize = 2
    return configuration


def _ca_file(ca_data: str) -> str:
    """The client wants a path; keep one file per distinct CA under the data directory."""

    pem = ca_data if "BEGIN CERTIFICATE" in ca_data else base64.b64decode(ca_data).decode()
    directory = settings.DATA_DIR / "ca"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / (hashlib.sha256(pem.encode()).hexdigest()[:16] + ".pem")
    if not path.exists():
        path.write_text(pem)
    return str(path)
