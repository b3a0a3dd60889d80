"""What an attack costs per image, in model passes, read from its recorded parameters.

One cost model for the whole-audit ETA (``AuditSkeleton.step_units``) and for ``medaudit
run --plan`` (``auditor.planning``), so the plan and the progress bars agree. Upper bounds:
an attack that stops early on a broken image (Square, the cascade) spends less.
"""

from __future__ import annotations

from typing import Any


def _positive(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else None


def passes_per_image(attack: Any, params: dict[str, Any]) -> dict[str, Any]:
    """``forward_backward``: gradient steps (steps x starts, where starts is ``starts`` or
    ``restarts + 1``); ``forward``: queries of a score-based attack (one forward pass each);
    ``basis``: where the numbers come from. AutoAttack: APGD steps x restarts per APGD
    sub-attack, plus Square's queries. An attack whose parameters name neither steps nor
    queries counts its ``cost`` rank as gradient steps (``basis: cost rank``)."""
    steps = _positive(params.get("steps"))
    if steps:
        starts = max(int(params.get("starts") or 1), int(params.get("restarts") or 0) + 1)
        return {"forward": 0.0, "forward_backward": steps * starts, "basis": "steps x starts"}
    apgd_steps = _positive(params.get("apgd_steps"))
    if apgd_steps:
        subs = [str(s) for s in params.get("sub_attacks") or []]
        apgd = sum(1 for s in subs if s.startswith("apgd")) or 1
        square = _positive(params.get("square_queries")) if "square" in subs else None
        return {"forward": square or 0.0,
                "forward_backward": apgd_steps * int(params.get("apgd_restarts") or 1) * apgd,
                "basis": "APGD steps x restarts x sub-attacks, Square queries"}
    queries = _positive(params.get("queries"))
    if queries:
        return {"forward": queries, "forward_backward": 0.0, "basis": "queries"}
    return {"forward": 0.0, "forward_backward": float(getattr(attack, "cost", 1) or 1), "basis": "cost rank"}
