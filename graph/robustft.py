"""Builder of the per-sample RobustFT graph (all wiring lives here).

    START ─┬─► direct_expert ────┬─► checker ─(noisy, index ready)─► retrieve ─► context_relabel
           ├─► reasoning_expert ─┘      └─(clean | error | before the index)─► END      │
           └─(already detected noisy)─► retrieve                    reviewer ◄─(ok)─────┘

Ablations (config ``relabel``): without context, noisy samples go straight to the reviewer;
without the reviewer, the context answer is final.
"""

from __future__ import annotations

from langgraph.graph import END, START, StateGraph

from robustft.agents.base import Deps
from robustft.graph import nodes
from robustft.graph.state import SampleState


def build_robustft_graph():
    g = StateGraph(SampleState, context_schema=Deps)
    g.add_node("direct_expert", nodes.direct_expert)
    g.add_node("reasoning_expert", nodes.reasoning_expert)
    g.add_node("checker", nodes.checker)
    g.add_node("retrieve", nodes.retrieve)
    g.add_node("context_relabel", nodes.context_relabel)
    g.add_node("reviewer", nodes.reviewer)
    g.add_conditional_edges(START, nodes.start,
                            ["direct_expert", "reasoning_expert", "retrieve", "reviewer"])
    g.add_edge(["direct_expert", "reasoning_expert"], "checker")
    g.add_conditional_edges("checker", nodes.after_checker, ["retrieve", "reviewer", END])
    g.add_edge("retrieve", "context_relabel")
    g.add_conditional_edges("context_relabel", nodes.after_context, ["reviewer", END])
    g.add_edge("reviewer", END)
    return g.compile()
