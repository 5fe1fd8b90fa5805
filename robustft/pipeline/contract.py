"""What a curation method is: its stages, the calls it plans, its fates.

Both methods (RobustFT in :mod:`robustft.graph.robustft_run`, CLEAR in
:mod:`robustft.graph.clear_run`) are a :class:`Method`. The runner, the Ray run and the
dry-run plan read everything they need from it, so no list of roles, stages or calls exists
twice.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from robustft.config import Config
from robustft.schemas import KEPT as KEPT  # noqa: F401  (re-exported: outputs, viewer)
from robustft.schemas import Fate as Fate
from robustft.schemas import Sample


class Stage(StrEnum):
    """How far a sample's record has come (the ``stage`` column of ``run.sqlite``)."""

    DETECTED = "detected"  # RobustFT: experts and checker done
    RELABELED = "relabeled"  # RobustFT: retrieval, context answer and reviewer done
    SCORED = "scored"  # CLEAR: confidence of the given response computed
    CORRECTED = "corrected"  # CLEAR: candidate proposed and judged
    INPUT_ERROR = "error"  # the input row failed validation: never processed


FateRow = tuple[str, str, str, str | None]  # (sample id, fate, why, final label)


@dataclass(frozen=True)
class PlannedCall:
    """Calls one role makes for one sample at one step, for the dry-run plan.

    ``values`` gives the prompt variables beyond the sample's own (``None``: the retrieved
    examples, estimated as ``retrieval.k`` copies of the sample). ``upper_bound`` marks steps
    that run for flagged samples only (or skip unparsed answers); ``at_most(config, rows)``
    caps the step's calls (a step for a drawn subset of the rows, e.g. probes).
    """

    step: str
    role: str
    prompt: str
    per_sample: Callable[[Config, Sample], int]
    values: Callable[[Config, Sample], dict[str, Any]] | None
    upper_bound: bool = False
    at_most: Callable[[Config, int], int] | None = None


@dataclass(frozen=True)
class Method:
    """A curation method as the runner sees it.

    - ``first_stage``: the stage every processed sample reaches first; ``first_keys`` the
      record fields it leaves (``--retry-errors`` keeps them when a later stage failed);
    - ``calls``: every call the method can make, in order (the dry-run plan);
    - ``stages(run)``: runs the dataset-level stages (barriers between them);
    - ``fates(run)``: the final (id, fate, why, label) of every processed sample.
    """

    name: str
    first_stage: Stage
    first_keys: tuple[str, ...]
    calls: tuple[PlannedCall, ...]
    stages: Callable[[Any], Awaitable[None]]
    fates: Callable[[Any], list[FateRow]]

    @property
    def roles(self) -> tuple[str, ...]:
        """The roles the method calls, in order of first use."""
        return tuple(dict.fromkeys(c.role for c in self.calls))
