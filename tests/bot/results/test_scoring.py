"""The composite score's rules: weights over the parts a group has, competition ranks, the bottom
N with ties, and a results file refused with a reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.results.scoring import BadResultsFile, ResultsRules, bottom, rank, results_rules, score

RULES = ResultsRules(
    weights={"good_rate": 60, "on_time": 20, "rerated_good": 10, "response_rate": 10}
)


def test_the_score_weighs_the_parts_a_group_has() -> None:
    every = {"good_rate": 90.0, "on_time": 50.0, "rerated_good": 100.0, "response_rate": 40.0}
    assert score(RULES, every) == (60 * 90 + 20 * 50 + 10 * 100 + 10 * 40) / 100
    # no ticket fell due and nothing was re-rated: the other weights count in their place
    some = {"good_rate": 90.0, "on_time": None, "rerated_good": None, "response_rate": 40.0}
    assert score(RULES, some) == round((60 * 90 + 10 * 40) / 70, 2)


def test_equal_scores_share_a_rank_and_the_next_skips() -> None:
    assert rank([("a", 90.0), ("b", 95.0), ("c", 90.0), ("d", 80.0)]) == {
        "b": 1,
        "a": 2,
        "c": 2,
        "d": 4,
    }


def test_the_bottom_takes_in_those_tied_with_its_last() -> None:
    ranks = {"a": 1, "b": 2, "c": 3, "d": 3, "e": 5}
    assert bottom(ranks, 1) == {"e"}
    assert bottom(ranks, 2) == {"c", "d", "e"}
    assert bottom(ranks, 9) == set(ranks)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("weights: {good_rate: -1}\n", "weights"),
        ("weights: {good_rate: 0}\n", "at least one above 0"),
        ("weights: {kindness: 5}\n", "kindness"),
        ("weights: {good_rate: 1}\nmin_sample: 0\n", "min_sample"),
        ("weights: [\n", "results.yaml"),
    ],
)
def test_a_results_file_with_a_mistake_is_refused(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "results.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(BadResultsFile, match=says):
        results_rules(path)


def test_the_shipped_defaults_load() -> None:
    rules = results_rules(None)
    assert sum(rules.weights.values()) == 100 and rules.min_sample >= 1
