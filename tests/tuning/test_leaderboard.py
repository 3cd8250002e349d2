"""The leaderboard contract on hand-made entries: order, exact keys, files, errors."""

import csv
import json
import re
from pathlib import Path

import pytest

from reskeras.specs import resolve_spec
from tuning import read_leaderboard, write_leaderboard
from tuning.leaderboard import make_entry
from tests.tuning.documented import ENTRY_KEYS, FIGURE_SIZE, GRADIENT_KEYS

SEARCH = {"tuner": "random", "dataset": "digits"}


def _entry(trial_id, status, score=None, depth=8, width=4, **extra):
    values = dict(trial_id=trial_id, status=status, score=score,
                  arch=resolve_spec(depth, width=width).to_config(), params=1000 + depth,
                  hyperparameters={"depth": depth, "width": width})
    if status == "COMPLETED":
        values.update(run_dir=f"runs/{trial_id}", weights=f"runs/{trial_id}/model.keras",
                      metrics={"val_accuracy": score}, seconds=1.5,
                      gradients={"first_last_ratio_init": 2.0, "first_last_ratio_median": 1.5,
                                 "state": "healthy", "nonfinite": False})
    values.update(extra)
    return values


def test_sorted_best_first_then_the_others_by_id(tmp_path):
    entries = [_entry("4", "FAILED", failure="over budget: params 9 > max_params 8"),
               _entry("0", "COMPLETED", 0.5), _entry("3", "COMPLETED", 0.9, depth=14),
               _entry("1", "RUNNING"), _entry("2", "COMPLETED", 0.9, width=8),
               _entry("5", "INVALID", failure="ValueError: boom")]
    board = write_leaderboard(str(tmp_path), objective={"name": "val_accuracy",
                                                        "direction": "max"},
                              search=SEARCH, entries=entries)
    assert [t["trial_id"] for t in board["trials"]] == ["2", "3", "0", "1", "4", "5"]
    assert read_leaderboard(str(tmp_path)) == board
    with open(tmp_path / "leaderboard.json") as handle:
        text = handle.read()
    assert list(json.loads(text)["trials"][0]) == list(ENTRY_KEYS)  # contract order on disk
    with open(tmp_path / "leaderboard.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["rank"], r["trial_id"], r["model_name"], r["depth"], r["width"]) for r in rows] \
        == [("1", "2", "resnet8_w8", "8", "8"), ("2", "3", "resnet14_w4", "14", "4"),
            ("3", "0", "resnet8_w4", "8", "4"), ("4", "1", "resnet8_w4", "8", "4"),
            ("5", "4", "resnet8_w4", "8", "4"), ("6", "5", "resnet8_w4", "8", "4")]
    assert rows[4]["failure"] == "over budget: params 9 > max_params 8"
    minimized = write_leaderboard(str(tmp_path), objective={"name": "val_loss",
                                                            "direction": "min"},
                                  search=SEARCH, entries=entries, figure=False)
    assert [t["trial_id"] for t in minimized["trials"]][:3] == ["0", "2", "3"]


def test_entries_have_exactly_the_contract_keys_and_null_for_missing_values():
    entry = make_entry(**_entry("7", "FAILED", failure="diverged"))
    assert tuple(entry) == ENTRY_KEYS
    assert entry["score"] is None and entry["run_dir"] is None and entry["weights"] is None
    assert entry["gradients"] == {"first_last_ratio_init": None,
                                  "first_last_ratio_median": None, "state": "unknown",
                                  "nonfinite": False}
    assert make_entry(**_entry("8", "COMPLETED", float("nan")))["score"] is None
    with pytest.raises(ValueError, match="Unknown leaderboard entry keys"):
        make_entry(**_entry("9", "COMPLETED", 0.1, flavour="x"))
    with pytest.raises(ValueError, match="`status` must be one of"):
        make_entry(**_entry("9", "DONE"))


def test_figure_is_a_png_of_the_documented_size(tmp_path):
    write_leaderboard(str(tmp_path), objective={"name": "val_accuracy", "direction": "max"},
                      search=SEARCH, entries=[_entry("0", "COMPLETED", 0.4),
                                              _entry("1", "COMPLETED", 0.6, depth=14, width=8),
                                              _entry("2", "FAILED", depth=20, width=8)])
    with open(tmp_path / "leaderboard.png", "rb") as handle:
        header = handle.read(24)
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    size = (int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big"))
    assert size == FIGURE_SIZE


def test_read_leaderboard_names_the_directory_when_missing(tmp_path):
    with pytest.raises(ValueError, match="must be a reskeras tuner directory with "
                                         "leaderboard.json"):
        read_leaderboard(str(tmp_path / "none"))
    (tmp_path / "leaderboard.json").write_text("[]")
    with pytest.raises(ValueError, match="without objective, search and trials"):
        read_leaderboard(str(tmp_path))
    with pytest.raises(ValueError, match="`objective` must be"):
        write_leaderboard(str(tmp_path), objective={"name": "x", "direction": "up"},
                          search={}, entries=[])


def _top_level_keys(text: str) -> list[str]:
    """The keys of the first JSON object in ``text`` (the docs' example elides with ``...``,
    so it is not parsed as JSON): those quoted at depth 1, followed by a colon."""
    keys, depth = [], 0
    for match in re.finditer(r'[{}\[\]]|"(\w+)": ', text):
        token = match.group(0)
        if token in "{[":
            depth += 1
        elif token in "}]":
            depth -= 1
            if depth == 0:
                return keys
        elif depth == 1:
            keys.append(match.group(1))
    raise AssertionError("unbalanced example")


def test_the_contract_spelled_out_in_the_tests_is_the_one_docs_tuning_states():
    with open(Path(__file__).parents[2] / "docs" / "tuning.md") as handle:
        page = handle.read()
    example = page.split("## The leaderboard (a contract)")[1].split("```json")[1].split("```")[0]
    entry = example.split('"trials": [')[1]
    assert tuple(_top_level_keys(entry)) == ENTRY_KEYS
    assert tuple(_top_level_keys(entry.split('"gradients": ')[1])) == GRADIENT_KEYS
    assert "Each entry has exactly the keys above, in that order." in page
    assert f"`leaderboard.png` ({FIGURE_SIZE[0]} x {FIGURE_SIZE[1]} px)" in page
