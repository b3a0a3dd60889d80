"""No preprocessing: the model itself is randomised (block switching, dropout at test time).

For a model that draws randomness at every call, such as ``medaudit harden --method
block-switching``'s output, this puts the model on the randomised-defense path: each
image's prediction is seeded by the audit seed and its content (a deterministic function
of the image, as for randomised smoothing), and the adaptive attacks use EoT (Athalye et
al., "Obfuscated Gradients Give a False Sense of Security", ICML 2018): they differentiate
the mean logits over ``eot_samples`` calls. The defense section's non-adaptive numbers are
then the attacks on the model without EoT (one random draw per gradient).

Example::

    medaudit run bs.pt --data test/ --defense model-eot:eot_samples=16
"""

from __future__ import annotations

from typing import Any

import torch

from plugins.defenses._common import PreprocessingDefense


class ModelEoT(PreprocessingDefense):
    name = "model-eot"
    description = "none in front: the model's own randomness, attacked with EoT (block switching)"
    differentiable = True
    randomized = True
    reference = "Athalye et al., ICML 2018 (EoT); Wang et al., IJCAI 2019 (block switching)"
    params: dict = {}
    passthrough = True  # applies nothing to the image (the defense contract tests know this)

    def make(self, params: dict[str, Any]) -> torch.nn.Module:
        return torch.nn.Identity()
