"""A fix carried for kombu's Redis transport until upstream has one: a worker must survive losing Redis.

With kombu 5.7.0 and redis-py 8.1.0 a worker's main process exited at the first Redis loss with
`Unrecoverable error: AttributeError("'NoneType' object has no attribute 'hostname'")`. The sequence
(reproduced in tests/fleet/test_kombu_fixes.py against a real redis-server):

1. Redis dies. Celery's consumer calls `Connection.collect()`, which closes the transport's channels
   one after the other (`virtual.Transport.close_connection`) and then drops the transport's client.
2. Closing one channel raises a connection error (a Redis channel deletes its auto-delete fanout
   queues on close: the worker's remote-control and gossip queues), which ends the loop: the channels
   not yet closed stay open, among them the task consumer's, with its unacknowledged messages.
3. `blueprint.restart()` later closes the task consumer's channel. Its QoS restores the unacknowledged
   messages through a new client, built from the transport's client (`Channel._connparams`), which is
   now None: the AttributeError escapes `restart()` and the worker exits.

Two guards, each small: every channel is closed even when closing another one fails (so nothing is
left open with messages to restore after the client is gone), and restoring unacknowledged messages
on a channel whose connection is already gone is skipped with a warning instead of raising. Nothing is
lost by skipping: Redis itself re-delivers an unacknowledged message after the visibility timeout,
and edgefleet's messages are only wake-up calls (the workflow sweeper re-sends any that went missing).
"""

import logging
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.transport import virtual

log = logging.getLogger(__name__)

_APPLIED = "_edgefleet_fixed"


def _close_every_channel(original: Any) -> Any:
    def close_connection(self: Any, connection: Any) -> None:  # self: a virtual.Transport
        # Close what is left one by one, remembering the first error instead of stopping at it.
        first_error: BaseException | None = None
        try:
            self.cycle.close()
        except Exception as exc:  # the poller of a dead connection; the channels still need closing
            first_error = exc
        for channels in (self._avail_channels, self.channels):
            while channels:
                channel = channels.pop()
                try:
                    channel.close()
                except Exception as exc:
                    log.warning("closing a broker channel failed (%s); closing the others", exc)
                    first_error = first_error or exc
        if first_error is not None:
            raise first_error

    close_connection.__wrapped__ = original  # type: ignore[attr-defined]
    return close_connection


def _restore_only_while_connected(original: Any) -> Any:
    def restore_unacked(self: Any, client: Any = None) -> Any:  # self: a redis QoS
        channel = self.channel
        if client is None and channel._pool is None and getattr(channel.connection, "client", None) is None:
            log.warning(
                "not restoring %d unacknowledged message(s): the broker connection is gone; Redis "
                "re-delivers them after the visibility timeout",
                len(self._delivered),
            )
            self._delivered.clear()
            return None
        return original(self, client)

    restore_unacked.__wrapped__ = original  # type: ignore[attr-defined]
    return restore_unacked


def apply() -> None:
    """Install both guards (once; importing fleet.celery does it for every process)."""
    if getattr(virtual.Transport, _APPLIED, False):
        return
    virtual.Transport.close_connection = _close_every_channel(virtual.Transport.close_connection)  # type: ignore[method-assign]
    kombu_redis.QoS.restore_unacked = _restore_only_while_connected(kombu_redis.QoS.restore_unacked)  # type: ignore[method-assign]
    setattr(virtual.Transport, _APPLIED, True)
