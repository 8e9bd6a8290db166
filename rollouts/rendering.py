"""Rendering a release's manifest templates per site, and checking what comes out: the Django side.

The work itself is done by rollouts.templating (the sandbox is rollouts.sandbox) in a separate renderer
process with CPU-time, memory and wall-clock limits (rollouts.isolation): a template that asks for too
much is stopped there, and the error names the site and the limit. Nothing here compiles or renders a
template in this process.

When a release is rendered, and for which sites:

- created or changed (`validate_release`, API and admin): the sample site (any label asked for exists),
  then up to FLEET_RENDER_CHECK_SITES real sites chosen to cover every region and label set
  (rollouts.selectors.release_check_sites); within FLEET_RENDER_RELEASE_SECONDS. Quick, so a request
  answers in seconds, and it catches a template that fails at every real site.
- a rollout started (`ReleaseRenderer.check_sites`, rollouts.services.rollout_start) and a dry run
  (rollouts.dry_runs): every targeted site, within the same per-release limit, before anything is
  written. A template that fails at one site only (`{% if site.code == 'TX-0002' %}`) is refused here,
  naming the site.
- each site's commit step (rollouts.workflows): that site again, within the per-site limits: what was
  checked is checked again at use.

Every failure is fleet.errors.Invalid on the `templates` field naming the template path, the site, the
document index and the reason, or the site and the limit passed, so the API answers 400 and the admin
shows it on the form. The rollout workflow writes the output of `render_site_files` under
`apps/<application>/` in the site's repository; that folder belongs to the application.
"""

from collections.abc import Iterable
from typing import Any

from fleet.errors import Invalid
from rollouts import isolation
from rollouts.models import Application, Release
from rollouts.templating import (
    CLUSTER_SCOPED_KINDS,
    MAX_RENDERED_CHARS,
    MAX_TEMPLATE_CHARS,
    MAX_TEMPLATES,
    SAMPLE_SITE,
    AppFacts,
    ObjectKey,
    RenderedSite,
    SampleSite,
    TemplateProblem,
)
from rollouts.templating import check_template_shapes as _check_shapes

__all__ = [
    "CLUSTER_SCOPED_KINDS",
    "MAX_RENDERED_CHARS",
    "MAX_TEMPLATES",
    "MAX_TEMPLATE_CHARS",
    "OWNED_PREFIX",
    "SAMPLE_SITE",
    "ObjectKey",
    "ReleaseRenderer",
    "RenderedSite",
    "SampleSite",
    "check_template_shapes",
    "owned_prefix",
    "render_site",
    "render_site_files",
    "validate_release",
]

OWNED_PREFIX = "apps/{application}/"


def owned_prefix(application_name: str) -> str:
    """The repository folder a release of this application owns at every site."""
    return OWNED_PREFIX.format(application=application_name)


def check_template_shapes(templates: Any) -> dict[str, str]:
    """Check the `templates` object before anything is compiled: paths, count, sizes (Invalid if not)."""
    try:
        return _check_shapes(templates)
    except TemplateProblem as exc:
        raise Invalid(exc.message, field="templates") from exc


class ReleaseRenderer:
    """A release as the renderer process gets it (its material and digest), rendered for any number of
    sites there. Cheap to build: the renderer compiles a release once and keeps it by digest."""

    def __init__(self, *, application: Application, version: str, templates: Any, values: Any):
        if not isinstance(values, dict):
            raise Invalid("values must be a JSON object", field="values")
        facts = AppFacts(
            name=application.name,
            namespace=application.namespace,
            namespaces=tuple(application.namespaces),
            allowed_cluster_kinds=tuple(application.allowed_cluster_kinds or ()),
            stateful=bool(application.stateful),
        )
        self.application = application
        self.version = version
        self.values = values
        self.material = isolation.ReleaseMaterial.build(
            label=f"{application.name} {version}",
            application=facts.as_json(),
            version=version,
            templates=check_template_shapes(templates),
            values=values,
        )

    @classmethod
    def for_release(cls, release: Release) -> "ReleaseRenderer":
        return cls(
            application=release.application,
            version=release.version,
            templates=release.templates,
            values=release.values,
        )

    # The renderer process keeps compiled releases by the digest of everything rendering reads, so an
    # edited release (or application) is never rendered from a stale copy: nothing to cache here.
    cached = for_release

    def render(self, site: Any) -> dict[str, str]:
        """`{path: text}` for one site, every document checked. Raises Invalid naming path and document."""
        return self.render_checked(site).files

    def render_checked(self, site: Any, *, budget: isolation.ReleaseBudget | None = None) -> RenderedSite:
        """The files for one site and the objects they define, within the per-site limits (and `budget`)."""
        return isolation.render(self.material, site, budget=budget)

    def check_sites(self, sites: Iterable[Any], *, sample: bool = False) -> int:
        """Render for every site (the sample site first, with `sample`) within FLEET_RENDER_RELEASE_SECONDS
        in all; raises Invalid at the first site that fails or passes a limit. Returns how many rendered."""
        budget = isolation.ReleaseBudget(isolation.RenderLimits.current().release_seconds)
        if sample:
            self.render_checked(SAMPLE_SITE, budget=budget)
        for site in sites:
            self.render_checked(site, budget=budget)
        return budget.sites


def validate_release(
    *, application: Application, version: str, templates: Any, values: Any, sites: Iterable[Any] = ()
) -> None:
    """Render for the sample site, then for `sites` (rollouts.selectors.release_check_sites: a few real
    sites covering every region and label set); raise Invalid on the first problem or limit passed."""
    renderer = ReleaseRenderer(application=application, version=version, templates=templates, values=values)
    renderer.check_sites(sites, sample=True)


def render_site(release: Release, site: Any) -> dict[str, str]:
    """The release's files for one site, `{template path: text}`, checked."""
    return ReleaseRenderer.for_release(release).render(site)


def render_site_files(release: Release, site: Any) -> dict[str, str]:
    """What the rollout workflow writes into the site's repository: `{apps/<application>/<path>: text}`."""
    prefix = owned_prefix(release.application.name)
    return {prefix + path: text for path, text in render_site(release, site).items()}
