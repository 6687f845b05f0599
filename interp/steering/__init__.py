"""Steering: build a direction from a model's own behaviour and add it at inference.

One family over the project's models, tasks and reports
(docs/methods.md, Steering (GrAInS, mean-difference, feature steering)):

* builders, each returning a :class:`SteeringVector`: :func:`mean_difference` (CAA / ActAdd),
  :func:`grains` (GrAInS), :func:`feature_vector` (an SAE latent or SNMF feature);
* :func:`steer` (scoped hook, a context manager), :func:`load_vector` / :meth:`SteeringVector.save`
  (safetensors + JSON with the model's weight hash);
* tasks with preferred / dispreferred outputs (:func:`load_task`: ``sentiment``, ``ioi`` in data/steering/) and
  :func:`evaluate_steering` / :func:`compare_methods` (strength calibrated to equal next-token KL).
"""

from .build import GrainsConfig, contrastive_token_scores, grains, layer_hook, mean_difference
from .compare import SteeringCompareConfig, build_vector, compare_methods
from .features import FeatureSteering, feature_vector
from .evaluate import SteeringComparison, SteeringTask, calibrate, evaluate_steering, load_task, vader_scores
from .vector import METHODS, MODES, ModelMismatchError, SteeringVector, check_model, load_vector, steer

__all__ = ["SteeringVector", "steer", "load_vector", "check_model", "ModelMismatchError", "METHODS", "MODES",
           "mean_difference", "grains", "contrastive_token_scores", "layer_hook",
           "build_vector", "compare_methods", "SteeringComparison", "SteeringTask", "calibrate", "evaluate_steering",
           "load_task", "vader_scores", "feature_vector", "GrainsConfig", "FeatureSteering", "SteeringCompareConfig"]
