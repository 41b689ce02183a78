"""The dashboard in headless Chromium (Debian's `chromium`, driven by Playwright's Python
API): sign in, list runs, filter, open a run, toggle reasoning; screenshots saved under
$HARMONYGRAPH_SCREENSHOTS (default: the test's tmp folder)."""

from __future__ import annotations

import pytest

from tests.serve.conftest import call, final

pytestmark = pytest.mark.postgres


def test_sign_in_list_open_and_toggle_reasoning(serve, browser, shots):
    s = serve([call("lookup", '{"q": "capital"}', reasoning="Look it up first."),
               final("Paris.", reasoning="The tool said Paris.")],
              key_options={"show_reasoning": True})  # fmt: skip
    tools = [{"type": "function", "name": "lookup", "parameters": {"type": "object"}}]
    client = s.client()
    first = client.responses.create(model="helper", input="Capital of France?", tools=tools)
    fc = first.output[-1]
    done = client.responses.create(
        model="helper", previous_response_id=first.id, tools=tools,
        input=[{"type": "function_call_output", "call_id": fc.call_id, "output": "Paris"}],
    )  # fmt: skip
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(s.base_url + "/runs")
    assert "/signin" in page.url  # nothing without a key
    page.fill("#key", "hg-not-a-key")
    page.click("button[type=submit]")
    assert "unknown or revoked" in page.inner_text("main")
    page.fill("#key", s.key)
    page.click("button[type=submit]")
    page.wait_for_url("**/runs")
    rows = page.locator("#runs tbody tr")
    assert rows.count() >= 2
    assert "Capital of France?" in page.inner_text("#runs")
    page.screenshot(path=str(shots / "runs.png"), full_page=True)
    page.fill("input[name=q]", "no such run anywhere")
    page.click("form.filters button")
    assert "No runs match." in page.inner_text("#runs")
    page.goto(f"{s.base_url}/runs/{done.id}")
    body = page.inner_text("main")
    assert "Paris." in page.inner_text("#answer")
    assert "reasoning hidden" in body and "The tool said Paris." not in body
    page.click("#toggle-reasoning")
    assert "The tool said Paris." in page.inner_text("main")
    page.screenshot(path=str(shots / "run.png"), full_page=True)
    page.goto(f"{s.base_url}/runs/{first.id}")
    assert "functions.lookup" in page.inner_text("main")


def test_reasoning_toggle_absent_for_keys_not_allowed(serve, browser):
    s = serve([final("Hi.", reasoning="PRIVATE-THOUGHT")])
    done = s.client().responses.create(model="helper", input="Hello")
    page = browser.new_page()
    page.goto(s.base_url + "/signin")
    page.fill("#key", s.key)
    page.click("button[type=submit]")
    page.goto(f"{s.base_url}/runs/{done.id}?reasoning=1")
    assert page.locator("#toggle-reasoning").count() == 0
    assert "PRIVATE-THOUGHT" not in page.content()
