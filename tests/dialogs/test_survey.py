"""Loading surveys: the shipped ones load, and each kind of broken survey fails clearly."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import yaml

from dialogs.survey import (
    SURVEYS_DIR,
    LevelStep,
    SurveyError,
    default_survey,
    extract_messages,
    load_survey,
)

BAD = Path(__file__).resolve().parent / "bad_surveys"


def test_default_survey_shape() -> None:
    survey = default_survey()
    assert (survey.id, survey.start, survey.max_retries) == ("default", "overall", 3)
    assert (survey.expires_after_hours, survey.reminder_after_hours) == (72, 4)
    overall = survey.step("overall")
    assert isinstance(overall, LevelStep)
    assert overall.shortcut == ["attitude", "efficiency", "convenience"]
    assert [step.field for step in survey.steps] == [
        "level",
        "dimensions.attitude",
        "dimensions.efficiency",
        "dimensions.convenience",
        "complaint.problems",
        "complaint.details",
        "complaint.callback",
        "comment",
    ]


def test_liaocheng_survey_loads_with_five_dimensions() -> None:
    survey = load_survey(SURVEYS_DIR / "liaocheng_offline.yaml")
    dimensions = [s.dimension for s in survey.steps if isinstance(s, LevelStep) and s.dimension]
    assert dimensions == ["attitude", "efficiency", "convenience", "service_level", "integrity"]


def test_survey_loads_from_json(tmp_path: Path) -> None:
    data = yaml.safe_load((SURVEYS_DIR / "default.yaml").read_text(encoding="utf-8"))
    path = tmp_path / "default.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    assert load_survey(path) == default_survey()


@pytest.mark.parametrize(
    ("file", "message"),
    [
        ("duplicate_id.yaml", "step 'comment': duplicate step id"),
        ("dangling_exit.yaml", "step 'overall': exit to unknown step 'complaint'"),
        ("unreachable_step.yaml", "step 'comment': unreachable from 'overall'"),
        (
            "missing_translation.yaml",
            "step 'mood': message 'survey.mood.prompt' has no translation in "
            "zh_Hans_CN, zh_Hant_TW, en",
        ),
        ("missing_start.yaml", "start: no step 'welcome'"),
        ("no_otherwise_case.yaml", "step 'overall': the last case of 'next' must have no 'when'"),
        ("level_out_of_range.yaml", "step 'overall': level_in must be within 1-5"),
        ("broken_shortcut.yaml", "step 'overall': shortcut 'efficiency' must directly follow"),
        ("unknown_type.yaml", "step 'overall'"),
        ("bad_field.yaml", "step 'note' field: Input should be"),
    ],
)
def test_broken_survey_is_refused_naming_the_step(file: str, message: str) -> None:
    with pytest.raises(SurveyError) as caught:
        load_survey(BAD / file)
    assert message in str(caught.value)
    assert str(BAD / file) in str(caught.value)


def test_unreadable_survey(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("steps: [\n", encoding="utf-8")
    with pytest.raises(SurveyError, match="cannot read survey"):
        load_survey(path)
    with pytest.raises(SurveyError, match="cannot read survey"):
        load_survey(tmp_path / "missing.yaml")


def test_extractor_yields_every_message_id_of_the_survey() -> None:
    raw = (SURVEYS_DIR / "default.yaml").read_bytes()
    found = [message for _, _, message, _ in extract_messages(io.BytesIO(raw), [], [], {})]
    assert set(found) == set(default_survey().message_ids()) - {
        "hint.level", "hint.choice_many", "hint.yes_no", "hint.text",  # defaults marked in code
    }  # fmt: skip
    raw_lines = raw.decode().splitlines()
    for lineno, _, message, _ in extract_messages(io.BytesIO(raw), [], [], {}):
        assert message in raw_lines[lineno - 1]
