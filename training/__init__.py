"""Training from the store with trl: criterion-conditioned reward model, RM-guided GRPO, turn-level
DPO (CSO) and SFT, trl-shaped: one method = a ``<method>_config`` dataclass and a
``<method>_trainer`` (``rm``, ``grpo``, ``cso``, ``sft``). Shared pieces: ``common`` (the settings
every config inherits, trl arguments, LoRA, the result), ``config`` (the ``[train]`` TOML table,
validated against the configs), ``data_config`` and ``data`` (selection, leak-free hash split,
datasets; the queries live in ``store.training``), ``criteria`` (criterion-level rows, thresholds,
S1/S2/S3), ``rm_scorer`` (a trained reward model as a batched scorer on any device, calibration on the
calibration split, evaluation on the test split), ``rm_eval`` (a reward model as the judge of an
external pairwise bench file), ``manifest`` (what made a model) and ``run.train_from_store`` (the
one entry point the CLI uses: checkpoints, resume, the run record).

Layering: this package may import ``agents``, ``benchmarks`` and ``store``, never ``graphs`` or
``carealign``."""
