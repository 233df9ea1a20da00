"""Run every eval case and print a score table: ``.venv/bin/python -m tests.evals.run_evals [CASE ...]``.

The LLM answers are recorded (no model runs here), so the table scores rcaflow's parsing, repair,
policy gate, decide and fallback to the policy triage, not a model. Exit status 1 if a case fails.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from policies import load_policies
from tests.evals.harness import CASES_DIR, CaseScore, case_folders, run_case


def score_all(names: Sequence[str] = ()) -> list[CaseScore]:
    policies = load_policies()
    folders = [CASES_DIR / n for n in names] if names else case_folders()
    return [run_case(folder, policies) for folder in folders]


def table(scores: Sequence[CaseScore]) -> str:
    header = f"{'case':<58} {'kind':<11} {'engine':<16} cls cause  P    R    drop forbidden  result"
    lines = [header, "-" * len(header)]
    for s in scores:
        lines.append(
            f"{s.case:<58} {s.kind:<11} {s.engine:<16} {'ok' if s.class_ok else 'NO':<3} "
            f"{'ok' if s.cause_ok else 'NO':<5} {s.precision:<4.2f} {s.recall:<4.2f} {s.dropped:<4} "
            f"{','.join(s.forbidden) or '-':<10} {'PASS' if s.passed else 'FAIL'}"
        )
        lines.extend(f"    note: {note}" for note in s.notes)
    n = len(scores) or 1
    passed = sum(s.passed for s in scores)
    lines.append("-" * len(header))
    lines.append(
        f"{passed}/{len(scores)} passed; class {sum(s.class_ok for s in scores)}/{len(scores)}, "
        f"cause {sum(s.cause_ok for s in scores)}/{len(scores)}, "
        f"action precision {sum(s.precision for s in scores) / n:.2f}, recall {sum(s.recall for s in scores) / n:.2f}, "
        f"forbidden actions proposed {sum(len(s.forbidden) for s in scores)}, "
        f"proposals dropped by policy {sum(s.dropped for s in scores)}"
    )
    return "\n".join(lines)


def main(argv: Sequence[str]) -> int:
    logging.basicConfig(level=logging.ERROR)
    scores = score_all(argv)
    print(table(scores))
    return 0 if all(s.passed for s in scores) else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
