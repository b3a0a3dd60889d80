"""Audits of query-only targets (a model behind an inference service, an ONNX Runtime
session; see :mod:`auditor.query_target`): which attacks the target allows, the query
budget (``--max-queries``), the traffic in ``results.json`` and the target's identity.

A service has no file to hash. Its identity is what it says about itself (name, versions,
platform) plus a behavioural fingerprint: a hash of its answers on a fixed probe set,
taken at the start, on every resume and at the end. Two fingerprints that differ mean the
model changed under the audit, and the audit fails rather than mix two models' numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from auditor.errors import InputError, UsageError
from auditor.results import RESULTS_FILE, read_results
from auditor.query_target import QueryTarget, behaviour_fingerprint, query_target, refusal
from auditor.stopping import StopRule

if TYPE_CHECKING:
    from auditor.engine.prepare import Prepared



def target_of(prep: "Prepared") -> QueryTarget | None:
    return query_target(getattr(prep.model, "module", None))


def check_target(config: Any, model: Any, task: str) -> QueryTarget | None:
    """The query-only target inside ``model``, after refusing what it cannot take part in."""
    target = query_target(model.module)
    if target is None:
        if config.max_queries is not None:
            raise UsageError("--max-queries caps the queries to a query-only target (an http(s):// model or "
                             "--runtime onnxruntime); this model is audited in-process")
        return None
    if task != "classification":
        raise UsageError(f"a query-only target is audited as a classifier; --task {task} needs the model itself")
    for flag, value in (("--defense", config.defense), ("--detector-fit", config.detector_fit)):
        if value:
            raise UsageError(f"{flag} needs the model's gradients; a query-only target answers queries only")
    if target.outputs == "label" and target.num_classes is None:
        raise UsageError("--outputs label: pass --classes so medaudit knows how many classes there are")
    return target


def split_attacks(attacks: list[Any], target: QueryTarget | None, asked: bool) -> tuple[list[Any], list[dict]]:
    """(attacks that run, attacks skipped with the reason). None left is a usage error
    when the user named the attacks; the default battery just shrinks."""
    if target is None:
        return attacks, []
    allowed, skipped = [], []
    for attack in attacks:
        why = refusal(getattr(attack, "access", "gradients"), target)
        if why is None:
            allowed.append(attack)
        else:
            skipped.append({"attack": attack.name, "title": attack.title, "access": attack.access, "reason": why})
    if not allowed:
        names = ", ".join(s["attack"] for s in skipped)
        hint = "square,zoo" if "scores" in target.access else "a label-only attack"
        where = "you asked for" if asked else "in the default battery"
        raise UsageError(f"none of the attacks {where} ({names}) can run on this {target.kind}: "
                         f"{skipped[0]['reason']}; use --attacks {hint}")
    return allowed, skipped


class QueryBudget(StopRule):
    """``--max-queries N``: stop before the next step once the target has answered N images
    (probe, fingerprints, clean pass and attacks together). A step already running
    finishes, so the total may pass N by up to one step's queries; results.json says by how much."""

    name = "max-queries"

    def __init__(self, target: QueryTarget, limit: int) -> None:
        self.target, self.limit = target, int(limit)

    def used(self) -> int:
        return int(self.target.usage().get("images", 0))

    def reason(self) -> str | None:
        used = self.used()
        return f"--max-queries {self.limit} spent ({used} images queried)" if used >= self.limit else None

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "limit": self.limit, "used": self.used()}


def query_rules(prep: "Prepared") -> list[StopRule]:
    target, limit = target_of(prep), getattr(prep.config, "max_queries", None)
    return [QueryBudget(target, limit)] if target is not None and limit else []


def service_block(prep: "Prepared", results: dict[str, Any]) -> dict[str, Any] | None:
    """``results.json``'s ``query_target``: what the target is, what it allowed, what it cost."""
    target = target_of(prep)
    if target is None:
        return None
    previous = results.get("query_target") or {}
    attacks = [e for e in results.get("attacks") or [] if e.get("queries")]
    usage = target.usage()
    images_before = int((previous.get("usage_earlier_runs") or {}).get("images", 0))
    return {
        "kind": target.kind, "outputs": target.outputs, "access": list(target.access),
        "identity": target.identity(), "skipped_attacks": list(getattr(prep, "skipped_attacks", [])),
        "fingerprint": previous.get("fingerprint"), "usage": usage,
        "usage_earlier_runs": previous.get("usage_earlier_runs"),
        "queries": {
            "total_images": images_before + int(usage.get("images", 0)),
            "attacks_images": int(sum(e["queries"]["total"] for e in attacks)),
            "per_sample_mean": _per_sample(attacks),
            "max_queries": getattr(prep.config, "max_queries", None),
        },
    }


def _per_sample(entries: list[dict[str, Any]]) -> float | None:
    attacked = sum(int(e.get("n_attacked") or 0) for e in entries)
    return sum(e["queries"]["total"] for e in entries) / attacked if attacked else None


def refresh(prep: "Prepared", results: dict[str, Any]) -> None:
    """The traffic so far into ``results`` (before each write of a query-only audit)."""
    if target_of(prep) is not None:
        results["query_target"] = service_block(prep, results)


def start_identity(prep: "Prepared", results: dict[str, Any]) -> None:
    """Fingerprint the target before the first query of this run; on ``--resume`` it must
    equal the fingerprint the audit started with."""
    target = target_of(prep)
    if target is None:
        return
    found = Path(prep.config.out) / RESULTS_FILE
    previous = read_results(found) if prep.config.resume and found.is_file() else None
    now = behaviour_fingerprint(target, prep.input_shape)
    earlier = (previous or {}).get("query_target") or {}
    first = (earlier.get("fingerprint") or {}).get("start")
    if first and first["sha256"] != now["sha256"]:
        raise InputError(f"the model behind {prep.model.path} answers differently from when this audit started "
                         f"(behavioural fingerprint {now['sha256'][:12]} != {first['sha256'][:12]}): it was "
                         "changed or redeployed; results are not mixed: audit it afresh in a new --out")
    usage = earlier.get("usage") or {}
    before = earlier.get("usage_earlier_runs") or {}
    results["query_target"] = {
        "fingerprint": {"start": first or now, "resumed": [*((earlier.get("fingerprint") or {}).get("resumed") or []),
                                                            now] if first else []},
        "usage_earlier_runs": {"images": int(before.get("images", 0)) + int(usage.get("images", 0)),
                               "requests": int(before.get("requests", 0)) + int(usage.get("requests", 0))},
    }
    results["query_target"] = service_block(prep, results)


def end_identity(prep: "Prepared", results: dict[str, Any]) -> None:
    """Fingerprint again after the last step; a change fails the audit (status ``failed``)."""
    target = target_of(prep)
    if target is None:
        return
    now = behaviour_fingerprint(target, prep.input_shape)
    block = service_block(prep, results) or {}  # after the probe images, so the totals count them
    start = (block.get("fingerprint") or {}).get("start") or {}
    block["fingerprint"] = {**(block.get("fingerprint") or {}), "end": now, "match": now["sha256"] == start.get("sha256")}
    results["query_target"] = block
    if not block["fingerprint"]["match"]:
        results["status"] = "failed"
        results["failure"] = (f"the model behind {prep.model.path} changed during the audit (behavioural fingerprint "
                              f"{now['sha256'][:12]} at the end, {start.get('sha256', '?')[:12]} at the start)")
