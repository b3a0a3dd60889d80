"""The README's segmentation example is a user's first try: as written it must plan little
enough work to finish on 2 CPU cores in minutes (the DRIVE U-Net takes ~1.5 s per image per
forward + backward at 576x560 there). Counted in passes, never timed."""

from __future__ import annotations

import shlex
from pathlib import Path

from auditor.engine.skeleton import CLEAN_PASS_UNITS, attack_units
from auditor.evaluation.checks.base import DEFAULT_SAMPLES
from auditor.evaluation.checks.segmentation_checks import planned_check_units
from tests.segmentation.conftest import make_registry

README = Path(__file__).resolve().parents[2] / "README.md"
SECONDS_PER_PASS = 1.5  # measured: retina U-Net, one 576x560 image, forward + backward, 2 cores


def segmentation_example() -> dict[str, str]:
    text = README.read_text()
    block = text[text.index("# a retinal vessel U-Net"):].split("\n\n")[0]
    command = " ".join(line.rstrip("\\") for line in block.splitlines() if not line.startswith("#"))
    words = shlex.split(command)
    return {w: words[i + 1] for i, w in enumerate(words) if w.startswith("--") and i + 1 < len(words)}


def test_the_readme_segmentation_example_plans_minutes_of_work():
    options = segmentation_example()
    assert {"--limit", "--eps", "--budget", "--attacks"} <= set(options), options
    images = int(options["--limit"])
    eps = options["--eps"].split(",")
    registry = make_registry()
    units = images * CLEAN_PASS_UNITS
    steps = 10
    for name in options["--attacks"].split(","):
        attack = registry.get("attacks", name)
        params = attack.parameters(options["--budget"], None)
        units += images * len(eps) * attack_units(attack, params)
        steps = int(params.get("steps", steps)) if name.startswith("seg-pgd") else steps
    samples = int(options.get("--check-samples", DEFAULT_SAMPLES))
    units += planned_check_units(images, samples, steps)
    # 10 minutes on 2 cores, with room for loading, the reports and a busy machine
    assert units * SECONDS_PER_PASS < 0.5 * 600, units
