"""What every pipeline shares: the claim loop over the work queue (``runner``), writing and
de-duplicating candidate answers (``candidates``) and the configuration base (``config``)."""
