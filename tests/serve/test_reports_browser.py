"""The dashboard's reports in headless Chromium: a survey export uploaded through the form,
the pipeline's progress watched as the page refreshes itself, the finished report opened
(HTML view with its charts, Markdown and PDF downloads); uploads that are not survey
exports. The pipeline runs for real (Postgres, the sandbox, the renderer); its model is
the served agent's own client, answered over HTTP by `FakeOpenAIServer` with the survey
demo's recorded gpt-oss completions. Screenshots go to $HARMONYGRAPH_SCREENSHOTS."""

from __future__ import annotations

import pytest

from tests.serve.conftest import make_agents, sign_in

pytestmark = pytest.mark.postgres

# The whole pipeline (ingest, the sandbox's analysis, seven model turns, rendering) on a
# busy machine: an upper bound to wait for, not a duration anything asserts.
PIPELINE_WAIT_MS = 300_000


@pytest.fixture
def survey_server(serve, tmp_path, monkeypatch):
    """The serve app with a survey pipeline (`--survey-agent helper`, as the CLI wires it)."""
    from harmonygraph.graphs.survey import DEMO_DATA
    from harmonygraph.tools.retrieval.db import stop_embedded
    from harmonygraph.tracing import FakeOpenAIServer, Trace

    home = tmp_path / "home"
    monkeypatch.setenv("HARMONYGRAPH_HOME", str(home))  # the demo's own fresh document store
    trace = Trace.load(DEMO_DATA / "demo_trace.jsonl")
    fake = FakeOpenAIServer([c["raw"] for c in trace.model_calls]).start()
    agents = make_agents(fake.base_url)
    s = serve(fake=fake, agents=agents, survey_model=agents[0].agent.model,
              survey_options={"store": "demo", "current_date": trace.header["current_date"]})  # fmt: skip
    yield s
    stop_embedded(home / "demo-pgdata")


def _statuses(page) -> tuple[str, list[str]]:
    return page.inner_text("#status"), page.locator("#progress li").all_inner_texts()


def test_upload_watch_progress_and_open_the_report(survey_server, browser, shots, tmp_path):
    from harmonygraph.graphs.survey import DEMO_DATA
    from pypdf import PdfReader

    s = survey_server
    page = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    sign_in(page, s.base_url, s.key)
    page.click("header >> text=Reports")
    page.wait_for_url("**/reports")
    assert "No reports yet." in page.inner_text("#reports")
    page.fill("input[name=title]", "Customer survey 2026")
    page.set_input_files("input[name=survey]", str(DEMO_DATA / "responses.csv"))
    page.screenshot(path=str(shots / "reports-upload.png"), full_page=True)
    page.click("form button[type=submit]")
    page.wait_for_url("**/reports/rep_*")
    report_url = page.url

    # Live progress: the page refreshes itself while the pipeline runs.
    status, first = _statuses(page)
    assert status == "running"
    assert "The pipeline is running; this page refreshes itself." in page.inner_text("main")
    assert page.locator('meta[http-equiv="refresh"]').count() == 1
    page.wait_for_selector("#progress li")
    running = [_statuses(page)[1]]
    page.screenshot(path=str(shots / "report-progress.png"), full_page=True)
    page.wait_for_selector("#status.s-done, #status.s-failed", timeout=PIPELINE_WAIT_MS)
    status, done = _statuses(page)
    assert status == "done", page.inner_text("main")
    assert page.url == report_url
    assert page.locator('meta[http-equiv="refresh"]').count() == 0  # it stops refreshing
    # What was shown while it ran is the start of what the finished page lists.
    assert running[0] and done[: len(running[0])] == running[0] and len(done) > len(running[0])
    assert first == done[: len(first)]
    for stage in ("preprocess", "ingest", "analysis", "plan", "assemble", "render", "deliver"):
        assert any(line.startswith(f"✓ {stage}") for line in done), (stage, done)
    assert any("section 1/3: Loyalty overview" in line for line in done)
    assert done[0] == "▸ preprocess responses.csv"  # the upload's name, not the server's path

    # The report, in the page: its charts drawn (loaded images, not broken ones).
    frame = page.frame_locator("iframe[title=report]")
    frame.locator("h1").first.wait_for()
    charts = frame.locator("img")
    assert charts.count() >= 2
    for i in range(charts.count()):
        assert charts.nth(i).evaluate("img => img.complete && img.naturalWidth > 0")
    page.screenshot(path=str(shots / "report.png"), full_page=True)

    # The HTML view on its own.
    page.click("#view-html")
    page.wait_for_url("**/files/report.html")
    assert "References" in page.inner_text("body")
    figures = page.locator("img")
    assert figures.count() >= 2
    assert all(figures.nth(i).evaluate("img => img.naturalWidth > 0")
               for i in range(figures.count()))  # fmt: skip
    page.goto(report_url)

    # The downloads: Markdown and a real PDF.
    with page.expect_download() as md_info:
        page.click("#download-md")
    md = md_info.value
    assert md.suggested_filename == "report.md"
    md.save_as(str(tmp_path / "report.md"))
    text = (tmp_path / "report.md").read_text()
    assert "## References" in text and "NPS" in text
    with page.expect_download() as pdf_info:
        page.click("#download-pdf")
    pdf = pdf_info.value
    assert pdf.suggested_filename == "report.pdf"
    pdf.save_as(str(tmp_path / "report.pdf"))
    reader = PdfReader(str(tmp_path / "report.pdf"))
    assert len(reader.pages) >= 2
    assert sum(len(p.images) for p in reader.pages) >= 2  # the two charts

    # Listed on the reports page, with its files.
    page.goto(s.base_url + "/reports")
    row = page.locator("#reports tbody tr", has_text="Customer survey 2026")
    assert "done" in row.inner_text()
    assert {a.inner_text() for a in row.locator("td:last-child a").all()} == {"md", "html", "pdf"}
    page.screenshot(path=str(shots / "reports.png"), full_page=True)


def test_uploads_that_are_not_survey_exports(survey_server, browser, shots, tmp_path):
    s = survey_server
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    sign_in(page, s.base_url, s.key)

    # Not a CSV or JSON Lines file: an error page, nothing started.
    notes = tmp_path / "notes.txt"
    notes.write_text("not a survey")
    page.goto(s.base_url + "/reports")
    page.set_input_files("input[name=survey]", str(notes))
    page.click("form button[type=submit]")
    assert page.inner_text("h1") == "400"
    assert "must be a .csv or .jsonl file" in page.inner_text("main")
    assert "Traceback" not in page.content()

    # A CSV that is not a survey export: the job fails at once, saying what is wrong.
    wrong = tmp_path / "sales.csv"
    wrong.write_text("id,score\n1,5\n2,3\n")
    page.goto(s.base_url + "/reports")
    page.set_input_files("input[name=survey]", str(wrong))
    page.click("form button[type=submit]")
    page.wait_for_url("**/reports/rep_*")
    page.wait_for_selector("#status.s-failed", timeout=PIPELINE_WAIT_MS)
    message = page.inner_text("main .error")
    assert message.startswith("the survey file sales.csv lacks the column(s)"), message
    assert "Traceback" not in page.content()
    assert page.locator("#progress li").all_inner_texts() == ["▸ preprocess sales.csv"]
    assert s.fake.bodies("/v1/completions") == []  # no model call was made for it
    page.screenshot(path=str(shots / "report-failed.png"), full_page=True)

    # Nothing lost: the failed job is listed with the rest, its upload kept on the server.
    page.goto(s.base_url + "/reports")
    row = page.locator("#reports tbody tr", has_text="sales")
    assert "failed" in row.inner_text()
    job_id = row.locator("a").first.get_attribute("href").rsplit("/", 1)[1]
    kept = s.app.config.reports_dir / job_id / "input.csv"
    assert kept.read_text() == wrong.read_text()
