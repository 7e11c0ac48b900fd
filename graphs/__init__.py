"""LangGraph workflows. Each module assembles one graph in one function (``build_*_graph``) from
small node functions; state holds ids and scores, texts live in the store."""
