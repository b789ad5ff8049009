"""The composite score (综合评分) and the ranks, by the rules of one YAML file
(``RATEBOT_RESULTS_FILE``; the defaults ship as ``bot/results/results.yaml``), validated when
ratebot starts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

DEFAULT_FILE = Path(__file__).resolve().parent / "results.yaml"

Part = Literal["good_rate", "on_time", "rerated_good", "response_rate"]


class ResultsRules(BaseModel):
    model_config = ConfigDict(extra="forbid")

    weights: dict[Part, float]
    min_sample: int = Field(default=30, ge=1)
    bottom: int = Field(default=3, ge=1)
    decimals: int = Field(default=2, ge=0, le=6)

    @model_validator(mode="after")
    def _weighed(self) -> ResultsRules:
        if any(w < 0 for w in self.weights.values()) or not any(self.weights.values()):
            raise ValueError("weights must be 0 or more, and at least one above 0")
        return self


class BadResultsFile(ValueError):
    """The results file cannot be read or breaks a rule: ratebot does not start."""


@lru_cache
def results_rules(path: Path | None) -> ResultsRules:
    source = path or DEFAULT_FILE
    try:
        data = yaml.safe_load(source.read_text(encoding="utf-8"))
        return ResultsRules.model_validate(data)
    except (OSError, yaml.YAMLError) as exc:
        raise BadResultsFile(f"{source}: {exc}") from exc
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'file'}: {e['msg']}" for e in exc.errors()
        )
        raise BadResultsFile(f"{source}: {problems}") from exc


def percent(part: int, whole: int) -> float | None:
    return None if whole == 0 else 100 * part / whole


def parts(figures: Mapping[str, Any]) -> dict[str, float | None]:
    """A group's score parts, 0-100 each; ``None`` where it has no figure."""
    response = percent(figures["counted"], figures["invitations"])
    return {
        "good_rate": figures["good_rate"],
        "on_time": percent(figures["tickets_on_time"], figures["tickets_due"]),
        "rerated_good": percent(figures["rerated_good"], figures["rerated"]),
        "response_rate": None if response is None else min(response, 100.0),
    }


def score(rules: ResultsRules, of: Mapping[str, float | None]) -> float:
    """The weighted mean of the parts a group has, rounded."""
    present = [(w, of[p]) for p, w in rules.weights.items() if w and of.get(p) is not None]
    total = sum(w for w, _ in present)
    value = sum(w * v for w, v in present if v is not None) / total if total else 0.0
    return round(value, rules.decimals)


def rank(scores: Sequence[tuple[str, float]]) -> dict[str, int]:
    """Competition ranks, best score first: equal scores share a rank, the next one skips."""
    ordered = sorted(scores, key=lambda pair: (-pair[1], pair[0]))
    ranks: dict[str, int] = {}
    previous: float | None = None
    current = 0
    for position, (key, value) in enumerate(ordered, start=1):
        if value != previous:
            current, previous = position, value
        ranks[key] = current
    return ranks


def bottom(ranks: Mapping[str, int], n: int) -> set[str]:
    """The groups in the bottom ``n`` places, with those tied with the last of them."""
    if not ranks:
        return set()
    ordered = sorted(ranks.values(), reverse=True)
    threshold = ordered[min(n, len(ordered)) - 1]
    return {key for key, value in ranks.items() if value >= threshold}
