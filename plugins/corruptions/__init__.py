"""Built-in corruptions plugin: natural and acquisition corruptions per modality, audited by
``medaudit run --corruptions`` beside the adversarial battery (see
:class:`auditor.interfaces.Corruption`). Each modality preset names its default families."""

from auditor.hookspecs import hookimpl
from plugins.corruptions.blur import DefocusBlur, GaussianBlur, MotionBlur, Pixelate
from plugins.corruptions.compression import Jpeg
from plugins.corruptions.mri import BiasField, Ghosting, Motion, Spike
from plugins.corruptions.noise import GaussianNoise, PoissonNoise, RicianNoise
from plugins.corruptions.photometric import Brightness, Contrast, Gamma, Haze, UnevenIllumination, WhiteBalance

BUILTIN_CORRUPTIONS = (
    DefocusBlur, MotionBlur, GaussianBlur, Pixelate, Brightness, Contrast, Gamma, WhiteBalance, Haze,
    UnevenIllumination, GaussianNoise, PoissonNoise, RicianNoise, Jpeg, Motion, Ghosting, Spike, BiasField,
)

__all__ = ["BUILTIN_CORRUPTIONS"]


@hookimpl
def medaudit_register_corruptions(register):
    for corruption in BUILTIN_CORRUPTIONS:
        register(corruption())
