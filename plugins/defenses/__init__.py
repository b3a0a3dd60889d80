"""Built-in defenses plugin: preprocessing defenses applied in front of the model, one
module each. Evaluated by ``medaudit run --defense name:key=value`` (see
:mod:`auditor.evaluation.defenses`); adversarial training is ``medaudit harden`` and detection
:mod:`auditor.evaluation.detection`."""

from auditor.hookspecs import hookimpl
from plugins.defenses.bit_depth import BitDepth
from plugins.defenses.jpeg import Jpeg
from plugins.defenses.median import Median
from plugins.defenses.model_eot import ModelEoT
from plugins.defenses.random_smoothing import RandomSmoothing
from plugins.defenses.tv import TV

BUILTIN_DEFENSES = (Jpeg, Median, BitDepth, TV, RandomSmoothing, ModelEoT)

__all__ = ["BUILTIN_DEFENSES", "BitDepth", "Jpeg", "Median", "ModelEoT", "RandomSmoothing", "TV"]


@hookimpl
def medaudit_register_defenses(register):
    for defense in BUILTIN_DEFENSES:
        register(defense())
