"""Training from the store with trl: criterion-conditioned reward model, RM-guided GRPO, turn-level
DPO and SFT (one config dataclass + one trainer per method). Built by the training issue; the
store's ``db export`` already writes the datasets these trainers load."""
