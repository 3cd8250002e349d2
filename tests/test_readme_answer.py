"""The README's answer is the committed study's generated answer, word for word.

The answer in `docs/figures/study/verdict.json` is assembled from measured numbers
(`reskeras.study.judgment.verdict.answer`); the README quotes it and adds no sentence of its
own about what the nets did, so a phrase like "stays near chance" appears only when the
measurement wrote it.
"""

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _section(text: str, title: str) -> str:
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def test_the_readme_quotes_the_committed_verdict_answer():
    verdict = json.loads((ROOT / "docs" / "figures" / "study" / "verdict.json").read_text())
    section = _section((ROOT / "README.md").read_text(encoding="utf-8"), "The answer, measured")
    quoted = " ".join(line[1:].strip() for line in section.splitlines()
                      if line.startswith(">"))
    assert quoted == verdict["answer"]
    assert "convergence" in verdict and "failed_to_start" in verdict
    # outside the quote, no sentence describes the nets in words of its own
    rest = " ".join(line for line in section.splitlines() if not line.startswith(">"))
    for phrase in ("near chance", "stays", "stuck", "cannot train", "fails to train"):
        assert phrase not in rest.lower(), phrase
    assert re.search(r"\bcap\b", rest) is None or "cap" in verdict["answer"]
