"""Toy models trained in the project: modular addition (for LIB). The Bigram-Backcopy toy lives in
:mod:`interp.phenomena.toy` beside the phenomena it demonstrates."""
