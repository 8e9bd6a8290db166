"""factory_boy factories for the models tests need most."""

from typing import TYPE_CHECKING

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission, User

from sites.choices import NodeState, SiteState
from sites.models import Cluster, Node, Site

if TYPE_CHECKING:
    from django.test import Client
    from rest_framework.test import APIClient


class UserFactory(factory.django.DjangoModelFactory[User]):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")

    @factory.post_generation
    def perms(self, create: bool, extracted: list[str] | None, **kwargs: object) -> None:
        """`UserFactory(perms=["sites.view_site", ...])` grants those permissions."""
        for name in extracted or []:
            app_label, codename = name.split(".")
            self.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))


class SiteFactory(factory.django.DjangoModelFactory[Site]):
    class Meta:
        model = Site
        skip_postgeneration_save = True

    code = factory.Sequence(lambda n: f"TX-{n + 1000:04d}")
    name = factory.Sequence(lambda n: f"Restaurant {n}")
    region = "us-south"
    timezone = "America/Chicago"
    state = SiteState.ACTIVE
    cluster = factory.RelatedFactory("tests.factories.ClusterFactory", factory_related_name="site")


class ClusterFactory(factory.django.DjangoModelFactory[Cluster]):
    class Meta:
        model = Cluster

    site = factory.SubFactory(SiteFactory, cluster=None)


class NodeFactory(factory.django.DjangoModelFactory[Node]):
    class Meta:
        model = Node

    serial = factory.Sequence(lambda n: f"SN{n:08d}")
    hostname = factory.Sequence(lambda n: f"node-{n}")
    mac = factory.Sequence(lambda n: f"52:54:00:{(n >> 16) & 255:02x}:{(n >> 8) & 255:02x}:{n & 255:02x}")
    site = factory.SubFactory(SiteFactory)
    state = NodeState.ACTIVE


def api_key_for(user: User, **kwargs: object) -> str:
    """A fresh integration key for `user` (through the service, as auth/token/ issues one)."""
    from fleet.api.tokens import api_token_issue

    _token, key = api_token_issue(user=user, actor="test", source="test", **kwargs)  # type: ignore[arg-type]
    return key


def api_for(perms: list[str], username: str = "clerk") -> "APIClient":
    """An API client for a user with exactly `perms` (e.g. "sites.change_node")."""
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(UserFactory(username=username, perms=perms))
    return client


def admin_for(perms: list[str], username: str = "clerk") -> "Client":
    """An admin-site client for a staff user with exactly `perms`."""
    from django.test import Client

    client = Client()
    client.force_login(UserFactory(username=username, is_staff=True, perms=perms))
    return client
