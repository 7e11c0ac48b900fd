"""Evaluation harnesses (fact-checking, rubric scoring, strategy accuracy and bias, medication
knowledge). Built by their own issues; results go to the store's ``bench_results`` table."""
