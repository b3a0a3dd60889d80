"""Adversarial-example detectors (Mahalanobis, kernel density + Bayesian uncertainty, LID)
and their evaluation against plain and adaptive attackers (:mod:`.audit`)."""

from auditor.evaluation.detection.audit import (
    ADAPTIVE_ATTACK, DEFAULT_ATTACKS, DEFAULT_LAMBDAS, DETECTORS, FPR_TARGET, compute_auroc, detection_audit,
    detection_audit_many, detection_for_audit)
from auditor.evaluation.detection.density import KernelDensityDetector
from auditor.evaluation.detection.features import FeatureExtractor
from auditor.evaluation.detection.lid import LIDDetector, lid_mle
from auditor.evaluation.detection.mahalanobis import MahalanobisDetector

__all__ = ["ADAPTIVE_ATTACK", "DEFAULT_ATTACKS", "DEFAULT_LAMBDAS", "DETECTORS", "FPR_TARGET", "FeatureExtractor",
           "KernelDensityDetector", "LIDDetector", "MahalanobisDetector", "compute_auroc", "detection_audit",
           "detection_audit_many", "detection_for_audit", "lid_mle"]
