"""Django settings for edgefleet (DJANGO_SETTINGS_MODULE=fleet.settings), gathered from one module per
concern. Every setting comes from a `FLEET_*` environment variable (documented in .env.example), with
defaults for the embedded set-up: SQLite under var/, a local Redis, bare git repositories under
var/repos. A wrong value refuses the start naming its variable, and `FLEET_ENV=production` refuses
anything unsafe (`checks`)."""

# In the order of the start-up checks each module runs: a wrong git setting is named before an edge one.
# isort: off
from fleet.settings.base import *  # noqa: F403
from fleet.settings.web import *  # noqa: F403
from fleet.settings.celery import *  # noqa: F403
from fleet.settings.git import *  # noqa: F403
from fleet.settings.edge import *  # noqa: F403
from fleet.settings.checks import refuse_unsafe

# isort: on

refuse_unsafe()
