"""Every input format carealign reads, validated before anything is stored (errors name the file,
line and field): instructions (``instructions``), MedErrBench (``mederrbench``), MedFact-schema
fact-check items (``factcheck``), ESConv dialogues (``esconv``), HealthBench and judge-evaluation
files (``rubric_bench``), strategy-bench dialogues (``strategy``) and medication items and drug
labels (``medication``)."""
