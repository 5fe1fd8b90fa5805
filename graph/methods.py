"""The registry of methods: the one place a method is found by its name (``--method``)."""

from __future__ import annotations

from robustft.errors import UsageError
from robustft.graph import clear_run, robustft_run
from robustft.pipeline.contract import Method

METHODS: dict[str, Method] = {m.name: m for m in (robustft_run.METHOD, clear_run.METHOD)}


def method_named(name: str) -> Method:
    if name not in METHODS:
        raise UsageError(f"unknown method {name!r}: use {' or '.join(METHODS)}")
    return METHODS[name]
