"""Connecting to a site: its ApiClient built field by field from the checked, decrypted credentials
(never the global default configuration, never the kubeconfig loader), the TLS files the client needs,
and one cached client per site per process, rebuilt when the credentials change."""

import contextlib
import hashlib
import os
import tempfile
import threading
from collections import OrderedDict

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from kubernetes import client as k8s

from sites.clusters.errors import ClusterNotConfigured, ClusterRefused, ClusterUnavailable
from sites.kubeconfig import ClusterCredentials, CredentialsInvalid, parse_stored
from sites.models import Cluster


class _ClientCache:
    """One ApiClient per site per process, rebuilt when the cluster's credentials change; bounded LRU.

    Behind it, a larger LRU of the clients' configurations (the credentials decrypted, parsed, checked and
    their TLS files written: ~10 ms of CPU, against a few KB of memory each), so that a worker touching more
    sites than it keeps clients for (a probe round, the drift checks of a large fleet) rebuilds a client
    from its configuration instead of parsing the stored kubeconfig again. Both are keyed by the cluster
    and a fingerprint of its endpoint and encrypted credentials, so new credentials are parsed and checked
    at their first use."""

    def __init__(self, capacity: int = 4096, configurations: int = 8192):
        self.capacity = capacity
        self.configurations = configurations
        self._clients: OrderedDict[int, tuple[str, k8s.ApiClient]] = OrderedDict()
        self._configurations: OrderedDict[tuple[int, str], k8s.Configuration] = OrderedDict()
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
        api_client = k8s.ApiClient(self._configuration(cluster, fingerprint))
        with self._lock:
            old = self._clients.pop(cluster.pk, None)
            self._clients[cluster.pk] = (fingerprint, api_client)
            while len(self._clients) > self.capacity:
                _, (_, evicted) = self._clients.popitem(last=False)
                evicted.close()
        if old:
            old[1].close()
        return api_client

    def _configuration(self, cluster: Cluster, fingerprint: str) -> k8s.Configuration:
        key = (cluster.pk, fingerprint)
        with self._lock:
            configuration = self._configurations.get(key)
            if configuration is not None and _tls_files_present(configuration):
                self._configurations.move_to_end(key)
                return configuration
        configuration = _configuration(cluster)  # refused credentials raise: nothing cached
        with self._lock:
            self._configurations[key] = configuration
            while len(self._configurations) > self.configurations:
                self._configurations.popitem(last=False)
        return configuration

    def clear(self) -> None:
        with self._lock:
            for _, api_client in self._clients.values():
                api_client.close()
            self._clients.clear()
            self._configurations.clear()


client_cache = _ClientCache(
    capacity=settings.KUBE_CLIENT_CACHE_SIZE, configurations=settings.KUBE_CLIENT_CONFIGURATION_CACHE_SIZE
)


def _tls_files_present(configuration: k8s.Configuration) -> bool:
    """Whether the CA and client certificate files a kept configuration names are still on disk (a
    clean-up of DATA_DIR may remove them); when not, the configuration is built, and they written, again."""
    files = (configuration.ssl_ca_cert, configuration.cert_file)
    return all(os.path.exists(path) for path in files if path)


def _configuration(cluster: Cluster) -> k8s.Configuration:
    """The client's configuration, built field by field from the checked credentials.

    Never the kubeconfig loader: it would run `exec` and `auth-provider` commands, read files and follow
    proxies that a stored kubeconfig names. The stored value is parsed again here exactly as on write
    (`sites.kubeconfig`), so a row that got around the services is refused with a sentence, not run.
    """
    credentials = _checked_credentials(cluster)
    configuration = k8s.Configuration()
    configuration.host = credentials.server
    if credentials.token:
        configuration.api_key = {"authorization": credentials.token}
        configuration.api_key_prefix = {"authorization": "Bearer"}
    configuration.verify_ssl = not credentials.insecure_skip_tls_verify
    try:
        if credentials.ca_pem:
            configuration.ssl_ca_cert = _tls_file(credentials.ca_pem, ".crt")
        if credentials.client_cert_pem and credentials.client_key_pem:
            # One file holding the certificate and its key: ssl's load_cert_chain reads both from it.
            configuration.cert_file = _tls_file(credentials.client_cert_pem + credentials.client_key_pem, ".pem")
    except OSError as exc:
        raise ClusterUnavailable(
            f"cannot write the TLS files of site {cluster.site.code} under {settings.DATA_DIR}: {exc.strerror}"
        ) from exc
    # No silent urllib3 retries: a step decides when to try again, and a timeout must mean the timeout.
    configuration.retries = 0
    configuration.connection_pool_maxsize = 2
    return configuration


def _checked_credentials(cluster: Cluster) -> ClusterCredentials:
    site = cluster.site.code
    try:
        secret = cluster.credentials()
    except (ImproperlyConfigured, ValueError) as exc:  # a key no longer configured, or not JSON
        raise ClusterRefused(f"the stored credentials of site {site} cannot be read: {exc}") from exc
    try:
        return parse_stored(secret, api_url=cluster.api_url, production=settings.PRODUCTION)
    except CredentialsInvalid as exc:
        raise ClusterRefused(
            f"the stored credentials of site {site} are refused and were not used: {exc.message}; "
            "set them again through the API or the admin"
        ) from exc


def _tls_file(content: str, suffix: str) -> str:
    """The client wants paths for the CA and the client certificate: one file per distinct content under
    DATA_DIR/kube-tls (0700), named by the content's sha256 (no path ever comes from input), written 0600
    under a temporary name and renamed into place, so another process never reads half a file."""
    directory = settings.DATA_DIR / "kube-tls"
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.chmod(0o700)
    path = directory / (hashlib.sha256(content.encode()).hexdigest()[:32] + suffix)
    if path.exists():
        return str(path)
    fd, temporary = tempfile.mkstemp(dir=directory, suffix=".tmp")  # created 0600
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(content)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    return str(path)
