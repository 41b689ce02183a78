"""Preprocessing survey exports: the bad inputs, the cleaning, the sample generator."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from harmonygraph.graphs.survey_data import (
    EmptySurveyError,
    InsufficientResponsesError,
    SurveyFormatError,
    load_survey,
    redact_pii,
)

from .support import DEMO_DATA, EXAMPLES

HEADER = "response_id,submitted_at,region,plan,tenure_months,nps,satisfaction,ease_of_use,support_quality,value_for_money,comment"


def write(tmp_path: Path, name: str, data: bytes | str) -> Path:
    p = tmp_path / name
    p.write_bytes(data.encode() if isinstance(data, str) else data)
    return p


def test_empty_file(tmp_path: Path) -> None:
    with pytest.raises(EmptySurveyError, match=r"is empty; export the responses again"):
        load_survey(write(tmp_path, "empty.csv", "\n  \n"))


def test_header_without_rows(tmp_path: Path) -> None:
    with pytest.raises(EmptySurveyError, match="has a header but no responses"):
        load_survey(write(tmp_path, "h.csv", HEADER + "\n"))


def test_wrong_columns_name_what_is_missing(tmp_path: Path) -> None:
    p = write(tmp_path, "wrong.csv", "id,when,score\n1,2026-01-01,9\n")
    with pytest.raises(SurveyFormatError) as info:
        load_survey(p)
    msg = str(info.value)
    assert (
        "lacks the column(s) submitted_at, region, plan, nps" in msg
        and "it has id, when, score" in msg
    )


def test_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="does not exist"):
        load_survey(tmp_path / "nope.csv")


def test_mixed_encodings_are_read_line_by_line(tmp_path: Path) -> None:
    utf8 = "R1,2026-02-01T10:00:00,Europe,Team,3,9,5,4,4,4,Très bien, merci\n".replace(
        ", merci", ""
    )
    cp1252 = "R2,2026-02-01T11:00:00,Europe,Team,3,4,2,2,2,2,Le support était lent – trop lent\n"
    data = (HEADER + "\n" + utf8).encode("utf-8") + cp1252.encode("cp1252")
    survey = load_survey(write(tmp_path, "mixed.csv", data))
    comments = [r.comment for r in survey.responses]
    assert comments == ["Très bien", "Le support était lent – trop lent"]
    assert survey.report.decoded_lines["utf-8"] >= 2 and len(survey.report.decoded_lines) == 2
    assert any("mixed text encodings" in n for n in survey.report.notes())


def test_one_row_is_too_few(tmp_path: Path) -> None:
    row = "R1,2026-02-01T10:00:00,Europe,Team,3,9,5,4,4,4,Fine\n"
    with pytest.raises(InsufficientResponsesError, match="1 usable response"):
        load_survey(write(tmp_path, "one.csv", HEADER + "\n" + row), min_responses=10)
    assert load_survey(write(tmp_path, "one.csv", HEADER + "\n" + row)).report.rows_kept == 1


def test_json_lines_with_aliases_labels_and_a_seven_point_item(tmp_path: Path) -> None:
    rows = [
        {"id": "a", "timestamp": "2026-02-01 10:00:00", "region": "europe", "plan": "team",
         "NPS score": "10 - Extremely likely", "satisfaction": "Strongly agree", "ease_of_use": 7,
         "comments": "Call +1 (415) 555-0134 or mail jo.doe@example.com", "browser": "firefox"},
        {"id": "b", "timestamp": "01/02/2026", "region": "APAC", "plan": "Free", "NPS score": 3,
         "satisfaction": "2", "ease_of_use": 1, "comments": "Paid 120 in 2025-2026."},
    ]  # fmt: skip
    text = "\n".join(json.dumps(r) for r in rows) + "\nnot json\n"
    survey = load_survey(write(tmp_path, "export.jsonl", text))
    a, b = survey.responses
    assert (a.region, a.plan, a.nps, a.nps_category, a.satisfaction) == (
        "Europe",
        "Team",
        10,
        "promoter",
        5.0,
    )
    assert a.ease_of_use == 5.0 and b.ease_of_use == 1.0  # 1-7 mapped onto 1-5
    assert a.comment == "Call [phone redacted] or mail [email redacted]"
    assert b.comment == "Paid 120 in 2025-2026."
    r = survey.report
    assert r.format == "jsonl" and r.redacted_emails == 1 and r.redacted_phones == 1
    assert r.ignored_columns == ["browser"]
    assert r.rescaled_items == {"ease_of_use": "answered on a 1-7 scale, rescaled linearly to 1-5"}
    assert [(d.line, d.reason) for d in r.dropped] == [(3, "unreadable record: Expecting value")]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail me: a.b+c@mail.example.co.uk!", "mail me: [email redacted]!"),
        ("UK 07700 900123, US (212) 555-0199", "UK [phone redacted], US [phone redacted]"),
        ("order 12345 of 2026-02-01", "order 12345 of 2026-02-01"),
    ],
)
def test_redaction(text: str, expected: str) -> None:
    assert redact_pii(text)[0] == expected


def test_sample_export_cleaning_report() -> None:
    survey = load_survey(DEMO_DATA / "responses.csv")
    r = survey.report
    assert (r.rows_read, r.rows_kept) == (332, 320)
    reasons = r.drop_counts()
    assert reasons["duplicate"] == 7
    assert {"NPS answer out of range 0-10 (11)", "region is missing", "unreadable row"} <= set(
        reasons
    )
    assert r.redacted_emails + r.redacted_phones == 12
    assert not any("@" in x.comment for x in survey.responses)


def test_generator_is_seeded_and_matches_the_committed_sample(tmp_path: Path) -> None:
    out = tmp_path / "again.csv"
    subprocess.run(
        [sys.executable, str(EXAMPLES / "generate.py"), str(out)], check=True, capture_output=True
    )
    assert out.read_bytes() == (DEMO_DATA / "responses.csv").read_bytes()
