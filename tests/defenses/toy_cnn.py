"""A tiny one-channel CNN for ``--arch tests.defenses.toy_cnn:toy_cnn`` (harden methods that
change the network need an eager model with convolutions)."""

from auditor.architectures import SmallCNN


def toy_cnn() -> SmallCNN:
    return SmallCNN(in_channels=1, num_classes=2, width=4)
