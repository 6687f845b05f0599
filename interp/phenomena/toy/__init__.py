"""Toy models trained in the project that show a phenomenon on planted data."""

from .bigram_backcopy import BBTask, BBTrainConfig, bb_mechanism, train_bb

__all__ = ["BBTask", "BBTrainConfig", "bb_mechanism", "train_bb"]
