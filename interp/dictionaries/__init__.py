"""Sparse dictionaries: SAEs (ReLU, TopK, JumpReLU) and transcoders, their training, metrics, I/O and dashboards.

Variants are sibling files behind :mod:`interp.dictionaries.registry`; see each module's
docstring for the algorithm and paper.

    from interp.store import ActivationStore
    from interp.dictionaries import SAEConfig, TrainConfig, train_sae, save_sae
    from interp.dictionaries.metrics import evaluate_dictionary, evaluate_rows, spliced_ce, sequences_from_store

    store = ActivationStore.open("runs/store")
    cfg = SAEConfig(arch="topk", d_in=576, d_sae=4608, k=32, hook_in="blocks.15.hook_resid_post")
    sae = train_sae(store, cfg, TrainConfig(n_tokens=1_000_000, checkpoint_dir="runs/sae")).sae
    save_sae(sae, "runs/sae/final")                      # SAELens format
    evaluate_rows(sae, store)                             # L0, FVU, dead fraction
    spliced_ce(model, sae, sequences_from_store(store, 32))  # CE recovered, KL
    evaluate_dictionary(sae, store, model)                # both, as a typed result with a report

Transcoders: ``transcoder.transcoder_config(layer, d_model)``; dashboards:
``dashboards.feature_dashboard``; sparse TopK kernels: ``sparse_decode`` (``fast=False`` or
``INTERP_REFERENCE=1`` forces the dense reference).
SAE/transcoder features as attribution components (patching, AtP, RelP, IG over features plus
an error term): ``feature_components.splice_features``.  Circuits over features (transcoder feature
circuits, discrete-SAE circuits) live in :mod:`interp.circuits`.
"""

from .base import EncodeOutput, ForwardOutput, SAEConfig, SparseCoder, fvu
from .registry import ARCHS, make, register
from .results import DictionaryEvaluation, DictionaryTraining, TranscoderEvaluation
from .saelens_io import SAELensFormatError, load_sae, save_sae
from .source import TensorSource
from .train import TrainConfig, geometric_median, train_sae

__all__ = [
    "ARCHS", "DictionaryEvaluation", "DictionaryTraining", "EncodeOutput", "ForwardOutput", "SAEConfig",
    "SAELensFormatError", "SparseCoder", "TensorSource", "TranscoderEvaluation", "TrainConfig", "fvu",
    "geometric_median", "load_sae", "make", "register", "save_sae", "train_sae",
]
