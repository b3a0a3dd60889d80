"""``medaudit harden``: adversarial training (PGD-AT, TRADES) and the evidence it leaves."""

from auditor.hardening.evidence import LOG_SUFFIX, evidence_from_audits, evidence_from_log, log_path_for
from auditor.hardening.train import INNER_LOSSES, METHODS, HardenConfig, harden

__all__ = ["INNER_LOSSES", "LOG_SUFFIX", "METHODS", "HardenConfig", "evidence_from_audits", "evidence_from_log",
           "harden", "log_path_for"]
