"""Builder of the per-sample CLEAR graph (all wiring lives here).

    START ─┬─► sample_answers ─┬─► score ─► END          (confidence C of the given response)
           ├─► self_reflect ───┘
           └─(scored, below γ)─► propose ─(a different answer)─► judge ─► END
                                         └─(same / none / error)─► END
"""

from __future__ import annotations

from langgraph.graph import END, START, StateGraph

from robustft.agents.base import Deps
from robustft.graph import clear_nodes as n
from robustft.graph.state import ClearState


def build_clear_graph():
    g = StateGraph(ClearState, context_schema=Deps)
    g.add_node("sample_answers", n.sample_node)
    g.add_node("self_reflect", n.reflect_node)
    g.add_node("score", n.score)
    g.add_node("propose", n.propose_node)
    g.add_node("judge", n.judge_node)
    g.add_conditional_edges(START, n.start, ["sample_answers", "self_reflect", "propose"])
    g.add_edge(["sample_answers", "self_reflect"], "score")
    g.add_edge("score", END)
    g.add_conditional_edges("propose", n.after_propose, ["judge", END])
    g.add_edge("judge", END)
    return g.compile()
