"""Cost of tokens at configured prices (pure): prices per million prompt / completion tokens
by model name; a model without a price costs nothing here (and is reported as unpriced)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def price_of(prices: Mapping[str, tuple[float, float]], model: str | None
             ) -> tuple[float, float] | None:
    """The model's price: its own entry, else the longest priced name it starts with (a
    dated snapshot such as ``gpt-4.1-mini-2025-04-14`` under ``gpt-4.1-mini``)."""
    if not model:
        return None
    if model in prices:
        return prices[model]
    stems = [k for k in prices if model.startswith(k)]
    return prices[max(stems, key=len)] if stems else None


def call_cost(prices: Mapping[str, tuple[float, float]], model: str | None,
              prompt_tokens: int, completion_tokens: int) -> float:
    """The cost of one call (0 for an unpriced model)."""
    price = price_of(prices, model)
    if price is None:
        return 0.0
    return (prompt_tokens * price[0] + completion_tokens * price[1]) / 1e6


def cost_by_role(rows: Iterable[tuple[str, str | None, int, int]],
                 prices: Mapping[str, tuple[float, float]]) -> dict:
    """``rows``: (role, model, prompt tokens, completion tokens). Cost per role, the total,
    and the models that had no price."""
    by_role: dict[str, float] = {}
    unpriced: set[str] = set()
    for role, model, pt, ct in rows:
        by_role[role] = by_role.get(role, 0.0) + call_cost(prices, model, pt, ct)
        if price_of(prices, model) is None and (pt or ct):
            unpriced.add(model or "unknown")
    return {"by_role": dict(sorted(by_role.items())), "total": sum(by_role.values()),
            "unpriced_models": sorted(unpriced)}
