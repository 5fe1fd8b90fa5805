"""Replicas of one endpoint: least-busy choice, health marking and probing, failover.

A role may name several base URLs serving the same model (one vLLM per GPU node). Each request
goes to the healthy replica with the fewest requests in flight (ties rotate, so replicas share
the load). A replica that stops answering (connection refused or dropped, timeout, 502/503/504)
is marked down and the request fails over at once to another one; a background probe then
asks the down replica for ``/models`` every ``health_interval_s`` and puts it back when it
answers. With every replica down, requests still go out (to the one down longest) under the
client's retry backoff, so a run waits out a short outage instead of failing samples at once.
With a single URL there is nothing to fail over to and no health tracking.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

log = logging.getLogger("robustft")


@dataclass
class Replica:
    url: str
    in_flight: int = 0
    healthy: bool = True
    down_since: float = 0.0
    failures: int = 0  # times marked down
    served: int = 0  # successful requests
    reason: str = ""
    probe: asyncio.Task | None = field(default=None, repr=False)


class ReplicaPool:
    """Chooses a replica per request and tracks health; ``probe(url)`` answers True when the
    replica is up again."""

    def __init__(self, urls: tuple[str, ...], probe: Callable[[str], Awaitable[bool]],
                 interval_s: float):
        if not urls:
            raise ValueError("a replica pool needs at least one base URL")
        self.replicas = [Replica(u) for u in urls]
        self._probe, self.interval_s = probe, interval_s
        self._turn = itertools.count()

    @property
    def failover(self) -> bool:
        return len(self.replicas) > 1

    def healthy(self) -> list[Replica]:
        return [r for r in self.replicas if r.healthy]

    def pick(self) -> Replica:
        """The healthy replica with the fewest requests in flight (ties rotate); with none
        healthy, the one that has been down longest."""
        up = self.healthy()
        if not up:
            return min(self.replicas, key=lambda r: r.down_since)
        least = min(r.in_flight for r in up)
        tied = [r for r in up if r.in_flight == least]
        return tied[next(self._turn) % len(tied)]

    def succeeded(self, replica: Replica) -> None:
        replica.served += 1
        if not replica.healthy:  # answered while every replica was down
            self._mark_up(replica)

    def failed(self, replica: Replica, reason: str) -> None:
        """The replica stopped answering: leave it out and probe it until it answers."""
        if not self.failover or not replica.healthy:
            return
        replica.healthy, replica.down_since, replica.reason = False, time.monotonic(), reason
        replica.failures += 1
        log.warning("endpoint %s is down (%s); %d of %d replicas left", replica.url, reason,
                    len(self.healthy()), len(self.replicas))
        if replica.probe is None or replica.probe.done():
            replica.probe = asyncio.get_running_loop().create_task(self._watch(replica))

    def _mark_up(self, replica: Replica) -> None:
        replica.healthy, replica.reason = True, ""
        log.warning("endpoint %s is back", replica.url)

    async def _watch(self, replica: Replica) -> None:
        while not replica.healthy:
            await asyncio.sleep(self.interval_s)
            try:
                up = await self._probe(replica.url)
            except Exception:  # a probe that raises is a failed probe
                up = False
            if up and not replica.healthy:
                self._mark_up(replica)

    def status(self) -> list[dict]:
        """Per replica: url, healthy, requests served, times marked down, last reason."""
        return [{"url": r.url, "healthy": r.healthy, "served": r.served,
                 "failures": r.failures, "reason": r.reason} for r in self.replicas]

    async def close(self) -> None:
        tasks = [r.probe for r in self.replicas if r.probe is not None and not r.probe.done()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
