"""The worker's survival of a Redis loss, reduced to the kombu calls Celery makes (fleet/kombu_fixes.py).

A consumer holds an unacknowledged message on one channel and an auto-delete fanout queue on a later
channel (as a worker's task consumer and its remote-control/gossip consumers do); Redis is SIGKILLed;
the connection is collected and the task channel closed, in the order Celery's consumer does on a
connection loss. Upstream kombu raises the AttributeError that took the worker down; with our fix
nothing escapes and every channel ends closed.
"""

import pytest
from kombu import Connection, Exchange, Queue
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual

import fleet.celery  # noqa: F401  (installs the fix, as every edgefleet process does)
from tests.support import RedisServer

pytestmark = pytest.mark.integration

TASKS = Queue("fix-tasks", Exchange("fix-tasks"), routing_key="fix-tasks")
FANOUT = Queue("fix-fanout", Exchange("fix-fanout", type="fanout"), auto_delete=True)


def lose_the_broker_with_a_message_unacknowledged(broker: RedisServer) -> tuple[Connection, object]:
    """A connection whose task channel holds one unacknowledged message when Redis is SIGKILLed."""
    with Connection(broker.url) as producer_connection:
        producer = producer_connection.Producer()
        for i in range(2):
            producer.publish({"i": i}, exchange=TASKS.exchange, routing_key="fix-tasks", declare=[TASKS])

    connection = Connection(broker.url)
    received: list[object] = []
    tasks = connection.Consumer(
        [TASKS], channel=connection.channel(), callbacks=[lambda body, message: received.append(message)]
    )
    tasks.qos(prefetch_count=10)
    tasks.consume()
    connection.drain_events(timeout=5)
    control = connection.Consumer([FANOUT], channel=connection.channel(), callbacks=[lambda body, message: None])
    control.consume()
    assert len(received) == 1 and tasks.channel.qos._delivered  # one message held, not acknowledged

    broker.kill()
    return connection, tasks.channel


def test_upstream_kombu_still_crashes_closing_a_channel_after_the_broker_is_gone(
    private_redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reproducer, on kombu's own code: when this stops raising, upstream is fixed and
    fleet/kombu_fixes.py can go."""
    monkeypatch.setattr(virtual.Transport, "close_connection", virtual.Transport.close_connection.__wrapped__)
    monkeypatch.setattr(kombu_redis.QoS, "restore_unacked", kombu_redis.QoS.restore_unacked.__wrapped__)
    connection, task_channel = lose_the_broker_with_a_message_unacknowledged(private_redis)

    connection.collect(socket_timeout=1)
    with pytest.raises(AttributeError, match="hostname"):
        task_channel.close()  # type: ignore[attr-defined]


def test_with_the_fix_the_task_channel_is_closed_with_the_connection_and_nothing_escapes(
    private_redis: RedisServer,
) -> None:
    connection, task_channel = lose_the_broker_with_a_message_unacknowledged(private_redis)

    connection.collect(socket_timeout=1)
    assert task_channel.closed  # type: ignore[attr-defined]  # closed even though the channel after it failed
    task_channel.close()  # type: ignore[attr-defined]  # what blueprint.restart() does next: now harmless


def test_with_the_fix_a_channel_left_open_skips_restoring_instead_of_crashing(
    private_redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second guard alone: even if a channel escapes the collect, closing it later does not raise."""
    monkeypatch.setattr(virtual.Transport, "close_connection", virtual.Transport.close_connection.__wrapped__)
    connection, task_channel = lose_the_broker_with_a_message_unacknowledged(private_redis)

    connection.collect(socket_timeout=1)
    assert not task_channel.closed  # type: ignore[attr-defined]  # upstream's loop stopped before it
    task_channel.close()  # type: ignore[attr-defined]

    assert task_channel.closed  # type: ignore[attr-defined]
    assert not task_channel.qos._delivered  # type: ignore[attr-defined]  # given up, for Redis to re-deliver
