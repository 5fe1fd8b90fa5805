"""Per-sample graph states, made from the methods' records: every state field of the record
(with its reducer, where parallel nodes both write it) and the stage's ``calls``. A node
writes only fields its method's record declares (LangGraph drops any other key)."""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict

from robustft.pipeline.records import ClearRecord, Record, RobustftRecord
from robustft.schemas import AgentCall


def state_schema(record: type[Record], name: str) -> type:
    """The graph state of ``record``'s method (a ``TypedDict``, every key optional)."""
    fields: dict[str, Any] = {}
    for n, info in record.state_fields().items():
        reducer = record.reducer(n)
        fields[n] = Annotated[info.annotation, reducer] if reducer else info.annotation
    fields["calls"] = Annotated[list[AgentCall], operator.add]  # this stage's, finish order
    return TypedDict(name, fields, total=False)


SampleState = state_schema(RobustftRecord, "SampleState")  # RobustFT
ClearState = state_schema(ClearRecord, "ClearState")
