"""carealign: alignment data and models for high-stakes dialogue (medical answers, emotional support).

This package is the command line and the settings that tie the others together: ``store`` (SQL),
``agents`` (LLM engine and roles), ``graphs`` (LangGraph workflows), ``mcts``, ``training`` and
``benchmarks``.
"""

__version__ = "0.1.0"
