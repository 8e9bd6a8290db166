"""The restore targets the rollouts app gives the sites app (sites.rehydration): for each stateful
application with a restore image, the image and the namespace a restore Job runs.

Registered by RolloutsConfig.ready. Values are checked again here, at use, as they were when the
application was saved: a row changed behind the services' back (a database edit) restores nothing
rather than something unchecked.
"""

from collections.abc import Collection

from django.core.exceptions import ValidationError

from rollouts.models import Application
from rollouts.validators import validate_dns_label, validate_image_reference
from sites.rehydration import RestoreTarget


def restore_targets(applications: Collection[str]) -> dict[str, RestoreTarget]:
    """The restore target of each named application that is stateful and has a valid restore image."""
    rows = (
        Application.objects.filter(name__in=list(applications), stateful=True)
        .exclude(restore_image="")
        .values_list("name", "namespace", "restore_image")
    )
    targets = {}
    for name, namespace, image in rows:
        try:
            validate_dns_label(namespace)
            validate_image_reference(image)
        except ValidationError:
            continue
        targets[name] = RestoreTarget(application=name, namespace=namespace, image=image)
    return targets
