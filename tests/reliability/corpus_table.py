"""Print the bad-input corpus as observed: case, exit code, the one-line message.

    python -m tests.reliability.corpus_table [--markdown] [CASE_ID ...]

Runs every case of :mod:`tests.reliability.corpus` through ``medaudit run`` in-process,
the way ``test_bad_inputs.py`` does, and marks rows that break the contract (exit code,
one stderr line, message fragment) with ``!!``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path


def main(argv: list[str]) -> int:
    from tests.reliability.corpus import CASES, make_models, run_case

    markdown = "--markdown" in argv
    wanted = [a for a in argv if not a.startswith("--")]
    broken = 0
    with tempfile.TemporaryDirectory(prefix="medaudit-corpus-") as folder:
        base = Path(folder)
        models = make_models(base / "models")
        if markdown:
            print("| # | case | input | exit | message |\n|---|---|---|---|---|")
        for number, case in enumerate(CASES, start=1):
            if wanted and case.id not in wanted:
                continue
            tmp = base / case.id
            tmp.mkdir()
            try:
                outcome = run_case(case, tmp, models)
            except BaseException as exc:  # pytest.skip in a case (no tmpfs here) and the like
                print(f"{case.id}: not run ({type(exc).__name__}: {exc})")
                continue
            lines = outcome.stderr_lines
            message = lines[-1] if lines else "(no stderr)"
            ok = (outcome.code == case.code and len(lines) == 1 and case.fragment.lower() in message.lower()
                  and "Traceback" not in outcome.stderr)
            broken += not ok
            flag = "" if ok else " !!"
            if markdown:
                text = message.removeprefix("medaudit: error: ").replace("|", "\\|")
                print(f"| {number} | {case.id}{flag} | {case.what} | {outcome.code} | {text} |")
            else:
                print(f"{case.id:<30} {outcome.code}{flag}  {message}")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
