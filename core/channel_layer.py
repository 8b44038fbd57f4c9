"""channels_redis's channel layer, receiving a message in one Redis round trip instead of four.

For every message a socket's process receives, channels_redis 4.3 runs a Lua script sent whole
(moving messages left in the channel's backup set back), BZPOPMIN, then ZADD of the message to the
backup set before handing it over, and ZPOPMIN of it from there after; the next receive waits for
the last. The backup exists for a receive cancelled while it awaits that ZADD: the message would
be gone from the channel and not yet handed over. Here nothing is awaited between BZPOPMIN's
answer and the hand-over (asyncio switches tasks only at an await), so no cancellation can fall
between them and there is nothing to back up: one round trip per message. A cancellation while
BZPOPMIN itself waits loses its answer in both versions alike.

The script still runs once per channel, host and process, for messages a process of the stock
layer left in a backup set of a channel this one also reads (a process's own "specific." channel
is its alone, so only shared channels can have one). Sending, groups and the message format are
channels_redis's own (core/group_send.py writes the same format).
"""

from __future__ import annotations

from typing import Any

from channels_redis.core import RedisChannelLayer

RESTORE = """
local backed_up = redis.call('ZRANGE', ARGV[2], 0, -1, 'WITHSCORES')
for i = #backed_up, 1, -2 do
    redis.call('ZADD', ARGV[1], backed_up[i], backed_up[i - 1])
end
redis.call('DEL', ARGV[2])
"""


class RedisLayer(RedisChannelLayer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.restored: set[tuple[int, str]] = set()

    async def _brpop_with_clean(self, index: int, channel: str, timeout: float) -> Any:
        connection = self.connection(index)
        if (index, channel) not in self.restored:
            await connection.eval(RESTORE, 0, channel, self._backup_channel_name(channel))
            self.restored.add((index, channel))
        result = await connection.bzpopmin(channel, timeout=timeout)
        return result[1] if result is not None else None

    async def _clean_receive_backup(self, index: int, channel: str) -> None:
        """Nothing was backed up (see the module's docstring)."""
