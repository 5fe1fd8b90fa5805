"""Budgets of one invocation: endpoint calls, tokens and cost (``call_budget``,
``token_budget``, ``cost_budget`` in the config; ``--call-budget``, ``--token-budget``,
``--cost-budget`` on the command line)."""

from __future__ import annotations

import asyncio

from robustft.errors import BudgetExceeded as BudgetExceeded  # its home: the errors family
from robustft.methods.cost import call_cost
from robustft.schemas import Completion


class Budget:
    """Counts endpoint calls, tokens and cost of this invocation (cache hits are free).

    A call is counted when it is issued, so ``call_budget`` is exact under concurrency; tokens
    are known only when replies arrive, so calls already in flight may pass ``token_budget``
    (and ``cost_budget``).
    When a limit is reached, the refused caller first waits for the calls in flight to finish
    (their replies reach the cache), so stopping wastes no call that was paid for.
    """

    def __init__(self, call_budget: int | None = None, token_budget: int | None = None,
                 cost_budget: float | None = None,
                 prices: dict[str, tuple[float, float]] | None = None):
        self.call_budget, self.token_budget = call_budget, token_budget
        self.cost_budget = cost_budget
        self.prices = prices or {}
        self.calls = self.tokens = self.in_flight = 0
        self.cost = 0.0
        self._idle: asyncio.Event | None = None

    def _exhausted(self) -> str | None:
        if self.call_budget is not None and self.calls >= self.call_budget:
            return f"call budget reached ({self.calls} calls)"
        if self.token_budget is not None and self.tokens >= self.token_budget:
            return f"token budget reached ({self.tokens} tokens)"
        if self.cost_budget is not None and self.cost >= self.cost_budget:
            return f"cost budget reached ({self.cost:.4f} at the configured prices)"
        return None

    async def reserve(self) -> None:
        """Count one call about to be issued, or raise once the calls in flight are done."""
        if (why := self._exhausted()) is not None:
            while self.in_flight:
                self._idle = self._idle or asyncio.Event()
                self._idle.clear()
                await self._idle.wait()
            raise BudgetExceeded(why)
        self.calls += 1
        self.in_flight += 1

    def release(self, completion: Completion | None) -> None:
        """A reserved call ended (``completion`` None when it failed)."""
        self.in_flight -= 1
        if completion is not None:
            self.tokens += completion.prompt_tokens + completion.completion_tokens
            self.cost += call_cost(self.prices, completion.model, completion.prompt_tokens,
                                   completion.completion_tokens)
        if not self.in_flight and self._idle is not None:
            self._idle.set()
