"""MR and CT acquisition artefacts from TorchIO (Perez-Garcia et al., "TorchIO", Computer
Methods and Programs in Biomedicine 2021): rigid motion during the acquisition, ghosting,
a k-space spike and a smooth bias field.

TorchIO gives each artefact a random range, not severities; medaudit's ladders pin the
magnitude at each severity and reach TorchIO's default magnitude at severity 5 (motion: 10
degrees, 10 mm; ghosting intensity 1; bias-field coefficients 0.5; spike intensity 2, inside
the default range 1-3). What TorchIO still draws (the motion's axes and times, the number of
ghosts, the spike's position) is drawn per image from that image's seed. A slice is given
to TorchIO as a one-voxel-thick volume with 1 mm pixels; results are clamped to [0, 1].
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from auditor.errors import UsageError
from auditor.interfaces import Corruption

TORCHIO = "Perez-Garcia et al., CMPB 2021 (TorchIO)"


class _TorchIOArtefact(Corruption):
    modalities = ("mri", "ct")
    library = "torchio"
    vectorised = False

    def transform(self, tio: Any, params: dict[str, Any]) -> Any:  # pragma: no cover - each family defines it
        raise NotImplementedError

    def apply(self, x: torch.Tensor, params: dict[str, Any], seeds: Sequence[int]) -> torch.Tensor:
        try:
            import torchio as tio  # optional (pip install 'medaudit[mri]'); seconds to import
        except ImportError:
            raise UsageError(f"corruption '{self.name}' needs TorchIO: pip install torchio") from None
        transform = self.transform(tio, params)
        out = []
        for image, seed in zip(x.detach().cpu().float(), seeds):
            torch.manual_seed(int(seed))  # TorchIO draws its random parameters from torch's generator
            subject = tio.ScalarImage(tensor=image.unsqueeze(-1))
            out.append(transform(subject).data[..., 0])
        return torch.stack(out).to(device=x.device, dtype=x.dtype)


class Motion(_TorchIOArtefact):
    name = "mr-motion"
    title = "Motion artefact (MR)"
    reference = f"{TORCHIO}, RandomMotion (Shaw et al., MIDL 2019)"
    parameter = "degrees_mm"  # (rotation up to, translation up to) in degrees and 224-px pixels
    ladders = {"default": ((2, 2), (4, 4), (6, 6), (8, 8), (10, 10))}
    spatial = True

    def transform(self, tio: Any, params: dict[str, Any]) -> Any:
        degrees, mm = params["degrees_mm"]
        # on a one-voxel-thick volume TorchIO rotates about the slice normal and translates in-plane only
        return tio.RandomMotion(degrees=float(degrees), translation=float(mm * params["scale"]), num_transforms=2)


class Ghosting(_TorchIOArtefact):
    name = "ghosting"
    title = "Ghosting (MR)"
    reference = f"{TORCHIO}, RandomGhosting"
    parameter = "intensity"
    ladders = {"default": (0.2, 0.4, 0.6, 0.8, 1.0)}

    def transform(self, tio: Any, params: dict[str, Any]) -> Any:
        value = float(params["intensity"])
        return tio.RandomGhosting(num_ghosts=(4, 10), axes=(0, 1), intensity=(value, value))


class Spike(_TorchIOArtefact):
    name = "spike"
    title = "Spike (k-space herringbone)"
    reference = f"{TORCHIO}, RandomSpike"
    parameter = "intensity"
    ladders = {"default": (0.4, 0.8, 1.2, 1.6, 2.0)}

    def transform(self, tio: Any, params: dict[str, Any]) -> Any:
        value = float(params["intensity"])
        return tio.RandomSpike(num_spikes=1, intensity=(value, value))


class BiasField(_TorchIOArtefact):
    name = "bias-field"
    title = "Bias field (intensity inhomogeneity)"
    reference = f"{TORCHIO}, RandomBiasField (Van Leemput et al., IEEE TMI 1999)"
    parameter = "coefficients"
    ladders = {"default": (0.1, 0.2, 0.3, 0.4, 0.5)}

    def transform(self, tio: Any, params: dict[str, Any]) -> Any:
        value = float(params["coefficients"])
        return tio.RandomBiasField(coefficients=(value, value), order=3)
