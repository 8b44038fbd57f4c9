"""core/group_send.py against channels_redis itself, on the real Redis: what GroupSender writes,
channels_redis's receive reads as its own group_send's message (process-local and plain
channels, several groups); full channels are counted and skipped, expired members dropped."""

from __future__ import annotations

import asyncio
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from channels.layers import InMemoryChannelLayer
from channels_redis.core import RedisChannelLayer
from django.conf import settings

from core.group_send import GroupSender


def layer(**config: Any) -> RedisChannelLayer:
    return RedisChannelLayer(hosts=[settings.REDIS_URL], prefix=f"test-gs-{uuid.uuid4().hex[:8]}", **config)


def run(coroutine: Any) -> Any:
    """On a thread of its own: an earlier test (Playwright's) may leave a loop running on this one."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def test_channels_redis_receives_what_it_sends_itself() -> None:
    channels = layer()
    sender = GroupSender(channels, timeout=5)

    async def scenario() -> list[dict[str, Any]]:
        local = await channels.new_channel()  # "specific.<process>!<id>", as a consumer's
        plain = "plain-channel"
        for name in (local, plain):
            await channels.group_add("users", name)
        await channels.group_add("others", plain)
        message = {"type": "generation.event", "event": {"type": "generation.succeeded", "n": 1}}
        sender.send("users", message)
        sender.send("others", {"type": "generation.event", "event": {"n": 2}})
        sender.send("nobody", {"type": "generation.event"})  # an empty group: nothing happens
        received = [
            await channels.receive(local),
            await channels.receive(plain),
            await channels.receive(plain),
        ]
        await channels.flush()
        return received

    try:
        received = run(scenario())
    finally:
        sender.close()
    assert received == [
        {"type": "generation.event", "event": {"type": "generation.succeeded", "n": 1}},
        {"type": "generation.event", "event": {"type": "generation.succeeded", "n": 1}},
        {"type": "generation.event", "event": {"n": 2}},
    ]


def test_a_full_channel_is_counted_and_skipped_as_channels_redis_does() -> None:
    channels = layer(capacity=2)
    sender = GroupSender(channels, timeout=5)

    async def scenario() -> tuple[list[int], list[int]]:
        await channels.group_add("g", "slow")
        counts = [sender.send("g", {"type": "m", "i": i}) for i in range(3)]
        got = [(await channels.receive("slow"))["i"] for _ in range(2)]
        await channels.flush()
        return counts, got

    try:
        counts, got = run(scenario())
    finally:
        sender.close()
    assert counts == [0, 0, 1] and got == [0, 1]


def test_it_takes_only_the_layers_it_knows() -> None:
    assert GroupSender.supports(layer())
    assert not GroupSender.supports(InMemoryChannelLayer())
    assert not GroupSender.supports(RedisChannelLayer(hosts=[{"sentinels": [("127.0.0.1", 26379)]}]))

    class Custom(RedisChannelLayer):
        async def group_send(self, group: str, message: dict[str, Any]) -> None:
            return None

    assert not GroupSender.supports(Custom(hosts=[settings.REDIS_URL]))
