"""LangGraph wiring: per-sample state, thin nodes, one builder per graph, the stage runner."""
