"""Datasets and metrics: the input formats and their readers (``benchmarks.datasets``), the published
scoring rules (HealthBench, strategy Q / W-F1 / bias B, MedFact veracity and localisation,
medication accuracy and calibration) and the reports and plots built on them. Imports no pipeline."""
