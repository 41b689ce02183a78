"""Generate the demo's survey export: `python examples/survey/generate.py` (seeded, stable).

A few hundred responses to a SaaS product's customer survey, as its survey app exports
them: NPS (0-10), four Likert items (mostly 1-5 numbers, some as labels), segments
(region, plan, tenure) and a free-text comment, some with e-mail addresses or phone
numbers to redact. It also holds what real exports hold: exact duplicates, resubmitted
answers under a new id, and a few malformed rows (an NPS of 11, a missing region, a date
that is not a date, a row with a stray field). The answers are drawn so that the
analysis has something to find: NPS rises with plan and tenure, support quality drives
it, APAC's support scores lag.
"""

from __future__ import annotations

import csv
import datetime as dt
import random
import sys
from pathlib import Path

SEED = 20260301
N = 320
HERE = Path(__file__).resolve().parent
DEMO_DATA = HERE.parents[1] / "graphs" / "survey_demo"  # shipped as package data
COLUMNS = [
    "response_id",
    "submitted_at",
    "region",
    "plan",
    "tenure_months",
    "nps",
    "satisfaction",
    "ease_of_use",
    "support_quality",
    "value_for_money",
    "comment",
]
REGIONS = [("North America", 0.38), ("Europe", 0.32), ("APAC", 0.18), ("LATAM", 0.12)]
PLANS = [("Free", 0.30), ("Team", 0.35), ("Business", 0.23), ("Enterprise", 0.12)]
PLAN_LIFT = {"Free": -1.1, "Team": 0.0, "Business": 0.5, "Enterprise": 0.9}
LABELS = {1: "Strongly disagree", 2: "Disagree", 3: "Neutral", 4: "Agree", 5: "Strongly agree"}

PRAISE = [
    "The dashboards save our team hours every week.",
    "Setup was quick and the templates are genuinely useful.",
    "Support answered within the hour and fixed the sync issue.",
    "Reliable, fast, and the mobile app finally does what we need.",
    "Great value for what we pay; the reporting is excellent.",
]
COMPLAINTS = [
    "Support took four days to reply to a billing question.",
    "The permissions model is confusing for new admins.",
    "Pricing jumped at renewal without much warning.",
    "Exports to Excel break when a report has more than 50k rows.",
    "Onboarding documentation is out of date in places.",
    "The free plan limits are too tight to evaluate properly.",
]
NEUTRAL = [
    "Does the job. Would like better integrations with our CRM.",
    "Mostly fine, a few rough edges in the editor.",
    "",
    "",
]
CONTACTS = [
    " Happy to talk more: {first}.{last}@example.com",
    " Call me on +44 20 7946 0{n3}",
    " You can reach me at ({a3}) 555-01{n2} if you want details.",
    " Email {first}{n2}@example.org for follow-up.",
]
FIRST = ["maria", "sam", "li", "noah", "aisha", "tom", "ines", "kenji", "olga", "raj"]
LAST = ["garcia", "okafor", "chen", "smith", "haddad", "novak", "silva", "tanaka"]


def _pick(rng: random.Random, options: list[tuple[str, float]]) -> str:
    return rng.choices([o for o, _ in options], weights=[w for _, w in options])[0]


def _clip(x: float, lo: int, hi: int) -> int:
    return max(lo, min(hi, round(x)))


def make_rows(seed: int = SEED, n: int = N) -> list[list[str]]:
    rng = random.Random(seed)
    start = dt.datetime(2026, 2, 2, 8, 0)
    rows: list[list[str]] = []
    for i in range(n):
        region = _pick(rng, REGIONS)
        plan = _pick(rng, PLANS)
        tenure = _clip(rng.expovariate(1 / 14), 0, 96)
        support = rng.gauss(3.7 + (-0.6 if region == "APAC" else 0) + PLAN_LIFT[plan] * 0.3, 0.8)
        ease = rng.gauss(3.8 + PLAN_LIFT[plan] * 0.2, 0.7)
        value = rng.gauss(
            3.4 + (-0.4 if plan == "Enterprise" else 0) + (0.3 if plan == "Free" else 0), 0.8
        )
        sat = (support + ease + value) / 3 + rng.gauss(0, 0.35)
        nps_raw = (
            7.1
            + PLAN_LIFT[plan]
            + (support - 3.6) * 1.1
            + min(tenure, 36) / 36 * 0.7
            + rng.gauss(0, 1.5)
        )
        nps = _clip(nps_raw, 0, 10)
        likert = [_clip(v, 1, 5) for v in (sat, ease, support, value)]
        cells = [str(v) for v in likert]
        if rng.random() < 0.12:  # some app versions export labels instead of numbers
            cells = [LABELS[v] for v in likert]
        if nps >= 9:
            comment = rng.choice(PRAISE)
        elif nps <= 6:
            comment = rng.choice(COMPLAINTS)
        else:
            comment = rng.choice(NEUTRAL)
        if comment and rng.random() < 0.09:
            comment += rng.choice(CONTACTS).format(
                first=rng.choice(FIRST),
                last=rng.choice(LAST),
                n3=rng.randint(100, 999),
                n2=rng.randint(10, 99),
                a3=rng.randint(201, 989),
            )
        when = start + dt.timedelta(minutes=rng.randint(0, 60 * 24 * 26))
        rows.append(
            [
                f"R{10000 + i}",
                when.isoformat(timespec="seconds"),
                region,
                plan,
                str(tenure),
                str(nps),
                *cells,
                comment,
            ]
        )
    # What real exports hold besides answers.
    for k in (12, 57, 140, 201, 288):
        rows.insert(k + 3, list(rows[k]))  # exact duplicates (a double submit)
    for k in (33, 99):
        dup = list(rows[k])
        dup[0] = f"R{20000 + k}"  # resubmitted under a new id, same answers
        rows.append(dup)
    bad = [list(rows[r]) for r in (5, 6, 7, 8, 9)]
    bad[0][0], bad[0][5] = "R30001", "11"
    bad[1][0], bad[1][2] = "R30002", ""
    bad[2][0], bad[2][1] = "R30003", "last tuesday"
    bad[3][0], bad[3][5] = "R30004", "ten"
    bad[4][0] = "R30005"
    bad[4].append("stray field")
    for j, row in enumerate(bad):
        rows.insert(60 + j * 47, row)
    return rows


def write(path: Path = DEMO_DATA / "responses.csv") -> Path:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(make_rows())
    return path


if __name__ == "__main__":
    print(write(Path(sys.argv[1]) if len(sys.argv) > 1 else DEMO_DATA / "responses.csv"))
