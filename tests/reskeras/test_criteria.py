"""The criteria table is the one source of the study's thresholds, and changes only visibly.

docs/study.md shows `reskeras.study.criteria.markdown_table()` word for word; every
criterion whose rule changed after it was first fixed has a row of that date in the rule
history, naming its key; and the committed verdict (the README's answer) was judged by the
table's current values.
"""

import json
import re
from pathlib import Path

import pytest

from reskeras.study import criteria as C

ROOT = Path(__file__).resolve().parents[2]
STUDY_DOC = (ROOT / "docs" / "study.md").read_text(encoding="utf-8")


def _section(title: str) -> str:
    start = STUDY_DOC.index(f"## {title}\n")
    end = STUDY_DOC.find("\n## ", start + 1)
    return STUDY_DOC[start:end if end > 0 else None]


def test_docs_show_the_table_word_for_word():
    begin = "<!-- criteria table: reskeras.study.criteria.markdown_table() -->\n"
    end = "\n<!-- end of criteria table -->"
    shown = STUDY_DOC[STUDY_DOC.index(begin) + len(begin):STUDY_DOC.index(end)]
    assert shown == C.markdown_table()


def test_the_table_has_one_row_per_key_and_the_constants_are_its_values():
    keys = [c.key for c in C.TABLE]
    assert len(keys) == len(set(keys))
    assert list(C.criteria()) == keys
    for c in C.TABLE:
        assert getattr(C, c.key.upper()) == c.value
    table_rows = C.markdown_table().splitlines()[2:]
    assert [re.match(r"\| `([a-z_]+)` \|", row).group(1) for row in table_rows] == keys


@pytest.mark.parametrize("criterion", [c for c in C.TABLE if c.changed], ids=lambda c: c.key)
def test_every_changed_rule_has_its_rule_history_row(criterion):
    rows = [line for line in _section("Rule history").splitlines()
            if line.startswith(f"| {criterion.changed} |")]
    assert any(f'["{criterion.key}"]' in row for row in rows), (criterion.key, criterion.changed)


def test_a_rule_history_row_names_only_keys_the_table_has_changed():
    # a row that cites a criterion must be that criterion's latest change, or an older one
    changed = {c.key: c.changed for c in C.TABLE}
    verdict_only = {"base_steps", "cap_steps"}  # written by the verdict from the study's config
    for line in _section("Rule history").splitlines():
        m = re.match(r"\| (\d{4}-\d\d-\d\d) \|([^|]*)\|", line)
        if not m:
            continue
        for key in re.findall(r'\["([a-z_]+)"\]', m.group(2)):
            if key in verdict_only:
                continue
            assert key in changed, key
            assert changed[key] is not None and changed[key] >= m.group(1), (key, m.group(1))


def test_the_committed_verdict_was_judged_by_the_current_table():
    verdict = json.loads((ROOT / "docs" / "figures" / "study" / "verdict.json").read_text())
    recorded = {k: v for k, v in verdict["criteria"].items() if k not in ("base_steps", "cap_steps")}
    assert recorded == C.criteria()
