"""LangGraph workflows, one folder per pipeline (generate, rubric_prefs, rubric_drafts, esc_search,
factcheck, factbench, bench), each with ``configuration.py`` (its settings, declared once),
``state.py``, ``nodes.py`` and ``graph.py`` (the whole flow, top to bottom). ``graphs.common`` holds
what they share: the job runner over the store's work queue, candidate helpers, the config base.
State holds ids and scores; texts live in the store."""
