"""A channel group send in two Redis round trips, from a thread without an event loop.

channels_redis's ``RedisChannelLayer.group_send`` takes four round trips (drop expired members,
read the members, drop expired messages of each channel, then a Lua script sent whole every time)
on an asyncio client, and a thread that publishes events (generations/publisher.py) ran an event
loop around every send for it: about 2 ms an event on this machine, on the path of every
generation's terminal event. ``GroupSender`` writes the same thing in channels_redis's own format
(its key names, serializer, per-channel capacity and expiry, through the layer's own helpers) with
a synchronous client: one pipelined read of the members, one registered script (EVALSHA) that
drops expired messages and adds the new one to each channel. Receiving is channels_redis's, as
before. A layer it does not know (another backend, Sentinel hosts) sends as it always did.
"""

from __future__ import annotations

import time
from typing import Any

import redis
from channels_redis.core import RedisChannelLayer

PUSH = """
local over = 0
local n = #KEYS
local now = ARGV[2 * n + 1]
local expiry = tonumber(ARGV[2 * n + 2])
local stale = tonumber(ARGV[2 * n + 3])
for i = 1, n do
    redis.call('ZREMRANGEBYSCORE', KEYS[i], 0, stale)
    if redis.call('ZCOUNT', KEYS[i], '-inf', '+inf') < tonumber(ARGV[n + i]) then
        redis.call('ZADD', KEYS[i], now, ARGV[i])
        redis.call('EXPIRE', KEYS[i], expiry)
    else
        over = over + 1
    end
end
return over
"""


class GroupSender:
    """Sends to groups of one RedisChannelLayer; ``supports`` says whether it can."""

    def __init__(self, layer: Any, timeout: float) -> None:
        self.layer = layer
        self.timeout = timeout
        self.clients: dict[int, Any] = {}
        self.scripts: dict[int, Any] = {}

    @staticmethod
    def supports(layer: Any) -> bool:
        """channels_redis's own layer on plain Redis URLs (its group send not replaced)."""
        own = isinstance(layer, RedisChannelLayer) and type(layer).group_send is RedisChannelLayer.group_send
        if not own:
            return False
        return all(set(host) == {"address"} and isinstance(host["address"], str) for host in layer.hosts)

    def send(self, group: str, message: dict[str, Any]) -> int:
        """Add ``message`` to every channel of ``group``; how many channels were full."""
        layer = self.layer
        now = time.time()
        pipe = self.client(layer.consistent_hash(group)).pipeline(transaction=False)
        key = layer._group_key(group)
        pipe.zremrangebyscore(key, min=0, max=int(now) - layer.group_expiry)
        pipe.zrange(key, 0, -1)
        members: list[bytes] = pipe.execute()[1]
        if not members:
            return 0
        names = [member.decode("utf8") for member in members]
        by_connection, messages, capacities = layer._map_channel_keys_to_connection(names, message)
        over = 0
        for index, keys in by_connection.items():
            args = [messages[k] for k in keys] + [capacities[k] for k in keys]
            args += [now, int(layer.expiry), int(now) - int(layer.expiry)]
            over += int(self.script(index)(keys=keys, args=args))
        return over

    def client(self, index: int) -> Any:
        if index not in self.clients:
            address = self.layer.hosts[index]["address"]
            timeout = self.timeout
            client = redis.Redis.from_url(address, socket_timeout=timeout, socket_connect_timeout=timeout)
            self.clients[index] = client
        return self.clients[index]

    def script(self, index: int) -> Any:
        """PUSH registered on host ``index`` (sent by its hash, EVALSHA; whole only once)."""
        if index not in self.scripts:
            self.scripts[index] = self.client(index).register_script(PUSH)
        return self.scripts[index]

    def close(self) -> None:
        for client in self.clients.values():
            client.close()
        self.clients.clear()
        self.scripts.clear()
