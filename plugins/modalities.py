"""Built-in modality presets: input defaults and the modality-specific report text."""

from __future__ import annotations

from auditor.hookspecs import hookimpl
from auditor.interfaces import Modality

_COMMON_DEFENSES = (
    "PGD adversarial training (Madry et al.) at the audited budget",
    "adversarial-example detection on penultimate-layer features before a result is shown",
)

MODALITIES: tuple[Modality, ...] = (
    Modality(
        name="dermoscopy",
        title="Dermoscopy (skin lesion photographs)",
        channels=3,
        input_size=(64, 64),
        positive_class="melanoma",
        threats=(
            "Dermoscopy images are colour photographs taken on consumer-grade devices and often "
            "sent through teledermatology apps: an attacker who controls the app or the upload path "
            "can add perturbations that are invisible next to skin texture and hair."
        ),
        defenses=_COMMON_DEFENSES
        + ("randomised smoothing with majority vote over noisy copies (MedRDF-style)",),
        notes="Missed melanoma (melanoma reported as benign) is the clinically critical failure.",
        corruptions=("defocus-blur", "motion-blur", "brightness", "contrast", "white-balance", "gaussian-noise",
                     "jpeg"),
    ),
    Modality(
        name="fundoscopy",
        title="Fundus photography (retina)",
        channels=3,
        input_size=(64, 64),
        positive_class="referable",
        threats=(
            "Fundus screening runs unattended in primary care and pharmacies; images cross networks "
            "to a reading service, where a tampered image can hide diabetic retinopathy."
        ),
        defenses=_COMMON_DEFENSES + ("image-level denoising in front of the model",),
        notes="Vessel segmentation models are audited with --task segmentation and a field-of-view mask.",
        structure="vessels",
        corruptions=("uneven-illumination", "defocus-blur", "haze", "gaussian-noise", "jpeg"),
    ),
    Modality(
        name="chest-xray",
        title="Chest X-ray",
        channels=1,
        input_size=(64, 64),
        positive_class="pneumonia",
        threats=(
            "Chest X-rays travel through PACS and triage queues; a perturbed study that is reported "
            "as normal is de-prioritised and read late."
        ),
        defenses=_COMMON_DEFENSES + ("median or total-variation denoising of the radiograph",),
        notes="A missed finding (positive reported as normal) delays treatment.",
        corruptions=("gamma", "contrast", "poisson-noise", "gaussian-noise", "gaussian-blur", "pixelate", "jpeg"),
    ),
    Modality(
        name="ct",
        title="Computed tomography (slices)",
        channels=1,
        input_size=(64, 64),
        threats="CT slices are windowed 12-bit data; perturbations can be hidden in the window's quantisation.",
        defenses=_COMMON_DEFENSES,
        corruptions=("mr-motion", "ghosting", "spike", "bias-field", "gaussian-noise"),
    ),
    Modality(
        name="mri",
        title="Magnetic resonance imaging (slices)",
        channels=1,
        input_size=(64, 64),
        threats="MR intensities are scanner-relative; small intensity shifts are normal and hard to spot.",
        defenses=_COMMON_DEFENSES,
        corruptions=("mr-motion", "ghosting", "spike", "bias-field", "rician-noise"),
    ),
    Modality(
        name="ultrasound",
        title="Ultrasound",
        channels=1,
        input_size=(64, 64),
        positive_class="malignant",
        threats="Speckle noise in ultrasound masks added perturbations well.",
        defenses=_COMMON_DEFENSES + ("speckle-aware denoising in front of the model",),
        corruptions=("gaussian-noise", "gaussian-blur", "contrast", "jpeg"),
    ),
    Modality(
        name="oct",
        title="Optical coherence tomography",
        channels=1,
        input_size=(64, 64),
        threats="OCT B-scans are speckled grey images; perturbations hide in the speckle.",
        defenses=_COMMON_DEFENSES,
        corruptions=("gaussian-noise", "defocus-blur", "contrast", "jpeg"),
    ),
    Modality(
        name="histopathology",
        title="Histopathology (H&E patches)",
        channels=3,
        input_size=(64, 64),
        positive_class="tumor",
        threats=(
            "Whole-slide images are tiled into thousands of patches; stain variation already shifts "
            "colours, so colour perturbations look natural."
        ),
        defenses=_COMMON_DEFENSES + ("stain normalisation plus JPEG or bit-depth squeezing",),
        corruptions=("defocus-blur", "brightness", "contrast", "white-balance", "jpeg"),
    ),
)


@hookimpl
def medaudit_register_modalities(register):
    for modality in MODALITIES:
        register(modality)
