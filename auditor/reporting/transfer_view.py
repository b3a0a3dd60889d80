"""What ``transfer.html.jinja`` shows of a ``medaudit transfer`` results.json: one heat-map
table per eps (source rows, target columns) and the models' identities. Formatting only:
every number comes from the file; a value that is not a finite number shows as "n/a", so a
hostile or broken file renders (escaped) instead of crashing the report."""

from __future__ import annotations

import math
from typing import Any

TRANSFER_KIND = "transfer-matrix"  # auditor.engine.transfer.KIND (reports never import the engine)
TRANSFER_TEMPLATE = "transfer.html.jinja"


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _cell_at(grid: Any, i: int, j: int) -> Any:
    row = grid[i] if isinstance(grid, list) and i < len(grid) else None
    return row[j] if isinstance(row, list) and j < len(row) else None


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f}%"


def heat_style(value: float | None) -> str:
    """White (0) to deep red (1); grey for a missing value. Only numbers reach the string."""
    if value is None:
        return "background-color: rgb(230, 230, 230)"
    v = min(max(value, 0.0), 1.0)
    return f"background-color: rgb({255 - round(75 * v)}, {round(255 - 215 * v)}, {round(255 - 215 * v)})"


def _interval(ci: Any) -> str:
    if isinstance(ci, list) and len(ci) == 2:
        low, high = _number(ci[0]), _number(ci[1])
        if low is not None and high is not None:
            return f"{100 * low:.0f}-{100 * high:.0f}%"
    return ""


def _table(entry: dict[str, Any], k: int) -> dict[str, Any]:
    rows = []
    for i in range(k):
        cells = []
        for j in range(k):
            success = _number(_cell_at(entry.get("success"), i, j))
            cells.append({"text": _percent(success), "ci": _interval(_cell_at(entry.get("success_ci95"), i, j)),
                          "accuracy": _percent(_number(_cell_at(entry.get("target_accuracy"), i, j))),
                          "style": heat_style(success), "diagonal": i == j,
                          "dark": success is not None and success > 0.6})
        rows.append(cells)
    return {"eps_255": _number(entry.get("eps_255")), "rows": rows}


def transfer_context(results: dict[str, Any], rendered_at: str | None = None) -> dict[str, Any]:
    models = [m for m in results.get("models") or [] if isinstance(m, dict)]
    k = len(models)
    tables = [_table(e, k) for e in results.get("matrix") or [] if isinstance(e, dict)]
    labels = [{"index": i + 1, "name": str(m.get("name", "")), "format": str(m.get("format", "")),
               "sha256": str(m.get("sha256", ""))[:16], "clean": _percent(_number(m.get("clean_accuracy"))),
               "ci": _interval(m.get("ci95"))} for i, m in enumerate(models)]
    attack = results.get("attack") if isinstance(results.get("attack"), dict) else {}
    data = results.get("data") if isinstance(results.get("data"), dict) else {}
    return {"t": {"models": labels, "tables": tables, "attack": attack, "data": data,
                  "config": results.get("config") if isinstance(results.get("config"), dict) else {},
                  "created": str(results.get("created", "")), "rendered_at": rendered_at or "",
                  "tool": results.get("tool") if isinstance(results.get("tool"), dict) else {}}}
