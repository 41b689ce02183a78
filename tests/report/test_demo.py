"""`harmonygraph demo`: the recorded trace replays strictly, and the PDF is a real report."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from harmonygraph.cli import app
from harmonygraph.graphs.survey import DEMO_DATA
from harmonygraph.tracing import Trace
from pypdf import PdfReader
from typer.testing import CliRunner

TRACE = DEMO_DATA / "demo_trace.jsonl"


def test_the_demo_trace_is_valid_harmony_from_gpt_oss() -> None:
    from harmonygraph.harmony import parse_completion_text

    trace = Trace.load(TRACE)
    calls = trace.model_calls
    assert len(calls) >= 6 and trace.header["model"].endswith("gpt-oss-20b")
    for call in calls:
        parsed = parse_completion_text(call["raw"]).messages
        assert [m.to_dict() for m in parsed] == call["messages"]
        assert parsed[0].is_reasoning  # every turn starts with its chain of thought
    recipients = {m["recipient"] for c in calls for m in c["messages"] if m.get("recipient")}
    assert {"python", "functions.search_documents"} <= recipients


def test_demo_replays_strictly_and_writes_the_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HARMONYGRAPH_HOME", str(tmp_path / "home"))  # a fresh embedded Postgres
    out = tmp_path / "report"
    res = CliRunner().invoke(app, ["demo", "--out", str(out), "--strict", "--json"])
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    paths = payload["report"]
    for kind in ("md", "html", "pdf"):
        assert Path(paths[kind]).is_file()
    md = Path(paths["md"]).read_text()
    assert "## References" in md and "NPS" in md and "Appendix" in md

    reader = PdfReader(paths["pdf"])
    assert len(reader.pages) >= 2
    images = sum(len(page.images) for page in reader.pages)
    assert images >= 2  # the two charts the sandbox drew
    text = "\n".join(page.extract_text() for page in reader.pages)
    assert "References" in text and "nps_summary.csv" in text
    # Every citation marker in the text has its numbered entry in the reference list.
    entries = re.findall(r"^(\d+)\. <a id=\"ref-\1\"></a>", md, re.M)
    cited = {int(n) for n in re.findall(r"\[\\\[(\d+)\\\]\]\(#ref-\d+\)", md)}
    assert [int(n) for n in entries] == list(range(1, len(entries) + 1)) and len(entries) >= 4
    assert cited == set(range(1, len(entries) + 1))
    assert "Figure 1." in text and "Figure 2." in text
    _assert_pages_show_the_charts(Path(paths["pdf"]))
    timings = payload["timings"]
    assert timings["model_calls"] == len(Trace.load(TRACE).model_calls)


def _assert_pages_show_the_charts(pdf: Path) -> None:
    """Look at the pages as a person would: rendered, not blank, the charts' bars in colour."""
    import pypdfium2 as pdfium

    document = pdfium.PdfDocument(str(pdf))
    try:
        colours: set[tuple[int, int, int]] = set()
        for page in document:
            image = page.render(scale=1).to_pil().convert("RGB")
            extrema = image.convert("L").getextrema()
            assert extrema[0] < 100 < extrema[1], "a blank page"
            colours |= {rgb for _, rgb in image.getcolors(maxcolors=1 << 20) or []}
    finally:
        document.close()
    # The bars: matplotlib's blue (#4c72b0) and red (#c44e52), give or take anti-aliasing.
    for target in ((0x4C, 0x72, 0xB0), (0xC4, 0x4E, 0x52)):
        assert any(sum(abs(a - b) for a, b in zip(c, target, strict=True)) < 12 for c in colours)


def test_demo_into_an_unwritable_folder_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HARMONYGRAPH_HOME", str(tmp_path / "home"))
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    res = CliRunner().invoke(app, ["demo", "--out", str(blocked / "report")])
    assert res.exit_code == 2
    assert "error:" in res.output and "Traceback" not in res.output


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("", "empty"),
        ("id,score\n1,5\n2,3\n", "lacks the column(s)"),
        (
            "response_id,submitted_at,region,plan,tenure_months,nps,satisfaction,ease_of_use,"
            "support_quality,value_for_money,comment\n"
            "R1,2026-02-03T20:06:00,Europe,Team,3,9,4,4,4,4,fine\n",
            "at least 10",
        ),
    ],
    ids=["empty", "wrong-columns", "one-row"],
)
def test_demo_on_a_bad_survey_file_says_what_to_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str, words: str
) -> None:
    """`--survey` with a live model: the file is checked before any model call is made."""
    monkeypatch.setenv("HARMONYGRAPH_HOME", str(tmp_path / "home"))
    bad = tmp_path / "export.csv"
    bad.write_bytes(content.encode())
    res = CliRunner().invoke(
        app,
        [
            "demo",
            "--survey",
            str(bad),
            "--base-url",
            "http://127.0.0.1:9/v1",
            "--out",
            str(tmp_path / "r"),
        ],
    )
    assert res.exit_code == 2, res.output
    assert "error:" in res.output and words in res.output.lower()
    assert "Traceback" not in res.output


def test_demo_survey_without_a_live_model_is_refused(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["demo", "--survey", str(tmp_path / "x.csv")])
    assert res.exit_code == 2 and "--survey needs a live model" in res.output
