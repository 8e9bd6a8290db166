"""`ClusterClient`: one site's ApiClient, with a timeout on every call and the client's errors mapped to
the adapter's (`sites.clusters.errors`); the base the operations of `SiteCluster` share."""

from typing import Any, Self

import pydantic
import urllib3
from django.conf import settings
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from sites.clusters.connection import client_cache
from sites.clusters.errors import ClusterNotFound, ClusterRefused, ClusterUnavailable, translate
from sites.models import Cluster


class ClusterClient:
    """One site's API client and the call wrapper every operation goes through."""

    def __init__(self, api_client: k8s.ApiClient, *, site_code: str, timeout: float):
        self.api_client = api_client
        self.site_code = site_code
        self.timeout = timeout

    @classmethod
    def for_cluster(cls, cluster: Cluster) -> Self:
        timeout = settings.KUBE_TIMEOUT_SECONDS
        return cls(client_cache.get(cluster), site_code=cluster.site.code, timeout=timeout)

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, _request_timeout=(min(5.0, self.timeout), self.timeout), **kwargs)
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise translate(exc) from exc
        except pydantic.ValidationError as exc:
            # The client validates answers against the API's schema; a malformed one is not a cluster.
            raise ClusterUnavailable(f"the site answered with a malformed {exc.title}") from exc
        except ValueError as exc:
            # Not JSON at all (a captive portal, a proxy's error page): the client's json.loads raised.
            raise ClusterUnavailable(f"the site answered with something malformed: {exc}") from exc

    def _find(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """`fn`'s answer, or None when the object is not there (404)."""
        try:
            return self._call(fn, *args, **kwargs)
        except ClusterNotFound:
            return None

    def _exists(self, fn: Any, *args: Any, **kwargs: Any) -> bool:
        """Call `fn` (a read or a delete); False when the object is not there (404)."""
        try:
            self._call(fn, *args, **kwargs)
        except ClusterNotFound:
            return False
        return True

    def _create(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """The created object, or None when it exists already (409: a retried step)."""
        try:
            return self._call(fn, *args, **kwargs)
        except ClusterRefused as exc:
            if exc.status == 409:
                return None
            raise

    def _if_unchanged(self, changed: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """A write conditional on the resourceVersion read: a 409 is ClusterUnavailable saying `changed`
        (try again), not a refusal."""
        try:
            return self._call(fn, *args, **kwargs)
        except ClusterRefused as exc:
            if exc.status == 409:
                raise ClusterUnavailable(changed, status=409) from exc
            raise

    def version(self) -> str:
        """The cluster's version string, e.g. `v1.31.4+k3s1`."""
        info = self._call(k8s.VersionApi(self.api_client).get_code)
        return str(info.git_version)

    @property
    def _core(self) -> k8s.CoreV1Api:
        return k8s.CoreV1Api(self.api_client)
