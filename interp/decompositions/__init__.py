"""Decompositions of activations into features and bases: SNMF (neuron groups of MLP
activations) and LIB (the local interaction basis of a chain of layers)."""
