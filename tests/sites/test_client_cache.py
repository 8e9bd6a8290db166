"""The per-process cache of Kubernetes clients: a bounded LRU of clients over a larger one of their
checked configurations, so a worker that touches more sites than it keeps clients for rebuilds a client
without parsing the stored kubeconfig again, and new credentials are parsed and checked at first use."""

import json
from pathlib import Path
from typing import Any

import pytest

from sites import crypto, services
from sites.clusters import ClusterRefused
from sites.clusters.connection import _ClientCache
from sites.models import Cluster
from tests.sites.pki import ca_pem

pytestmark = pytest.mark.django_db


def cluster(code: str) -> Cluster:
    site = services.site_create(
        actor="t", source="test", code=code, name=code, region="r", timezone="UTC", state="active"
    )
    services.cluster_set_credentials(
        cluster=site.cluster, actor="t", source="test", api_url="https://10.9.8.7:6443", token="s3cret-token"
    )
    return Cluster.objects.select_related("site").get(pk=site.cluster.pk)


def test_a_client_dropped_from_the_cache_is_rebuilt_from_its_kept_configuration() -> None:
    cache = _ClientCache(capacity=1, configurations=10)
    first, second = cluster("TX-0001"), cluster("TX-0002")

    a = cache.get(first)
    assert cache.get(first) is a  # kept
    b = cache.get(second)  # drops first's client (capacity 1)
    again = cache.get(first)

    assert again is not a  # a new client...
    assert again.configuration is a.configuration  # ...from the configuration parsed and checked before
    assert b.configuration is not a.configuration
    assert again.configuration.host == "https://10.9.8.7:6443"


def test_new_credentials_are_parsed_and_checked_at_their_first_use() -> None:
    cache = _ClientCache(capacity=10, configurations=10)
    site = cluster("TX-0003")
    before = cache.get(site)

    services.cluster_set_credentials(
        cluster=site, actor="t", source="test", api_url="https://10.9.8.7:6443", token="another-token"
    )
    rotated = Cluster.objects.select_related("site").get(pk=site.pk)
    after = cache.get(rotated)

    assert after is not before and after.configuration is not before.configuration
    assert after.configuration.api_key == {"authorization": "another-token"}

    # A row changed behind the services' back (a compromised database) is refused at use, and not cached.
    Cluster.objects.filter(pk=site.pk).update(credentials_encrypted=crypto.encrypt(json.dumps({"exec": "sh"})))
    tampered = Cluster.objects.select_related("site").get(pk=site.pk)
    with pytest.raises(ClusterRefused):
        cache.get(tampered)
    with pytest.raises(ClusterRefused):
        cache.get(tampered)
    assert len(cache._configurations) == 2


def test_a_kept_configuration_whose_tls_files_were_removed_is_built_again(settings: Any, tmp_path: Path) -> None:
    settings.DATA_DIR = tmp_path
    cache = _ClientCache(capacity=1, configurations=10)
    site = cluster("TX-0004")
    services.cluster_set_credentials(
        cluster=site, actor="t", source="test", api_url="https://10.9.8.7:6443", token="s3cret-token", ca_data=ca_pem()
    )
    with_ca = Cluster.objects.select_related("site").get(pk=site.pk)
    first = cache.get(with_ca)
    ca_file = Path(first.configuration.ssl_ca_cert)
    assert ca_file.exists()

    ca_file.unlink()  # a clean-up of the data directory
    cache.get(cluster("TX-0005"))  # drops TX-0004's client (capacity 1)
    again = cache.get(with_ca)

    assert again.configuration is not first.configuration
    assert Path(again.configuration.ssl_ca_cert).exists()
