"""What an audit adds to its attack steps: evaluation validity checks, clinical metrics and
targeted attacks, preprocessing defenses and adversarial-example detection."""
