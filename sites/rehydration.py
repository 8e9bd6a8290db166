"""What restores an application's backup, and where: the restore targets, as the rollouts app defines them.

A machine reports its site's backups in its heartbeat, but a machine on a restaurant network is not
trusted to say which image the control plane runs on a replacement, in which namespace, with which
tolerations. Those come from the application's record (`rollouts.Application`: `stateful`, `namespace`,
`restore_image`). Dependencies point `rollouts -> sites`, so sites cannot read that model: the rollouts
app registers a provider here when it is ready (rollouts/apps.py), and sites asks it by application
name, the key a Backup already carries. With no provider registered, nothing is restorable: the
heartbeat keeps no backups and a replacement restores nothing (it says so), rather than trusting the edge.

The provider is asked twice, as for anything a worker uses: when a heartbeat is recorded (which backups
are kept, in which namespace) and when the re-hydration step creates a restore Job (the image and the
namespace it runs, read again then).
"""

from collections.abc import Callable, Collection
from dataclasses import dataclass


@dataclass(frozen=True)
class RestoreTarget:
    """How one application's data is restored: the Job runs `image` in `namespace`."""

    application: str
    namespace: str
    image: str


RestoreTargetProvider = Callable[[Collection[str]], dict[str, RestoreTarget]]

_provider: RestoreTargetProvider | None = None


def register_restore_targets(provider: RestoreTargetProvider) -> None:
    """Install the function that maps application names to their restore targets (one per process;
    the rollouts app calls this from its AppConfig.ready, a second call replaces the first)."""
    global _provider  # one provider per process, set when the apps are ready
    _provider = provider


def restore_targets(applications: Collection[str]) -> dict[str, RestoreTarget]:
    """The restore target of each named application that has one (stateful, with a restore image);
    names without one are absent. Empty when no provider is registered."""
    if _provider is None or not applications:
        return {}
    return _provider(applications)


def provider_registered() -> bool:
    """Whether an app told sites how applications are restored (for messages that explain a no-op)."""
    return _provider is not None
