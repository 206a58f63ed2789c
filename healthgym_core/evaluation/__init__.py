"""Metrics for synthetic patient sequences: the trial's own Wasserstein gap and metrics comparable across trials."""
