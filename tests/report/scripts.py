"""Scripted gpt-oss turns for the survey pipeline and the report graph.

A callable script answers each request from what the request holds (the response format
asked for, the tool results so far), the way gpt-oss does: terse reasoning on the
analysis channel that reads the tool output it got, python code that really runs in the
sandbox, numbers read from that code's output, a second search when the first did not
return the passage a claim needs, and citations chosen by what the cited passage says.
It stands in for the model where no weights are available (tests, and the demo trace
when it is recorded without a server); `examples/survey/record_demo.py --base-url`
records the same pipeline from a live gpt-oss instead.
"""

from __future__ import annotations

import json
import re
from typing import Any, ClassVar

from harmonygraph.harmony.messages import Message, Role
from harmonygraph.models.base import ModelRequest

ANALYSIS_CODE_1 = """import numpy as np
import pandas as pd
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

df = pd.read_csv("/mnt/data/responses.csv")

def nps(s):
    return round(100 * ((s >= 9).mean() - (s <= 6).mean()))

rng = np.random.default_rng(0)
boot = [nps(df.nps.sample(len(df), replace=True, random_state=rng)) for _ in range(2000)]
low, high = np.percentile(boot, [2.5, 97.5]).round().astype(int)
shares = df.nps_category.value_counts(normalize=True).mul(100).round().astype(int)
by_plan = df.groupby("plan").nps.agg(n="count", NPS=nps).reindex(["Free", "Team", "Business", "Enterprise"])
by_region = df.groupby("region").nps.agg(n="count", NPS=nps)
table = pd.concat([by_plan.assign(segment="plan"), by_region.assign(segment="region")])
table.loc["All"] = [len(df), nps(df.nps), "all"]
table.to_csv("/mnt/data/nps_summary.csv")
pd.DataFrame([{"n": len(df), "NPS": nps(df.nps), "ci_low": low, "ci_high": high, **shares}]).to_csv(
    "/mnt/data/nps_overall.csv", index=False
)
fig, ax = plt.subplots(figsize=(7, 3.8))
ax.bar(by_plan.index, by_plan.NPS, color=["#c44e52" if v < 0 else "#4c72b0" for v in by_plan.NPS])
ax.axhline(0, color="black", linewidth=0.8)
ax.set_ylabel("NPS")
ax.set_title(f"NPS by plan (n={len(df)})")
fig.tight_layout()
fig.savefig("/mnt/data/nps_by_plan.png", dpi=150)
plt.close(fig)
print(f"Overall NPS: {nps(df.nps)} (n={len(df)}), 95% bootstrap interval {low} to {high}")
print(f"Promoters {shares.get('promoter', 0)}%, passives {shares.get('passive', 0)}%, detractors {shares.get('detractor', 0)}%")
print(by_plan.to_string())
print(by_region.to_string())
"""

ANALYSIS_CODE_2 = """from scipy.stats import mannwhitneyu

items = ["satisfaction", "ease_of_use", "support_quality", "value_for_money"]
pro, det = df[df.nps_category == "promoter"], df[df.nps_category == "detractor"]
rows = []
for item in items:
    u = mannwhitneyu(pro[item], det[item], alternative="two-sided")
    rows.append({
        "item": item,
        "top2_promoters": round(100 * (pro[item] >= 4).mean()),
        "top2_detractors": round(100 * (det[item] >= 4).mean()),
        "mean_promoters": round(pro[item].mean(), 2),
        "mean_detractors": round(det[item].mean(), 2),
        "rank_biserial": round(2 * u.statistic / (len(pro) * len(det)) - 1, 2),
        "p": u.pvalue,
    })
drivers = pd.DataFrame(rows).set_index("item")
drivers["top2_gap"] = drivers.top2_promoters - drivers.top2_detractors
drivers = drivers.sort_values("top2_gap", ascending=False)
drivers.to_csv("/mnt/data/drivers.csv")
fig, ax = plt.subplots(figsize=(7, 3.8))
shown = drivers[["top2_detractors", "top2_promoters"]].iloc[::-1]  # largest gap on top
shown.index = shown.index.str.replace("_", " ")
shown.columns = ["detractors", "promoters"]
shown.plot.barh(ax=ax, color=["#c44e52", "#4c72b0"])
ax.set_ylabel("")
ax.set_xlim(0, 100)
ax.set_xlabel("Share answering 4 or 5 (%)")
ax.set_title(f"Top-two box: promoters (n={len(pro)}) vs detractors (n={len(det)})")
fig.tight_layout()
fig.savefig("/mnt/data/drivers.png", dpi=150)
plt.close(fig)
print(f"promoters n={len(pro)}, detractors n={len(det)}")
print(drivers.to_string(formatters={"p": lambda v: f"{v:.1e}" if v < 0.001 else f"{v:.2f}"}))
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


def passages(text: str) -> list[tuple[str, str]]:
    """(doc id, passage text) for each result of a search_documents answer."""
    blocks = re.split(r"^\d+\. (?=\[doc:)", text, flags=re.M)[1:]
    return [(doc_ids(b)[0], b) for b in blocks if doc_ids(b)]


def cite(found: list[tuple[str, str]], needle: str) -> str | None:
    """The id of the first passage that says `needle`: a citation must support its claim."""
    return next((doc for doc, body in found if needle.lower() in body.lower()), None)


def signed(value: int | str) -> str:
    """NPS as the guidance writes it: a whole number with its sign."""
    v = int(value)
    return f"+{v}" if v > 0 else str(v)


class Facts:
    """The numbers the analysis printed, read back from any text that quotes them: the
    python output itself, or the findings written from it."""

    PLANS = "Free|Team|Business|Enterprise"
    REGIONS = "APAC|Europe|LATAM|North America"

    def __init__(self, text: str) -> None:
        self.text = text
        overall = re.search(r"Overall NPS: ([+-]?\d+) \(n=(\d+)\)", text) or re.search(
            r"Overall NPS is ([+-]?\d+) across (\d+) responses", text
        )
        assert overall, text
        self.nps, self.n = int(overall[1]), int(overall[2])
        ci = re.search(r"interval ([+-]?\d+) to ([+-]?\d+)", text)
        self.ci = (int(ci[1]), int(ci[2])) if ci else None
        shares = re.search(
            r"(\d+)% promoters, (\d+)% passives,? and (\d+)% detractors", text
        ) or re.search(r"Promoters (\d+)%, passives (\d+)%, detractors (\d+)%", text)
        self.shares = tuple(int(s) for s in shares.groups()) if shares else None
        # A table row (`Free  102  -50`) or a finding's `Free -50 (n=102)`.
        self.plans = {
            p: (int(n), int(v))
            for p, n, v in re.findall(rf"^({self.PLANS})\s+(\d+)\s+(-?\d+)\s*$", text, re.M)
        } or {
            p: (int(n), int(v))
            for p, v, n in re.findall(rf"\b({self.PLANS}) ([+-]?\d+) \(n=(\d+)\)", text)
        }
        self.regions = {
            r: (int(n), int(v))
            for r, n, v in re.findall(rf"^({self.REGIONS})\s+(\d+)\s+(-?\d+)\s*$", text, re.M)
        } or {
            r: (int(n), int(v))
            for v, r, n in re.findall(rf"([+-]?\d+) in ({self.REGIONS}) \(n=(\d+)\)", text)
        }

    @staticmethod
    def label(item: str) -> str:
        return item.replace("_", " ")


def driver_rows(text: str) -> list[dict[str, Any]]:
    """The rows of the drivers table the second python cell printed, largest gap first."""
    return [
        {"item": m[0], "top2_pro": int(m[1]), "top2_det": int(m[2]), "rb": float(m[5]), "p": m[6]}
        for m in re.findall(
            r"^(\w+)\s+(\d+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+(-?[\d.]+)\s+([\d.e+-]+)\s+(-?\d+)\s*$",
            text,
            re.M,
        )
    ]


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
            return self.outline(request)
        if name == "section_draft":
            return self.section(request)
        if name == "synthesis":
            return self.synthesis(request)
        raise AssertionError(f"unexpected request for response format {name!r}")

    # -- the analysis agent ------------------------------------------------------------
    def analysis(self, request: ModelRequest) -> str:
        tools = tool_texts(request)
        if not tools:
            return python_call(
                "We need overall NPS with promoter/passive/detractor shares, NPS by plan and region, then "
                "Likert items promoters vs detractors. File is /mnt/data/responses.csv, already cleaned, "
                "with nps_category. Start with NPS: compute it as %promoters - %detractors, add a bootstrap "
                "interval since n is only a few hundred, save a summary table and a bar chart by plan.",
                ANALYSIS_CODE_1,
            )
        facts = Facts(tools[0])
        if len(tools) == 1:
            plans = ", ".join(f"{p} {v}" for p, (_, v) in facts.plans.items())
            return python_call(
                f"Overall NPS {facts.nps} on n={facts.n}, interval {facts.ci[0] if facts.ci else '?'} to "
                f"{facts.ci[1] if facts.ci else '?'}. By plan: {plans}, so it rises with the plan; every plan "
                "has n >= 30. Now the four Likert items. They are ordinal, so compare top-two-box shares and "
                "use Mann-Whitney rather than a t-test. df is still loaded in the session.",
                ANALYSIS_CODE_2,
            )
        items = driver_rows(tools[1])
        top, flat = items[0], min(items, key=lambda i: abs(i["top2_pro"] - i["top2_det"]))
        lo, hi = facts.ci or (facts.nps, facts.nps)
        r_sorted = sorted(facts.regions.items(), key=lambda kv: kv[1][1])
        shares = facts.shares or (0, 0, 0)
        return final(
            f"{Facts.label(top['item'])} has the largest gap ({top['top2_pro']}% vs {top['top2_det']}%), "
            f"{Facts.label(flat['item'])} none to speak of. Write the findings with numbers and files.",
            {
                "findings": [
                    f"Overall NPS is {signed(facts.nps)} across {facts.n} responses (95% bootstrap interval "
                    f"{signed(lo)} to {signed(hi)}): {shares[0]}% promoters, {shares[1]}% passives and "
                    f"{shares[2]}% detractors [data:nps_overall.csv].",
                    "NPS rises with the plan: "
                    + ", ".join(f"{p} {signed(v)} (n={n})" for p, (n, v) in facts.plans.items())
                    + " [data:nps_summary.csv].",
                    f"By region NPS ranges from {signed(r_sorted[0][1][1])} in {r_sorted[0][0]} "
                    f"(n={r_sorted[0][1][0]}) to {signed(r_sorted[-1][1][1])} in {r_sorted[-1][0]} "
                    f"(n={r_sorted[-1][1][0]}) [data:nps_summary.csv].",
                    f"{Facts.label(top['item']).capitalize()} separates promoters from detractors most: "
                    f"{top['top2_pro']}% of promoters rate it 4 or 5 against {top['top2_det']}% of detractors "
                    f"(Mann-Whitney p={top['p']}, rank-biserial {top['rb']}) [data:drivers.csv].",
                    f"{Facts.label(flat['item']).capitalize()} hardly differs ({flat['top2_pro']}% vs "
                    f"{flat['top2_det']}%, p={flat['p']}) [data:drivers.csv].",
                ],
                "charts": [
                    {
                        "file": "nps_by_plan.png",
                        "caption": f"NPS by plan (n={facts.n}): loyalty rises with the plan.",
                    },
                    {
                        "file": "drivers.png",
                        "caption": f"Top-two-box shares of promoters and detractors: "
                        f"{Facts.label(top['item'])} differs most.",
                    },
                ],
            },
        )

    # -- the report graph --------------------------------------------------------------
    def outline(self, request: ModelRequest) -> str:
        n = re.search(r"(\d+) usable responses", first_user(request))
        return final(
            f"Brief: {n[1] if n else 'a few hundred'} usable responses; questions are loyalty, drivers, "
            "segments, next steps. Loyalty overview covers segments too. Sources are data and documents; "
            "a benchmark comparison would need the web, plan it anyway and mark it unsupported if nothing "
            "can be found.",
            {
                "title": "Customer Survey 2026: Loyalty and Its Drivers",
                "sections": [
                    {
                        "title": "Loyalty overview",
                        "goal": "How loyal are customers overall, and how does loyalty differ by plan and region?",
                        "needs": ["data", "documents"],
                    },
                    {
                        "title": "Drivers of loyalty",
                        "goal": "Which experience items go with being a promoter rather than a detractor?",
                        "needs": ["data", "documents"],
                    },
                    {
                        "title": "Industry benchmarks",
                        "goal": "How does our NPS compare with published benchmarks for similar products?",
                        "needs": ["web"],
                    },
                ],
            },
        )

    # Per section: the passages its claims need (what they must say), and the searches
    # that find them, the second only when the first did not.
    NEEDS: ClassVar[dict[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {
        "Loyalty": (
            ("percentage of promoters minus", "margin of error", "at least 30 responses"),
            (
                "how to compute NPS and its margin of error",
                "NPS computing the score: percentage of promoters minus percentage of detractors",
            ),
        ),
        "Drivers": (
            ("Mann-Whitney", "likeliest driver"),
            (
                "comparing Likert items between promoters and detractors",
                "rank-based test Mann-Whitney for comparing two groups; linking NPS to drivers",
            ),
        ),
    }

    def section(self, request: ModelRequest) -> str:
        prompt = first_user(request)
        title = re.search(r'Write section \d+, "([^"]+)"', prompt)
        assert title, prompt
        t = title[1]
        if t == self.unsupported_title or "benchmarks" in t.lower():
            return final(
                "This needs published NPS benchmarks. No browser in this run, and the survey guidance "
                "documents hold none. Don't make numbers up: mark it unsupported.",
                {
                    "title": t,
                    "body": "",
                    "supported": False,
                    "unsupported_reason": "no source available to this run gives published NPS benchmarks",
                },
            )
        key = "Loyalty" if "Loyalty" in t else "Drivers"
        needles, queries = self.NEEDS[key]
        searches = tool_texts(request)
        found = [p for text in searches for p in passages(text)]
        missing = [n for n in needles if cite(found, n) is None]
        if len(searches) < len(queries) and (not searches or missing):
            query = queries[len(searches)]
            why = (
                f"Need the guidance for this section: {query}."
                if not searches
                else f"Results don't include the passage on '{missing[0]}'. Search again, more specific."
            )
            return function_call(why, "search_documents", {"query": query, "k": 4})
        facts = Facts(prompt)
        refs = {n: cite(found, n) for n in needles}
        if self.invent_first_citation and not self.invented:
            self.invented = True
            refs[needles[0]] = "doc:999#9"
        last = last_message(request)
        assert last is not None
        if key == "Loyalty":
            body, figures, thought = self._loyalty(facts, refs, needles)
        else:
            body, figures, thought = self._drivers(facts, refs, needles)
        return final(thought, {"title": t, "body": body, "figures": figures})

    @staticmethod
    def _c(ref: str | None) -> str:
        return f" [{ref}]" if ref else ""

    def _loyalty(
        self, f: Facts, refs: dict[str, str | None], needles: tuple[str, ...]
    ) -> tuple[str, list[dict[str, str]], str]:
        define, precision, segments = (refs[n] for n in needles)
        lo, hi = f.ci or (f.nps, f.nps)
        word = (
            "not loyal on balance" if f.nps < 0 else "moderately loyal" if f.nps < 30 else "loyal"
        )
        plans = list(f.plans.items())
        parts = [
            f"Customers are {word}: NPS is {signed(f.nps)} on {f.n} responses [data:nps_overall.csv].",
            f"NPS is the percentage of promoters minus the percentage of detractors{self._c(define)}.",
            f"With a few hundred responses its margin of error is about plus or minus 5 points{self._c(precision)}; "
            f"the 95% bootstrap interval, {signed(lo)} to {signed(hi)}, "
            + ("includes zero" if lo <= 0 <= hi else "excludes zero")
            + " [data:nps_overall.csv].",
        ]
        if plans:
            middle = ", ".join(f"{signed(v)} on {p}" for p, (_, v) in plans[1:-1])
            parts.append(
                f"\n\nLoyalty rises with the plan: from {signed(plans[0][1][1])} on {plans[0][0]} "
                f"(n={plans[0][1][0]}) through {middle} to {signed(plans[-1][1][1])} on {plans[-1][0]} "
                f"(n={plans[-1][1][0]}) [data:nps_summary.csv]."
            )
            if all(n >= 30 for n, _ in f.plans.values()):
                parts.append(
                    "Every plan has at least 30 responses, the guidance's threshold for comparing "
                    f"segments{self._c(segments)}."
                )
        if f.regions:
            ordered = sorted(f.regions.items(), key=lambda kv: kv[1][1])
            parts.append(
                f"Regions differ less: from {signed(ordered[0][1][1])} in {ordered[0][0]} "
                f"(n={ordered[0][1][0]}) to {signed(ordered[-1][1][1])} in {ordered[-1][0]} "
                f"(n={ordered[-1][1][0]}) [data:nps_summary.csv]."
            )
        thought = (
            f"NPS {f.nps} with interval {lo} to {hi}: say not loyal on balance, note the interval. "
            f"Definition is in {define}, precision in {precision}, segment threshold in {segments}. "
            "Plans rise steadily; regions spread less. Cite the data files for every number."
        )
        figures = [{"file": "nps_by_plan.png", "caption": f"NPS by plan ({f.n} responses)."}]
        return " ".join(parts).replace(" \n\n", "\n\n"), figures, thought

    def _drivers(
        self, f: Facts, refs: dict[str, str | None], needles: tuple[str, ...]
    ) -> tuple[str, list[dict[str, str]], str]:
        method, driver = (refs[n] for n in needles)
        top = re.search(
            r"(\w[\w ]*) separates promoters from detractors most: (\d+)% of promoters rate it 4 or 5 against "
            r"(\d+)% of detractors \(Mann-Whitney p=([\d.e+-]+), rank-biserial ([\d.]+)\)",
            f.text,
        )
        flat = re.search(r"(\w[\w ]*) hardly differs \((\d+)% vs (\d+)%, p=([\d.e+-]+)\)", f.text)
        assert top and flat
        body = (
            f"{top[1]} is the experience item most associated with loyalty: {top[2]}% of promoters rate it "
            f"4 or 5 against {top[3]}% of detractors (Mann-Whitney p = {top[4]}, rank-biserial "
            f"{top[5]}) [data:drivers.csv]. {flat[1]} hardly differs ({flat[2]}% against {flat[3]}%, "
            f"p = {flat[4]}) [data:drivers.csv].\n\n"
            "Because the items are ordinal, the comparison uses top-two-box shares and a rank-based test "
            f"rather than means and a t-test{self._c(method)}. The item whose scores differ most between "
            f"promoters and detractors is the likeliest driver, but the survey shows association, not "
            f"cause{self._c(driver)}."
        )
        thought = (
            f"Largest top-two-box gap: {top[1]} ({top[2]} vs {top[3]}). {flat[1]} flat. Method per guidance "
            f"{method}; driver reading and the causation caveat from {driver}."
        )
        figures = [
            {
                "file": "drivers.png",
                "caption": f"Top-two-box shares by item: {top[1].lower()} separates promoters from detractors.",
            }
        ]
        return body, figures, thought

    def synthesis(self, request: ModelRequest) -> str:
        prompt = first_user(request)
        refs = dict((title, n) for n, title in re.findall(r"^\[ref:(\d+)\] (.+)$", prompt, re.M))

        def ref(*words: str) -> str:
            n = next((n for title, n in refs.items() if all(w in title for w in words)), None)
            return f" [ref:{n}]" if n else ""

        nps = re.search(r"NPS is ([+-]?\d+) on (\d+) responses", prompt)
        plans = re.search(
            r"from ([+-]?\d+) on (\w+) \(n=\d+\) through .*? to ([+-]?\d+) on (\w+)", prompt
        )
        top = re.search(
            r"(\w[\w ]*) is the experience item most associated with loyalty: (\d+)% of promoters "
            r"rate it 4 or 5 against (\d+)%",
            prompt,
        )
        flat = re.search(r"(\w[\w ]*) hardly differs", prompt)
        assert nps and plans and top and flat, prompt
        overall, drivers = ref("overall"), ref("drivers")
        plan_ref = ref("nps_summary")
        summary = (
            f"Customers are not loyal on balance: NPS is {nps[1]} on {nps[2]} responses{overall}. "
            f"Loyalty rises steeply with the plan, from {plans[1]} on {plans[2]} to {plans[3]} on "
            f"{plans[4]}{plan_ref}. {top[1]} is the experience item most associated with being a promoter "
            f"({top[2]}% against {top[3]}% rating it 4 or 5){drivers}, while {flat[1].lower()} shows no "
            "difference"
            + drivers
            + ". Published benchmarks could not be sourced, so the score is not "
            "compared with the industry."
        )
        conclusions = [
            f"Start with {top[1].lower()}: it separates promoters from detractors most{drivers}; measure "
            "success as its top-two-box share among detractors in the next survey.",
            f"Look into the {plans[2]} plan, where detractors dominate (NPS {plans[1]}){plan_ref}, before "
            "investing further in it.",
            "Run a follow-up study before a large investment: the survey shows association, not cause"
            + ref("Net Promoter")
            + ".",
        ]
        return final(
            "Summarise the two supported sections with their key numbers; each sentence cites its "
            "reference; conclusions tied to findings. Benchmarks section was unsupported: say so.",
            {"summary": summary, "conclusions": conclusions},
        )
