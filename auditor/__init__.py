"""medaudit: adversarial robustness audits for medical imaging models."""

__version__ = "0.1.0"
