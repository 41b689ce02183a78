"""After `agent.run`, the pages the browser showed stay with the result, for the references."""

from __future__ import annotations

import json

from browser_testkit import LocalServer
from harmonygraph import Agent
from harmonygraph.tools.browser import BrowserToolset, format_references
from harmonygraph.tracing import ScriptedModel


def _open(url: str) -> str:
    return (
        "<|channel|>analysis<|message|>Read it.<|end|><|start|>assistant<|channel|>commentary "
        f"to=browser.open <|constrain|>json<|message|>{json.dumps({'id': url})}<|call|>"
    )


def test_the_result_keeps_the_pages_for_format_references(
    browser: BrowserToolset, server: LocalServer
) -> None:
    url = server.url("/text")
    answer = "Notes are numbered 【0†L9-L11】."
    model = ScriptedModel([_open(url), f"<|channel|>final<|message|>{answer}<|return|>"])
    result = Agent(model, tools=[browser]).run("What are the notes like?")
    assert result.sources is not None and len(result.sources.pages) == 1
    assert result.sources.pages[0].url == url
    text, refs = format_references(result.text, result.sources)
    assert text == "Notes are numbered [1]."
    assert [(r.url, r.start, r.end, r.valid) for r in refs] == [(url, 9, 11, True)]
    assert "Note 9" in refs[0].quote

    # A run without the browser has no pages to keep.
    plain = Agent(ScriptedModel(["<|channel|>final<|message|>Hi.<|return|>"])).run("Hi")
    assert plain.sources is None
