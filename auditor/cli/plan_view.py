"""``medaudit run --plan``: the plan (computed by :mod:`auditor.planning`) on the terminal,
or as JSON on stdout with ``--json``. Nothing is written to ``--out``."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from auditor.cli.common import RichProgress, printable, stdout_to_stderr
from auditor.config import AuditConfig
from auditor.registry import get_registry


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _passes(p: dict[str, Any]) -> str:
    parts = []
    if p["forward_backward"]:
        parts.append(f"{p['forward_backward']:g} fwd+bwd")
    if p["forward"]:
        parts.append(f"{p['forward']:g} fwd")
    return " + ".join(parts) or "0"


def plan_table(plan: dict[str, Any]) -> Table:
    table = Table(title="medaudit: plan (no attack run)", title_justify="left", show_edge=False)
    for name, justify in (("attack", "left"), ("eps", "right"), ("passes/image", "right"),
                          ("images: upper", "right"), ("expected", "right"), ("time: upper", "right"),
                          ("expected", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for r in plan["steps"]:
        table.add_row(Text(printable(r["attack"])), f"{r['eps_255']:g}/255", _passes(r["passes_per_image"]),
                      f"{r['upper']['images']:.0f}", f"{r['expected']['images']:.0f}",
                      duration(r["upper"]["seconds"]), duration(r["expected"]["seconds"]))
    return table


def plan_lines(plan: dict[str, Any]) -> list[str]:
    t, fixed = plan["timing"], plan["fixed_s"]
    lines = [
        f"{plan['images']} images, batch size {plan['batch_size']}, device {plan['device']}, "
        f"budget {plan['budget']}, {plan['mode']}",
        f"measured here: one forward pass {1000 * t['forward_s_per_sample']:.1f} ms/image, forward+backward "
        f"{1000 * t['forward_backward_s_per_sample']:.1f} ms/image (batch of {t['batch_size']})",
    ]
    probe = plan.get("probe")
    if probe:
        standing = ", ".join(f"{e:g}/255: {s:.0%}" for e, s in probe["surviving_fgsm"].items())
        lines.append(f"probe ({probe['images']} images): clean accuracy {probe['clean_accuracy']:.0%}; "
                     f"still correct after FGSM at {standing}")
    lines.append(f"loading {duration(fixed['loading'])}, clean pass {duration(fixed['clean_pass'])}, "
                 f"after the steps (checks, targeted attacks) {duration(fixed['finish'])}, "
                 f"timing passes for the overhead ratio {duration(fixed['accounting'])}")
    est = plan["estimate_s"]
    lines.append(f"estimated wall time: {duration(est['expected'])} expected (cascade), "
                 f"{duration(est['upper'])} at most (every image through every step)")
    if plan.get("target_s") is not None:
        fits = "fits" if est["expected"] <= plan["target_s"] else "does NOT fit"
        lines.append(f"target (--max-time) {duration(plan['target_s'])}: the expected time {fits}")
    for s in plan["suggestions"]:
        mark = "" if s["fits"] is None else (" (fits the target)" if s["fits"] else " (still over the target)")
        lines.append(f"  with {s['change']}" + (f": {duration(s['expected_s'])} expected{mark}"
                                                  if s["expected_s"] is not None else ""))
    return lines


def show_plan(config: AuditConfig, *, quiet: bool, as_json: bool) -> dict[str, Any]:
    from auditor.planning import plan_audit

    progress = RichProgress(quiet=quiet or as_json)
    with stdout_to_stderr():  # the model's own prints stay off the JSON
        plan = plan_audit(config, get_registry(), progress)
    if as_json:
        typer.echo(json.dumps(plan, indent=1, default=str))
    else:  # the plan is the answer: stdout, as --json's
        console = Console()
        console.print(plan_table(plan), highlight=False)
        for line in plan_lines(plan):
            console.print(printable(line), markup=False, highlight=False, soft_wrap=True)
    return plan
