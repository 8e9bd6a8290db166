"""The control plane's work on the edge: onboarding and the base stack, the Kubernetes client, bootstrap
tokens, node lifecycle and health, rollouts and their approval policy, release rendering limits and
the drift check."""

from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

from fleet.settings.base import PRODUCTION, env

# Onboarding a site (sites.workflows.onboard) and its base stack (templates/base-stack/<version>/, rendered
# by rollouts.base_stack): where the base stack's Vector agents ship the sites' logs (an http(s) endpoint
# that accepts Vector's `http` sink; empty: logs stay at the edge, Vector drops them), which template
# version new sites get (default: the newest folder), and how often a waiting onboarding looks again at
# the site (its cluster answering, the base stack applied) and at a git host that keeps failing.
FLEET_LOG_SINK = env.str("FLEET_LOG_SINK", default="").strip()
FLEET_BASE_STACK_VERSION = env.str("FLEET_BASE_STACK_VERSION", default="").strip()
# The K3s version policy (sites.k3s_versions): the version the fleet is moving to, and how many minor
# versions behind it a site may be before it is flagged (K3s upgrades one minor version at a time).
FLEET_K3S_TARGET_VERSION = env.str("FLEET_K3S_TARGET_VERSION", default="v1.31.4+k3s1").strip()
FLEET_K3S_ALLOWED_MINOR_SKEW = env.int("FLEET_K3S_ALLOWED_MINOR_SKEW", default=1)
FLEET_ONBOARD_POLL_SECONDS = env.float("FLEET_ONBOARD_POLL_SECONDS", default=30.0)
_log_sink = urlsplit(FLEET_LOG_SINK)
if FLEET_LOG_SINK and (_log_sink.scheme not in ("http", "https") or not _log_sink.hostname or "@" in _log_sink.netloc):
    raise ImproperlyConfigured(
        "refusing to start: FLEET_LOG_SINK must be an http(s):// URL with a host and no user name"
    )
if PRODUCTION and FLEET_LOG_SINK and _log_sink.scheme != "https":
    raise ImproperlyConfigured("refusing to start: FLEET_LOG_SINK must use https:// in production")
KUBE_TIMEOUT_SECONDS = env.float("FLEET_KUBE_TIMEOUT", default=10.0)
# Kubernetes API clients kept per worker process (least recently used dropped): each holds a TLS context
# and a connection pool, so a bound keeps a worker that touched 3000 sites from holding 3000 of them.
KUBE_CLIENT_CACHE_SIZE = env.int("FLEET_KUBE_CLIENT_CACHE_SIZE", default=256)
# Their configurations (the stored kubeconfig decrypted, parsed and checked: ~10 ms of CPU to rebuild, a few
# KB to keep) are kept for more sites, so a probe round over more sites than the clients does not parse
# every kubeconfig again; set it at least to the number of sites.
KUBE_CLIENT_CONFIGURATION_CACHE_SIZE = env.int("FLEET_KUBE_CLIENT_CONFIGURATION_CACHE_SIZE", default=8192)
# How long a registered machine has to become a Ready node before the provisioning gives up on it.
FLEET_JOIN_DEADLINE_SECONDS = env.int("FLEET_JOIN_DEADLINE_SECONDS", default=30 * 60)
# A bootstrap token revokes itself after this many refused registrations (a serial it was not issued for,
# a machine of another site, a MAC that does not match...), and puts at most this many machines in
# quarantine (sites.registration).
FLEET_BOOTSTRAP_MAX_REFUSALS = env.int("FLEET_BOOTSTRAP_MAX_REFUSALS", default=5)
FLEET_BOOTSTRAP_MAX_QUARANTINES = env.int("FLEET_BOOTSTRAP_MAX_QUARANTINES", default=3)
# Node lifecycle workflows (sites.workflows): wall-clock limit of one step against a site, how often a
# waiting step polls the site and a machine's check-in, and how long a drain or a wipe Job may take.
FLEET_NODE_STEP_TIMEOUT = env.float("FLEET_NODE_STEP_TIMEOUT", default=45.0)
FLEET_NODE_POLL_SECONDS = env.float("FLEET_NODE_POLL_SECONDS", default=10.0)
FLEET_NODE_CHECKIN_POLL_SECONDS = env.float("FLEET_NODE_CHECKIN_POLL_SECONDS", default=60.0)
FLEET_NODE_DRAIN_SECONDS = env.float("FLEET_NODE_DRAIN_SECONDS", default=30 * 60.0)
FLEET_NODE_WIPE_SECONDS = env.float("FLEET_NODE_WIPE_SECONDS", default=30 * 60.0)
# Health (sites.health, sites.alerts): a machine in service that has not been ready for this many seconds,
# while its cluster answers, raises a node-down alert on its site (resolved when it is ready again or
# leaves service). The probe notices it, so an alert opens within this plus FLEET_PROBE_INTERVAL.
FLEET_NODE_DOWN_AFTER = env.float("FLEET_NODE_DOWN_AFTER", default=300.0)
if not 0 <= FLEET_NODE_DOWN_AFTER <= 7 * 24 * 3600:
    raise ImproperlyConfigured("FLEET_NODE_DOWN_AFTER must be between 0 and 604800 seconds (a week)")
# Rollouts (rollouts.workflows): the driver's look-again while running and while paused/halted/awaiting
# approval, a site's sync and health polling, and the time limits of a site step and a driver step.
FLEET_ROLLOUT_POLL_SECONDS = env.float("FLEET_ROLLOUT_POLL_SECONDS", default=2.0)
FLEET_ROLLOUT_IDLE_POLL_SECONDS = env.float("FLEET_ROLLOUT_IDLE_POLL_SECONDS", default=30.0)
FLEET_ROLLOUT_SYNC_POLL_SECONDS = env.float("FLEET_ROLLOUT_SYNC_POLL_SECONDS", default=1.0)
FLEET_ROLLOUT_STEP_TIMEOUT = env.float("FLEET_ROLLOUT_STEP_TIMEOUT", default=60.0)
FLEET_ROLLOUT_DRIVE_TIMEOUT = env.float("FLEET_ROLLOUT_DRIVE_TIMEOUT", default=30.0)
# The approval policy (rollouts.approvals): every rollout waits for an approval before its first wave and
# between waves, under the two-person rule, unless its plan was marked low-risk by someone with
# rollouts.mark_low_risk. On in production; off by default elsewhere so the demo and tests run unattended.
FLEET_ROLLOUT_APPROVAL_POLICY = env.bool("FLEET_ROLLOUT_APPROVAL_POLICY", default=PRODUCTION)
# Rendering release templates (rollouts/isolation.py), always in a separate renderer process: per site
# at most FLEET_RENDER_CPU_SECONDS of CPU time, FLEET_RENDER_MEMORY_MB of memory (the process's address
# space) and FLEET_RENDER_TIMEOUT_SECONDS of wall-clock time; one release's check (at creation, at rollout
# start, a dry run) at most FLEET_RENDER_RELEASE_SECONDS in all, which must stay under the web server's
# request timeout (30 s): a rollout start renders every targeted site in its request. A release created
# or changed is rendered for the sample site and FLEET_RENDER_CHECK_SITES real sites. At most
# FLEET_DRY_RUN_MAX_ACTIVE dry runs (rollouts.dry_runs) run at a time, one per plan.
FLEET_RENDER_CPU_SECONDS = env.float("FLEET_RENDER_CPU_SECONDS", default=2.0)
FLEET_RENDER_MEMORY_MB = env.int("FLEET_RENDER_MEMORY_MB", default=512)
FLEET_RENDER_TIMEOUT_SECONDS = env.float("FLEET_RENDER_TIMEOUT_SECONDS", default=5.0)
FLEET_RENDER_RELEASE_SECONDS = env.float("FLEET_RENDER_RELEASE_SECONDS", default=20.0)
FLEET_RENDER_CHECK_SITES = env.int("FLEET_RENDER_CHECK_SITES", default=20)
FLEET_DRY_RUN_MAX_ACTIVE = env.int("FLEET_DRY_RUN_MAX_ACTIVE", default=4)
for _name in ("FLEET_RENDER_CPU_SECONDS", "FLEET_RENDER_TIMEOUT_SECONDS", "FLEET_RENDER_RELEASE_SECONDS"):
    if not 0 < globals()[_name] <= 3600:
        raise ImproperlyConfigured(f"{_name} must be more than 0 and at most 3600 seconds")
if not 64 <= FLEET_RENDER_MEMORY_MB <= 65536:
    raise ImproperlyConfigured("FLEET_RENDER_MEMORY_MB must be between 64 and 65536")
if FLEET_RENDER_CHECK_SITES < 0 or FLEET_DRY_RUN_MAX_ACTIVE < 1:
    raise ImproperlyConfigured("FLEET_RENDER_CHECK_SITES must be 0 or more and FLEET_DRY_RUN_MAX_ACTIVE at least 1")
# How long a pod of a release may wait in CrashLoopBackOff / ImagePullBackOff / ErrImagePull before its
# site fails (rollouts.health): long enough for a registry that blinks, short enough to stop a wave.
FLEET_ROLLOUT_POD_GRACE_SECONDS = env.float("FLEET_ROLLOUT_POD_GRACE_SECONDS", default=60.0)
# Drift check: every FLEET_DRIFT_INTERVAL seconds, the FLEET_DRIFT_BATCH sites checked longest ago.
FLEET_DRIFT_INTERVAL = env.float("FLEET_DRIFT_INTERVAL", default=60.0)
FLEET_DRIFT_BATCH = env.int("FLEET_DRIFT_BATCH", default=500)
# Sites per drift task: one message (and one Flower event trio) for this many checks, not one each.
FLEET_DRIFT_CHUNK = env.int("FLEET_DRIFT_CHUNK", default=25)
