"""Toy models trained in the project on planted tasks: modular addition (p = 113, for the local
interaction basis) and Bigram-Backcopy (the active-dormant attention-sink mechanism)."""

from .bigram_backcopy import BBResult, BBTask, BBTrainConfig, bb_experiment, bb_mechanism, train_bb

__all__ = ["BBResult", "BBTask", "BBTrainConfig", "bb_experiment", "bb_mechanism", "train_bb"]
