"""Scripted gpt-oss turns for the survey pipeline and the report graph.

A callable script answers each request from what the request holds (the response format
asked for, the tool results so far), the way the model would: the python code it sends
really runs in the sandbox, the numbers in its findings are read from that code's
output, and the document ids it cites are the ones `search_documents` returned.
"""

from __future__ import annotations

import json
import re
from typing import Any

from agent.harmony.messages import Message, Role
from agent.models.base import ModelRequest

ANALYSIS_CODE_1 = """import pandas as pd
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

df = pd.read_csv("/mnt/data/responses.csv")

def nps(s):
    return round(100 * ((s >= 9).mean() - (s <= 6).mean()))

shares = df.nps_category.value_counts(normalize=True).mul(100).round().astype(int)
by_plan = df.groupby("plan").nps.agg(n="count", NPS=nps).reindex(["Free", "Team", "Business", "Enterprise"])
by_region = df.groupby("region").nps.agg(n="count", NPS=nps)
table = pd.concat([by_plan.assign(segment="plan"), by_region.assign(segment="region")])
table.loc["All"] = [len(df), nps(df.nps), "all"]
table.to_csv("/mnt/data/nps_summary.csv")
fig, ax = plt.subplots(figsize=(7, 3.8))
ax.bar(by_plan.index, by_plan.NPS, color=["#c44e52" if v < 0 else "#4c72b0" for v in by_plan.NPS])
ax.axhline(0, color="black", linewidth=0.8)
ax.set_ylabel("NPS")
ax.set_title("NPS by plan")
fig.tight_layout()
fig.savefig("/mnt/data/nps_by_plan.png", dpi=150)
plt.close(fig)
print(f"Overall NPS: {nps(df.nps)} (n={len(df)})")
print(f"Promoters {shares.get('promoter', 0)}%, passives {shares.get('passive', 0)}%, detractors {shares.get('detractor', 0)}%")
print(by_plan.to_string())
print(by_region.to_string())
"""

ANALYSIS_CODE_2 = """items = ["satisfaction", "ease_of_use", "support_quality", "value_for_money"]
groups = df[df.nps_category != "passive"].groupby("nps_category")[items].mean().round(2).T
groups["gap"] = (groups.promoter - groups.detractor).round(2)
groups = groups.sort_values("gap", ascending=False)
groups.to_csv("/mnt/data/drivers.csv")
fig, ax = plt.subplots(figsize=(7, 3.8))
groups[["detractor", "promoter"]].plot.barh(ax=ax, color=["#c44e52", "#4c72b0"])
ax.set_xlim(1, 5)
ax.set_xlabel("Mean score (1-5)")
ax.set_title("Experience items: promoters vs detractors")
fig.tight_layout()
fig.savefig("/mnt/data/drivers.png", dpi=150)
plt.close(fig)
print(groups.to_string())
"""


def analysis(thought: str) -> str:
    return f"<|channel|>analysis<|message|>{thought}<|end|><|start|>assistant"


def python_call(thought: str, code: str) -> str:
    return analysis(thought) + f"<|channel|>analysis to=python code<|message|>{code}<|call|>"


def function_call(thought: str, name: str, args: dict[str, Any]) -> str:
    return (
        analysis(thought)
        + f"<|channel|>commentary to=functions.{name} <|constrain|>json<|message|>{json.dumps(args)}<|call|>"
    )


def final(thought: str, payload: dict[str, Any]) -> str:
    return (
        analysis(thought)
        + f"<|channel|>final<|message|>{json.dumps(payload, ensure_ascii=False)}<|return|>"
    )


def tool_texts(request: ModelRequest) -> list[str]:
    return [m.content for m in request.messages if m.role == Role.TOOL]


def first_user(request: ModelRequest) -> str:
    return next((m.content for m in request.messages if m.role == Role.USER), "")


def last_message(request: ModelRequest) -> Message | None:
    return request.messages[-1] if request.messages else None


def doc_ids(text: str) -> list[str]:
    return re.findall(r"\[(doc:\d+#\d+)\]", text)


class SurveyScript:
    """The model's side of a survey pipeline run; `calls` counts the completions given."""

    def __init__(
        self, *, invent_first_citation: bool = False, unsupported_title: str | None = None
    ) -> None:
        self.calls = 0
        self.invent_first_citation = invent_first_citation
        self.unsupported_title = unsupported_title
        self.invented = False

    def __call__(self, request: ModelRequest) -> str:
        self.calls += 1
        fmt = request.developer.response_format
        name = fmt.name if fmt else ""
        if name == "analysis_summary":
            return self.analysis(request)
        if name == "outline":
            return self.outline()
        if name == "section_draft":
            return self.section(request)
        if name == "synthesis":
            return self.synthesis(request)
        raise AssertionError(f"unexpected request for response format {name!r}")

    def analysis(self, request: ModelRequest) -> str:
        tools = tool_texts(request)
        if not tools:
            return python_call(
                "Load the cleaned data, compute NPS overall and by plan/region, save a table and a chart.",
                ANALYSIS_CODE_1,
            )
        if len(tools) == 1:
            return python_call(
                "Now compare Likert items between promoters and detractors to find likely drivers.",
                ANALYSIS_CODE_2,
            )
        first, second = tools[0], tools[1]
        overall = re.search(r"Overall NPS: (-?\d+) \(n=(\d+)\)", first)
        assert overall, first
        plans = dict(re.findall(r"^(Free|Team|Business|Enterprise)\s+\d+\s+(-?\d+)", first, re.M))
        top = second.splitlines()[1].split()
        return final(
            "Summarise the findings with their numbers and files.",
            {
                "findings": [
                    f"Overall NPS is {overall[1]} across {overall[2]} responses [data:nps_summary.csv].",
                    f"NPS rises with plan: Free {plans['Free']}, Team {plans['Team']}, Business "
                    f"{plans['Business']}, Enterprise {plans['Enterprise']} [data:nps_summary.csv].",
                    f"The largest promoter-detractor gap is on {top[0]} ({top[-1]} points on a 1-5 scale) "
                    "[data:drivers.csv].",
                ],
                "charts": [
                    {
                        "file": "nps_by_plan.png",
                        "caption": "NPS by plan: loyalty rises with the plan.",
                    },
                    {
                        "file": "drivers.png",
                        "caption": "Mean item scores of promoters and detractors.",
                    },
                ],
            },
        )

    def outline(self) -> str:
        return final(
            "Three sections: loyalty, drivers, and a benchmark section.",
            {
                "title": "Customer Survey 2026: Loyalty and Its Drivers",
                "sections": [
                    {
                        "title": "Loyalty overview",
                        "goal": "How loyal are customers overall and by plan?",
                        "needs": ["data", "documents"],
                    },
                    {
                        "title": "Drivers of loyalty",
                        "goal": "Which experience items go with promoters?",
                        "needs": ["data", "documents"],
                    },
                    {
                        "title": "Industry benchmarks",
                        "goal": "How does our NPS compare with published benchmarks?",
                        "needs": ["web"],
                    },
                ],
            },
        )

    def section(self, request: ModelRequest) -> str:
        prompt = first_user(request)
        title = re.search(r'Write section \d+, "([^"]+)"', prompt)
        assert title, prompt
        t = title[1]
        if t == self.unsupported_title or "benchmarks" in t.lower():
            return final(
                "No web access here, and the documents hold no benchmark figures.",
                {
                    "title": t,
                    "body": "",
                    "supported": False,
                    "unsupported_reason": "no source available to this run gives published NPS benchmarks",
                },
            )
        tools = tool_texts(request)
        last = last_message(request)
        if not tools:
            query = (
                "how to compute NPS and its margin of error"
                if "Loyalty" in t
                else "comparing Likert items between groups"
            )
            return function_call(
                f"Search the guidance for {query}.", "search_documents", {"query": query, "k": 3}
            )
        ids = doc_ids(tools[-1]) or ["doc:0#0"]
        doc = ids[0]
        if self.invent_first_citation and not self.invented:
            self.invented = True
            doc = "doc:999#9"
        assert last is not None
        if "Loyalty" in t:
            body = (
                "Overall loyalty is moderate: NPS is computed as the share of promoters minus the share of "
                f"detractors [{doc}], and the analysis puts it at the value in the summary table "
                "[data:nps_summary.csv]. Loyalty rises steadily from the Free plan to Enterprise "
                "[data:nps_summary.csv]."
            )
            figures = [{"file": "nps_by_plan.png", "caption": "NPS by plan."}]
        else:
            body = (
                "Promoters and detractors differ most on the items at the top of the driver table "
                f"[data:drivers.csv]. Following the guidance, the comparison uses group means of ordinal scores [{doc}]."
            )
            figures = [
                {"file": "drivers.png", "caption": "Promoters and detractors by experience item."}
            ]
        return final(
            "Write the section with citations.", {"title": t, "body": body, "figures": figures}
        )

    def synthesis(self, request: ModelRequest) -> str:
        prompt = first_user(request)
        refs = re.findall(r"^\[ref:(\d+)\]", prompt, re.M)
        cite = f"[ref:{refs[0]}]" if refs else ""
        return final(
            "Summarise the two supported sections.",
            {
                "summary": f"Loyalty rises with the plan customers are on {cite}, and support quality separates "
                "promoters from detractors. Published benchmarks could not be sourced.",
                "conclusions": [
                    f"Improve the Free plan's onboarding {cite}.",
                    "Invest in support response times.",
                ],
            },
        )
