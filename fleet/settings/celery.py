"""Celery: the broker, queues and routes, the workflow engine's knobs, the beat schedule, and Flower."""

from kombu import Exchange, Queue

from fleet.settings.base import PRODUCTION, REDIS_URL, env

# --- Celery ---------------------------------------------------------------------------------------
CELERY_BROKER_URL = env.str("FLEET_BROKER_URL", default=REDIS_URL)
CELERY_BROKER_CONNECTION_TIMEOUT = 5
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {
    # Redis re-delivers an unacknowledged message after this long; the sweeper re-enqueues sooner.
    "visibility_timeout": 3600,
    "socket_timeout": 10,
    "socket_connect_timeout": 5,
}
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Keep a worker's database connection across tasks (Celery otherwise reconnects for every task, ~10 ms
# on PostgreSQL); fleet/celery.py drops a broken or expired one before each task.
CELERY_DB_REUSE_MAX = env.int("FLEET_CELERY_DB_REUSE_MAX", default=1000)
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SOFT_TIME_LIMIT = env.int("FLEET_TASK_SOFT_TIME_LIMIT", default=120)
CELERY_TASK_TIME_LIMIT = env.int("FLEET_TASK_TIME_LIMIT", default=180)
CELERY_TASK_DEFAULT_QUEUE = "control"
CELERY_TASK_QUEUES = (
    Queue("control", Exchange("control"), routing_key="control"),
    Queue("io", Exchange("io"), routing_key="io"),
)
# Tasks that talk to a site (git, Kubernetes) go to `io`, so bookkeeping never queues behind them.
CELERY_TASK_ROUTES = {
    "sites.probe": {"queue": "io"},
    "sites.probe_sites": {"queue": "io"},
    # workflows.advance is sent to the queue its next step declares (Step.queue); this is the default.
    "workflows.advance": {"queue": "control"},
    "workflows.sweep": {"queue": "control"},
    "rollouts.drift_check": {"queue": "control"},
    "rollouts.drift_sites": {"queue": "io"},
}
# Workers report received/started/succeeded/failed to Flower. A "sent" event too would be a second
# publish for every message (a few per rollout site); Flower shows queue lengths from the broker.
CELERY_TASK_SEND_SENT_EVENT = False
CELERY_WORKER_SEND_TASK_EVENTS = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "UTC"
# Workflow engine (fleet.workflows). A worker advancing a run holds its lease this long (a step's
# timeout extends it); a dead worker's run is taken over once it expires. The sweeper wakes runs whose
# wake_at passed, and re-sends a wake-up message that has not been picked up after REDELIVER seconds
# (a lost message: broker restart, crash between commit and publish).
# A file the worker touches from its event loop every FLEET_WORKER_LIVENESS_SECONDS (fleet/liveness.py),
# for a liveness probe (deploy/base/worker.yaml); off when empty.
FLEET_WORKER_LIVENESS_FILE = env.str("FLEET_WORKER_LIVENESS_FILE", default="")
FLEET_WORKER_LIVENESS_SECONDS = env.float("FLEET_WORKER_LIVENESS_SECONDS", default=10.0)
FLEET_WORKFLOW_LEASE_SECONDS = env.float("FLEET_WORKFLOW_LEASE_SECONDS", default=60.0)
FLEET_WORKFLOW_SWEEP_SECONDS = env.float("FLEET_WORKFLOW_SWEEP_SECONDS", default=5.0)
FLEET_WORKFLOW_REDELIVER_SECONDS = env.float("FLEET_WORKFLOW_REDELIVER_SECONDS", default=60.0)
FLEET_WORKFLOW_SWEEP_BATCH = env.int("FLEET_WORKFLOW_SWEEP_BATCH", default=500)
# The health probe of every site: how often, and how many sites one `sites.probe_sites` message carries.
FLEET_PROBE_INTERVAL = env.float("FLEET_PROBE_INTERVAL", default=300.0)
FLEET_PROBE_CHUNK = env.int("FLEET_PROBE_CHUNK", default=25)
CELERY_BEAT_SCHEDULE = {
    "probe-all-sites": {
        "task": "sites.probe_all",
        "schedule": FLEET_PROBE_INTERVAL,
    },
    "workflow-sweep": {
        "task": "workflows.sweep",
        "schedule": FLEET_WORKFLOW_SWEEP_SECONDS,
        # A sweep that has waited longer than the interval is superseded by the next one.
        "options": {"expires": FLEET_WORKFLOW_SWEEP_SECONDS},
    },
    # api: Idempotency-Key records past their lifetime (they are ignored already; this keeps the table small).
    "api-purge-idempotency-records": {
        "task": "api.purge_idempotency_records",
        "schedule": 3600.0,
        "options": {"expires": 3600.0},
    },
    # rollouts.drift: compare each site's applied revision with its repository head, a batch per run.
    "rollout-drift-check": {
        "task": "rollouts.drift_check",
        "schedule": env.float("FLEET_DRIFT_INTERVAL", default=60.0),
        "options": {"expires": env.float("FLEET_DRIFT_INTERVAL", default=60.0)},
    },
}

# --- Flower ---------------------------------------------------------------------------------------
FLOWER_USER = env.str("FLEET_FLOWER_USER", default="" if PRODUCTION else "admin")
FLOWER_PASSWORD = env.str("FLEET_FLOWER_PASSWORD", default="" if PRODUCTION else "admin")
FLOWER_PORT = env.int("FLEET_FLOWER_PORT", default=5555)
# Flower keeps every task event it saw in memory; a bound keeps a long-running Flower's memory flat.
FLOWER_MAX_TASKS = env.int("FLEET_FLOWER_MAX_TASKS", default=10000)
