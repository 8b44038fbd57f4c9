"""core/channel_layer.py on the real Redis: a socket's process receives each message in one round
trip (no backup set written or read per message), in order, including messages another process
of the stock layer left in a backup set; GroupSender sends to it as to channels_redis's own."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import redis
from channels_redis.core import RedisChannelLayer
from django.conf import settings

from core.channel_layer import RedisLayer
from core.group_send import GroupSender


def run(coroutine: Any) -> Any:
    """On a thread of its own: an earlier test (Playwright's) may leave a loop running on this one."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


class Monitor:
    """The commands Redis runs while it is open that name ``prefix`` (Redis's MONITOR)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.commands: list[str] = []
        self.client = redis.Redis.from_url(settings.REDIS_URL)
        self.ready = threading.Event()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.listen, daemon=True)

    def listen(self) -> None:
        with self.client.monitor() as monitor:
            self.ready.set()
            for command in monitor.listen():
                if self.prefix in command["command"]:
                    self.commands.append(command["command"])
                if self.done.is_set() and "monitor-end" in command["command"]:
                    return

    def __enter__(self) -> Monitor:
        self.thread.start()
        self.ready.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.1)
        self.done.set()
        redis.Redis.from_url(settings.REDIS_URL).get("monitor-end")
        self.thread.join(5)


def test_each_message_is_received_in_order_without_a_backup_set() -> None:
    prefix = f"test-cl-{uuid.uuid4().hex[:8]}"
    layer = RedisLayer(hosts=[settings.REDIS_URL], prefix=prefix)
    sender = GroupSender(layer, timeout=5)
    assert GroupSender.supports(layer)

    async def scenario() -> list[dict[str, Any]]:
        channel = await layer.new_channel()  # "specific.<process>!<id>", as a socket's
        await layer.group_add("user.1", channel)
        for n in range(3):
            sender.send("user.1", {"type": "generation.event", "event": {"n": n}})
        received = [await layer.receive(channel) for _ in range(3)]
        await layer.flush()
        return received

    try:
        with Monitor(prefix) as monitor:
            received = run(scenario())
    finally:
        sender.close()
    assert [message["event"]["n"] for message in received] == [0, 1, 2]
    backup = [command.split()[0] for command in monitor.commands if "$inflight" in command]
    # One look at a backup set left by a stock process (the script and what it runs), once for
    # the channel; nothing per message (the stock layer: ZADD and ZPOPMIN each, then the script).
    assert backup.count("EVAL") == 1 and not {"ZADD", "ZPOPMIN"} & set(backup), backup
    pops = [command for command in monitor.commands if command.startswith("BZPOPMIN")]
    assert len(pops) >= 3


def test_a_message_left_in_a_stock_layers_backup_set_is_delivered_first() -> None:
    prefix = f"test-cl-{uuid.uuid4().hex[:8]}"
    stock = RedisChannelLayer(hosts=[settings.REDIS_URL], prefix=prefix)
    lean = RedisLayer(hosts=[settings.REDIS_URL], prefix=prefix)
    client = redis.Redis.from_url(settings.REDIS_URL)

    async def scenario() -> list[dict[str, Any]]:
        await stock.send("work", {"type": "m", "n": 1})
        await stock.send("work", {"type": "m", "n": 2})
        # What a stock receive cancelled after its BZPOPMIN leaves behind: the message moved to
        # the channel's backup set, gone from the channel itself.
        key = f"{prefix}work"
        member, score = client.zpopmin(key)[0]
        client.zadd(stock._backup_channel_name(key), {member: score})
        got = [await lean.receive("work"), await lean.receive("work")]
        await lean.flush()
        return got

    assert [message["n"] for message in run(scenario())] == [1, 2]
