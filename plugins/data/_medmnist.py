"""Class names of the MedMNIST v2 2D data sets, from the ``label`` entries of MedMNIST's
published metadata (``medmnist.INFO``, Yang et al., Scientific Data 2023), keyed by the file
name MedMNIST uses (``pneumoniamnist.npz``, or ``pneumoniamnist_64.npz`` for the larger
sizes of MedMNIST+). The label indices are MedMNIST's; naming classes lets the report say
"pneumonia" rather than "1", and lets a modality preset find its positive class.

Left out: chestmnist (multi-label, which the npz source refuses) and retinamnist (its labels
are the ordinal grades 0-4, already their own names)."""

from __future__ import annotations

import re
from pathlib import Path

ORGAN = ("bladder", "femur-left", "femur-right", "heart", "kidney-left", "kidney-right", "liver", "lung-left",
         "lung-right", "pancreas", "spleen")

LABELS: dict[str, tuple[str, ...]] = {
    "pathmnist": ("adipose", "background", "debris", "lymphocytes", "mucus", "smooth muscle",
                  "normal colon mucosa", "cancer-associated stroma", "colorectal adenocarcinoma epithelium"),
    "dermamnist": ("actinic keratoses and intraepithelial carcinoma", "basal cell carcinoma",
                   "benign keratosis-like lesions", "dermatofibroma", "melanoma", "melanocytic nevi",
                   "vascular lesions"),
    "octmnist": ("choroidal neovascularization", "diabetic macular edema", "drusen", "normal"),
    "pneumoniamnist": ("normal", "pneumonia"),
    "breastmnist": ("malignant", "normal, benign"),
    "bloodmnist": ("basophil", "eosinophil", "erythroblast",
                   "immature granulocytes(myelocytes, metamyelocytes and promyelocytes)", "lymphocyte", "monocyte",
                   "neutrophil", "platelet"),
    "tissuemnist": ("Collecting Duct, Connecting Tubule", "Distal Convoluted Tubule", "Glomerular endothelial cells",
                    "Interstitial endothelial cells", "Leukocytes", "Podocytes", "Proximal Tubule Segments",
                    "Thick Ascending Limb"),
    "organamnist": ORGAN,
    "organcmnist": ORGAN,
    "organsmnist": ORGAN,
}

_FILE = re.compile(r"^([a-z]+mnist)(?:_\d+)?$")


def medmnist_labels(path: Path) -> tuple[str, tuple[str, ...]] | None:
    """(data set name, class names in label order) when ``path`` is named like a MedMNIST file."""
    match = _FILE.match(path.stem.lower())
    if match is None or match.group(1) not in LABELS:
        return None
    return match.group(1), LABELS[match.group(1)]
