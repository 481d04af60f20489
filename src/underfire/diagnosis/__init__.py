"""Diagnosis of adversarial vulnerability layer by layer (Zheng, Zhang, Lee & Prakash 2020,
"Understanding and Diagnosing Vulnerability under Adversarial Attacks").

>>> from underfire.diagnosis import layer_vulnerability, default_layers
>>> result = layer_vulnerability(model, x, x_adv)          # default layers of the model
>>> result.rows()                                          # per-layer table
"""

from __future__ import annotations

from underfire.diagnosis.interpretgan import (
    Discriminator,
    FeatureGenerator,
    InterpretGAN,
    InterpretGANConfig,
    classifier_fingerprint,
    evaluate_interpretgan,
    train_interpretgan,
)
from underfire.diagnosis.layer_vulnerability import (
    LayerDecoder,
    LayerVulnerability,
    layer_vulnerability,
    readable_rows,
)
from underfire.diagnosis.layers import (
    DEFAULT_LAYERS,
    capture_features,
    default_layers,
    resolve_layers,
)
from underfire.diagnosis.probe import fraction_unexplained, linear_probe_loss
from underfire.diagnosis.report import Diagnosis, diagnose, write_diagnosis

__all__ = [
    "DEFAULT_LAYERS",
    "Diagnosis",
    "Discriminator",
    "FeatureGenerator",
    "InterpretGAN",
    "InterpretGANConfig",
    "classifier_fingerprint",
    "evaluate_interpretgan",
    "train_interpretgan",
    "LayerDecoder",
    "LayerVulnerability",
    "capture_features",
    "default_layers",
    "diagnose",
    "fraction_unexplained",
    "layer_vulnerability",
    "linear_probe_loss",
    "readable_rows",
    "resolve_layers",
    "write_diagnosis",
]
