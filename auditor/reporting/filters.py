"""Formatting for templates: numbers, percentages, /255 budgets, dates, and the one
validation a value needs before it reaches CSS (``css_colour``). Every output is text;
missing or non-finite values read "n/a"."""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone
from typing import Any, Callable

# Values that reach CSS (a style attribute) get no help from HTML autoescaping: for it
# "red;background:url(file:///...)" is plain text, for a browser or WeasyPrint a fetch.
# So a colour is one of these shapes or it is replaced, never passed through.
HEX_COLOUR_RE = re.compile(r"#(?:[0-9A-Fa-f]{3}){1,2}")
NAMED_COLOURS = frozenset({"black", "white", "grey", "gray", "red", "green", "blue", "yellow", "orange",
                           "purple", "transparent"})
FALLBACK_COLOUR = "transparent"



def is_finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def pct(value: Any, digits: int = 1) -> str:
    """0.7583 -> '75.8%'; None/NaN -> 'n/a'."""
    return f"{100.0 * value:.{digits}f}%" if is_finite(value) else "n/a"


def num(value: Any, digits: int = 3) -> str:
    if isinstance(value, bool) or value is None:
        return "n/a" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}g}" if is_finite(value) else "n/a"


def fixed(value: Any, digits: int = 3) -> str:
    """A float with a fixed number of decimals: 1.3 -> '1.300'."""
    return f"{value:.{digits}f}" if is_finite(value) else "n/a"


def signed(value: Any, digits: int = 3) -> str:
    """A difference with its sign: 0.05 -> '+0.050'."""
    return f"{value:+.{digits}f}" if is_finite(value) else "n/a"


def count(value: Any) -> str:
    """A count that may be stored as a float: 22422.0 -> '22,422'."""
    return f"{round(value):,}" if is_finite(value) else "n/a"


def eps255(value: Any) -> str:
    """2 -> '2/255'."""
    return f"{value:g}/255" if is_finite(value) else "n/a"


def eps_unit(value: Any) -> str:
    """An eps in /255 units written in [0,1] units: 2 -> '0.0078'."""
    return f"{value / 255.0:.4f}" if is_finite(value) else "n/a"


def as255(value: Any) -> str:
    """A distance in [0,1] units written in /255 units: 0.00784 -> '2.00/255'."""
    return f"{value * 255.0:.2f}/255" if is_finite(value) else "n/a"


def seconds(value: Any) -> str:
    if not is_finite(value):
        return "n/a"
    return f"{value:.2f} s" if value < 120 else f"{value / 60:.1f} min"


def short_date(value: Any) -> str:
    """ISO timestamp -> '2026-11-26 00:07 UTC'; anything else verbatim."""
    if not isinstance(value, str):
        return "unknown date"
    try:
        stamp = datetime.fromisoformat(value)
    except ValueError:
        return value
    if stamp.tzinfo is not None:
        stamp = stamp.astimezone(timezone.utc)
        return stamp.strftime("%Y-%m-%d %H:%M UTC")
    return stamp.strftime("%Y-%m-%d %H:%M")


def plain(value: Any) -> str:
    """A parameter value as short text (lists joined, floats trimmed)."""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        sep = " | " if any(isinstance(v, dict) for v in value) else ", "
        return sep.join(plain(v) for v in value)
    if isinstance(value, dict):
        return "; ".join(f"{k}={plain(v)}" for k, v in value.items())
    return "n/a" if value is None else str(value)


def css_colour(value: Any) -> str:
    """A colour safe inside a style attribute: #rgb, #rrggbb or a plain name; else transparent."""
    if isinstance(value, str) and (HEX_COLOUR_RE.fullmatch(value) or value.lower() in NAMED_COLOURS):
        return value
    return FALLBACK_COLOUR


def class_label(value: Any) -> str:
    """A class name for prose: data sets with numeric labels read 'class 1', not '1'."""
    text = "n/a" if value is None else str(value)
    return f"class {text}" if text.lstrip("-").isdigit() else text


FILTERS: dict[str, Callable[..., str]] = {
    "pct": pct, "num": num, "fixed": fixed, "signed": signed, "count": count, "eps255": eps255, "eps_unit": eps_unit, "as255": as255, "seconds": seconds,
    "short_date": short_date, "plain": plain, "class_label": class_label, "css_colour": css_colour,
}
