"""A user's own order: one of their waiting generations put ahead of their other waiting ones
(ComfyUI's ``front``), never ahead of anyone else's.

The user's waiting generations of one queue (pool and lane) hold *places*: the queued ones places
in the RQ list, the pending ones places in the release order (``lane_entered_at``). Putting one
first hands the places round among them: it takes the first place, each of the others moves one
place on, and no place changes hands with another user, so nobody else's job moves at all.

When the one put first is pending (its owner at their in-flight cap) and others of theirs are
queued, it takes the first queued place: the last of theirs in RQ goes back to pending (first in
the release order), it is released into RQ, and the RQ places are handed round as above.
"""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from generations import caps, lifecycle, queues
from generations.models import Generation, GenerationStatus

WAITING = (GenerationStatus.QUEUED, GenerationStatus.PENDING)

# Write ARGV (job ids, in the wanted order) into the places those ids hold in the list now; ids
# no longer in the list (a worker took them meanwhile) are left out. Atomic: no pop comes between.
REORDER = """
local list = redis.call('LRANGE', KEYS[1], 0, -1)
local wanted = {}
for _, id in ipairs(ARGV) do wanted[id] = true end
local places, present = {}, {}
for i, id in ipairs(list) do
  if wanted[id] then table.insert(places, i - 1); present[id] = true end
end
local order = {}
for _, id in ipairs(ARGV) do if present[id] then table.insert(order, id) end end
for i, place in ipairs(places) do redis.call('LSET', KEYS[1], place, order[i]) end
return #places
"""


def waiting_mates(generation: Generation) -> tuple[list[Generation], list[Generation]]:
    """The owner's other waiting generations of the same queue: (queued, pending), each in its
    order."""
    mates = Generation.objects.filter(
        user_id=generation.user_id,
        pool=generation.pool,
        lane=generation.lane,
        relax=generation.relax,
        status__in=WAITING,
    ).exclude(pk=generation.pk)
    ordered = list(mates.order_by("lane_entered_at", "created_at"))
    return (
        [g for g in ordered if g.status == GenerationStatus.QUEUED],
        [g for g in ordered if g.status == GenerationStatus.PENDING],
    )


def hand_round(first: Generation, others: list[Generation]) -> None:
    """``first`` takes the earliest of the places (``lane_entered_at``) that it and ``others`` hold,
    each of the others the next one."""
    members = [first, *others]
    places: list[datetime] = sorted(g.lane_entered_at for g in members)
    for member, place in zip(members, places, strict=True):
        if member.lane_entered_at != place:
            Generation.objects.filter(pk=member.pk).update(lane_entered_at=place)
            member.lane_entered_at = place


def reorder_rq(generations: list[Generation]) -> int:
    """Their RQ jobs into the places they hold in their queue, in this order."""
    if not generations:
        return 0
    queue = queues.queue_key(generations[0].queue_name)
    script = queues.redis_client().register_script(REORDER)
    return int(script(keys=[queue], args=[queues.job_id_for(g) for g in generations]))


def put_first(generation: Generation) -> bool:
    """Put a waiting generation ahead of its owner's other waiting ones of its queue. Call once it
    is committed (and, when queued, enqueued). False when it no longer waits."""
    with transaction.atomic():
        caps.lock_account(generation.user_id)  # one reordering or release per user at a time
        generation.refresh_from_db()
        if generation.status not in WAITING:
            return False
        queued, pending = waiting_mates(generation)
        if generation.status == GenerationStatus.PENDING and queued:
            last = queued.pop()
            if lifecycle.hold_back(last):  # queued -> pending, out of RQ
                hand_round(last, pending)
                lifecycle.release([generation.pk], timezone.now())  # enqueued after commit
                generation.refresh_from_db()
        if generation.status == GenerationStatus.PENDING:
            hand_round(generation, pending)
            return True
        hand_round(generation, queued)
        members = [generation, *queued]
    transaction.on_commit(lambda: reorder_rq(members))
    return True
