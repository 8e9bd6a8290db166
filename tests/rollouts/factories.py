"""factory_boy factories for the rollouts models."""

import factory

from rollouts.models import Application, Release, RolloutPlan

CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ release.application }}-config
  namespace: {{ release.namespace }}
data:
  site: "{{ site.code }}"
  region: "{{ site.region }}"
  greeting: "{{ values.greeting }}"
"""

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ release.application }}
  namespace: {{ release.namespace }}
  labels: {app: "{{ release.application }}", version: "{{ release.version }}"}
spec:
  replicas: {{ values.replicas }}
  selector: {matchLabels: {app: "{{ release.application }}"}}
  template:
    metadata: {labels: {app: "{{ release.application }}"}}
    spec:
      containers:
        - name: app
          image: "registry.example.com/{{ release.application }}:{{ release.version }}"
"""

TEMPLATES = {"configmap.yaml": CONFIGMAP, "deployment.yaml": DEPLOYMENT}
VALUES = {"greeting": "hello", "replicas": 1}


class ApplicationFactory(factory.django.DjangoModelFactory[Application]):
    class Meta:
        model = Application

    name = factory.Sequence(lambda n: f"app{n}")
    team = "platform"
    namespace = factory.LazyAttribute(lambda a: a.name)


class ReleaseFactory(factory.django.DjangoModelFactory[Release]):
    class Meta:
        model = Release

    application = factory.SubFactory(ApplicationFactory)
    version = factory.Sequence(lambda n: f"1.{n}.0")
    templates = factory.LazyFunction(lambda: dict(TEMPLATES))
    values = factory.LazyFunction(lambda: dict(VALUES))


class RolloutPlanFactory(factory.django.DjangoModelFactory[RolloutPlan]):
    class Meta:
        model = RolloutPlan

    name = factory.Sequence(lambda n: f"plan-{n}")
    release = factory.SubFactory(ReleaseFactory)
    target = factory.LazyFunction(lambda: {"all": True})
    waves = factory.LazyFunction(lambda: [{"percent": 10}, {"percent": 100}])
    max_parallel = 5
    failure_threshold = factory.LazyFunction(lambda: {"count": 0})
    respect_windows = False
