"""Replicas of one endpoint: least-busy choice, health marking and probing, failover.

A role may name several base URLs serving the same model (one vLLM per GPU node). Each request
goes to the healthy replica with the fewest requests in flight (ties rotate, so replicas share
the load). A replica that stops answering (connection refused or dropped, timeout, 502/503/504)
is marked down and the request fails over at once to another one; a background probe then
asks the down replica for ``/models`` every ``health_interval_s`` and puts it back when it
answers. With every replica down, requests still go out (to the one down longest) under the
client's retry backoff, so a run waits out a short outage instead of failing samples at once.
With a single URL there is nothing to fail over to and no health tracking.

The pool also tells an outage from a failing request (:class:`Outage`): the endpoint is
*down* from the first endpoint-level failure (refused or dropped connection, timeout, 5xx)
after its last successful call until the next success, whatever the replica; the client lets
calls wait through it (``client.outage_timeout``) instead of counting their retries.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from robustft.errors import EndpointError, EndpointOutage

log = logging.getLogger("robustft")
OUTAGE_MAX_WAIT_S = 5.0  # longest wait between a waiting call's tries while its endpoint is down
OUTAGE_NOTE_AFTER_S = 2.0  # an endpoint down this long is reported (not one failed call)
OUTAGE_NOTE_EVERY_S = 30.0  # how often a continuing outage is reported


@dataclass
class Outage:
    """The endpoint's state as calls see it: when it last answered, since when it has not
    (None: it is up), and how many calls are waiting for it."""

    last_ok: float = field(default_factory=time.monotonic)
    down_since: float | None = None  # monotonic time of the first failure after last_ok
    down_wall: float = 0.0  # the same moment, wall clock (for messages)
    reason: str = ""
    waiting: int = 0
    noted: float = 0.0  # when the last "down" note went out (monotonic)
    announced: bool = False  # a "down" note went out for this outage


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
            raise EndpointError("a replica pool needs at least one base URL")
        self.replicas = [Replica(u) for u in urls]
        self._probe, self.interval_s = probe, interval_s
        self._turn = itertools.count()
        self.outage = Outage()

    @property
    def name(self) -> str:
        return ", ".join(r.url for r in self.replicas)

    def answered_since(self, t: float) -> bool:
        """Some call to this endpoint succeeded after monotonic time ``t``."""
        return self.outage.last_ok > t

    def call_failed(self, reason: str) -> None:
        """An endpoint-level failure (connection, timeout, 5xx): starts an outage unless one
        is on already."""
        o = self.outage
        if o.down_since is None:
            o.down_since, o.down_wall, o.announced = time.monotonic(), time.time(), False
        o.reason = reason

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

    async def wait_out(self, error: str, model: str, tries: int, backoff_s: float,
                       timeout_s: float, notify: Callable[[str], None]) -> None:
        """One wait of a call while this endpoint is down (``error``: the call's last
        failure; ``tries``: its tries so far in the outage): backoff growing to
        ``OUTAGE_MAX_WAIT_S``; raises :class:`EndpointOutage` once the endpoint has been down
        for ``timeout_s``. Notes when the outage starts and every ``OUTAGE_NOTE_EVERY_S``."""
        o = self.outage
        if o.down_since is None:  # another call got through meanwhile
            return
        now = time.monotonic()
        down_for = now - o.down_since
        since = time.strftime("%H:%M:%S", time.localtime(o.down_wall))
        if down_for >= timeout_s:
            raise EndpointOutage(
                f"endpoint {self.name}{model} has not answered since {since} ({down_for:.0f} s"
                f", client.outage_timeout {timeout_s:g} s); last error: {error}")
        o.waiting += 1
        try:
            if (not o.announced and down_for >= OUTAGE_NOTE_AFTER_S) or (
                    o.announced and now - o.noted >= OUTAGE_NOTE_EVERY_S):
                notify(f"endpoint {self.name}{model} down since {since}, {o.waiting} call(s) "
                       f"waiting ({o.reason}); retrying with backoff, the run stops after "
                       f"{timeout_s:g} s down")
                o.announced, o.noted = True, now
            delay = min(backoff_s * 2 ** (tries - 1), OUTAGE_MAX_WAIT_S)
            delay *= 0.5 + random.random() / 2
            await asyncio.sleep(min(delay, max(timeout_s - down_for, 0.01)))
        finally:
            o.waiting -= 1

    def succeeded(self, replica: Replica) -> str | None:
        """A call succeeded; returns a note when this ends an outage that was announced."""
        replica.served += 1
        o, note = self.outage, None
        if o.down_since is not None and o.announced:
            note = (f"endpoint {self.name} is back after {time.monotonic() - o.down_since:.0f}"
                    f" s; {o.waiting} waiting call(s) resume")
        o.last_ok, o.down_since = time.monotonic(), None
        if not replica.healthy:  # answered while every replica was down
            self._mark_up(replica)
        return note

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
