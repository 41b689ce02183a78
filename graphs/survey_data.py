"""Survey exports in, clean typed responses out, with a report of what was dropped and why.

A survey app's export (CSV or JSON Lines) is decoded (UTF-8, else per line with the
encoding charset-normalizer detects, so a file mixing UTF-8 and cp1252 rows still
reads), its columns matched to `SurveyResponse` by name (case, spaces and a few aliases
forgiven), and each row cleaned: Likert answers given as labels or on a 1-7 scale are
mapped to 1-5, NPS answers checked to be 0-10, e-mail addresses and phone numbers in
free text redacted, duplicates removed. Rows that cannot be used are dropped and listed
in the `PreprocessReport` with their line number and reason.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator

__all__ = [
    "LIKERT_ITEMS",
    "REQUIRED_COLUMNS",
    "DroppedRow",
    "EmptySurveyError",
    "PreprocessReport",
    "SurveyData",
    "SurveyError",
    "SurveyFormatError",
    "SurveyResponse",
    "load_survey",
    "redact_pii",
]

LIKERT_ITEMS = ("satisfaction", "ease_of_use", "support_quality", "value_for_money")
REQUIRED_COLUMNS = ("response_id", "submitted_at", "region", "plan", "nps")
OPTIONAL_COLUMNS = ("tenure_months", *LIKERT_ITEMS, "comment")
_ALIASES = {
    "id": "response_id",
    "respondent_id": "response_id",
    "timestamp": "submitted_at",
    "submitted": "submitted_at",
    "date": "submitted_at",
    "likelihood_to_recommend": "nps",
    "nps_score": "nps",
    "recommend": "nps",
    "tenure": "tenure_months",
    "comments": "comment",
    "feedback": "comment",
    "free_text": "comment",
}
_LIKERT_LABELS = {
    "strongly disagree": 1, "disagree": 2, "neutral": 3, "neither agree nor disagree": 3,
    "agree": 4, "strongly agree": 5, "very dissatisfied": 1, "dissatisfied": 2,
    "satisfied": 4, "very satisfied": 5,
}  # fmt: skip

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
# International (+44 20 7946 0958), North American ((555) 123-4567, 555-123-4567) and
# grouped national numbers (07700 900123): at least 9 digits with separators.
PHONE = re.compile(
    r"(?<![\w/])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)[\s.-]?)?\d{2,5}(?:[\s.-]\d{2,6}){1,3}(?![\w/])"
)


class SurveyError(ValueError):
    """The survey file cannot be used; the message says what to fix."""


class EmptySurveyError(SurveyError):
    pass


class SurveyFormatError(SurveyError):
    pass


class SurveyResponse(BaseModel):
    """One usable response, normalised: Likert items on 1-5, NPS 0-10, PII redacted."""

    response_id: str = Field(min_length=1)
    submitted_at: dt.datetime
    region: str = Field(min_length=1)
    plan: str = Field(min_length=1)
    tenure_months: int | None = Field(default=None, ge=0, le=600)
    nps: int = Field(ge=0, le=10)
    satisfaction: float | None = Field(default=None, ge=1, le=5)
    ease_of_use: float | None = Field(default=None, ge=1, le=5)
    support_quality: float | None = Field(default=None, ge=1, le=5)
    value_for_money: float | None = Field(default=None, ge=1, le=5)
    comment: str = ""

    @property
    def nps_category(self) -> Literal["promoter", "passive", "detractor"]:
        return "promoter" if self.nps >= 9 else "passive" if self.nps >= 7 else "detractor"

    @field_validator("region", "plan")
    @classmethod
    def _title(cls, v: str) -> str:
        v = " ".join(v.split())
        return v if any(c.isupper() for c in v) else v.title()


class DroppedRow(BaseModel):
    line: int = Field(description="line (CSV) or record (JSON Lines) number, 1 = first data row")
    response_id: str | None = None
    reason: str


class PreprocessReport(BaseModel):
    source: str
    format: Literal["csv", "jsonl"]
    encoding: str
    rows_read: int
    rows_kept: int
    dropped: list[DroppedRow] = Field(default_factory=list)
    redacted_emails: int = 0
    redacted_phones: int = 0
    rescaled_items: dict[str, str] = Field(default_factory=dict)
    decoded_lines: dict[str, int] = Field(default_factory=dict, description="lines per encoding")
    ignored_columns: list[str] = Field(default_factory=list)

    def drop_counts(self) -> dict[str, int]:
        return dict(Counter(d.reason.split(":")[0] for d in self.dropped))

    def notes(self) -> list[str]:
        """Sentences for the report's data-quality appendix."""
        out = [
            f"{self.rows_kept} of {self.rows_read} responses kept from {Path(self.source).name}."
        ]
        for reason, n in sorted(self.drop_counts().items(), key=lambda kv: -kv[1]):
            out.append(f"{n} row(s) dropped: {reason}.")
        if self.redacted_emails or self.redacted_phones:
            out.append(
                f"{self.redacted_emails} e-mail address(es) and {self.redacted_phones} phone number(s) "
                "redacted from free-text answers."
            )
        for item, how in self.rescaled_items.items():
            out.append(f"{item}: {how}.")
        if len(self.decoded_lines) > 1:
            parts = ", ".join(f"{n} line(s) as {enc}" for enc, n in self.decoded_lines.items())
            out.append(f"The file mixed text encodings; read {parts}.")
        return out


class SurveyData(BaseModel):
    responses: list[SurveyResponse]
    report: PreprocessReport

    def to_csv(self) -> str:
        buf = io.StringIO()
        fields = [*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS, "nps_category"]
        writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        for r in self.responses:
            row = r.model_dump(mode="json")
            row["nps_category"] = r.nps_category
            writer.writerow({k: row.get(k) for k in fields})
        return buf.getvalue()


# -- decoding ------------------------------------------------------------------------------


def _decode(raw: bytes) -> tuple[str, str, dict[str, int]]:
    """Text, the encoding name, and how many lines each encoding decoded."""
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        text = raw.decode("utf-8")
        return text, "utf-8", {"utf-8": text.count("\n") + 1}
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    # Whole-file detection first; lines that are valid UTF-8 stay UTF-8 (exports that
    # were appended to by two tools mix them), the rest use the detected encoding.
    non_utf8 = b"\n".join(line for line in raw.split(b"\n") if not _is_utf8(line))
    matches = from_bytes(non_utf8)
    best = matches.best()
    # Short samples fit several single-byte code pages equally well; the one survey
    # tools on Windows write (cp1252) wins whenever it fits.
    fitting = {
        enc
        for m in matches
        if m.chaos <= (best.chaos if best else 0)
        for enc in m.could_be_from_charset
    }
    fallback = "cp1252" if "cp1252" in fitting or best is None else best.encoding
    if fallback.lower().replace("_", "-") in ("utf-8", "ascii"):
        fallback = "cp1252"
    counts: Counter[str] = Counter()
    lines = []
    for line in raw.split(b"\n"):
        if _is_utf8(line):
            lines.append(line.decode("utf-8"))
            counts["utf-8"] += 1
        else:
            lines.append(line.decode(fallback, errors="replace"))
            counts[fallback] += 1
    encoding = "utf-8" if len(counts) > 1 else fallback
    return (
        "\n".join(lines),
        encoding if len(counts) == 1 else f"mixed (utf-8, {fallback})",
        dict(counts),
    )


def _is_utf8(line: bytes) -> bool:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# -- cleaning ------------------------------------------------------------------------------


def redact_pii(text: str) -> tuple[str, int, int]:
    """Text with e-mail addresses and phone numbers replaced; counts of each."""
    text, emails = EMAIL.subn("[email redacted]", text)
    phones = 0

    def phone(m: re.Match[str]) -> str:
        nonlocal phones
        if sum(c.isdigit() for c in m.group(0)) < 9:
            return m.group(0)  # a year range, a price, a count: not a phone number
        phones += 1
        return "[phone redacted]"

    return PHONE.sub(phone, text), emails, phones


def _canonical(name: str) -> str:
    key = re.sub(r"[^a-z0-9]+", "_", name.strip().lower()).strip("_")
    return _ALIASES.get(key, key)


def _likert(value: Any) -> float | str | None:
    """A 1-5 (or 1-7, rescaled later) number, None when blank, or the reason it is not one."""
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        return None
    m = re.match(r"^\s*(\d+(?:\.\d+)?)", text)
    if m:
        return float(m.group(1))
    label = _LIKERT_LABELS.get(" ".join(text.lower().split()))
    return float(label) if label is not None else f"not a Likert answer ({text[:30]!r})"


def _nps(value: Any) -> int | str:
    text = str(value if value is not None else "").strip()
    m = re.match(r"^(\d{1,2})(?:\.0)?(?:\s*[-–(].*)?$", text)
    if not m:
        return f"NPS answer is not a number ({text[:30]!r})" if text else "NPS answer is missing"
    n = int(m.group(1))
    return n if 0 <= n <= 10 else f"NPS answer out of range 0-10 ({n})"


def _date(value: Any) -> dt.datetime | str:
    text = str(value or "").strip()
    if not text:
        return "submission date is missing"
    for fmt in (None, "%d/%m/%Y %H:%M", "%d/%m/%Y", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d"):
        try:
            d = dt.datetime.fromisoformat(text) if fmt is None else dt.datetime.strptime(text, fmt)
        except ValueError:
            continue
        return d if d.tzinfo else d.replace(tzinfo=dt.UTC)
    return f"submission date is not a date ({text[:30]!r})"


def _records(
    text: str, fmt: Literal["csv", "jsonl"]
) -> tuple[list[str], list[tuple[int, dict[str, Any] | str]]]:
    """Column names and (line, record or why it could not be read) pairs."""
    if fmt == "jsonl":
        rows: list[tuple[int, dict[str, Any] | str]] = []
        columns: dict[str, None] = {}
        for n, line in enumerate((ln for ln in text.splitlines() if ln.strip()), 1):
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                rows.append((n, f"unreadable record: {exc.msg}"))
                continue
            if not isinstance(obj, dict):
                rows.append((n, "unreadable record: not a JSON object"))
                continue
            columns.update(dict.fromkeys(obj))
            rows.append((n, obj))
        return list(columns), rows
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None or not any(h.strip() for h in header):
        return [], []
    out: list[tuple[int, dict[str, Any] | str]] = []
    for n, cells in enumerate(reader, 1):
        if not any(c.strip() for c in cells):
            continue
        if len(cells) != len(header):
            out.append(
                (n, f"unreadable row: {len(cells)} fields where the header has {len(header)}")
            )
            continue
        out.append((n, dict(zip(header, cells, strict=True))))
    return header, out


def load_survey(path: str | Path, *, min_responses: int = 1) -> SurveyData:
    """Read, clean and validate a survey export. Raises `SurveyError` with what to fix."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise SurveyError(
            f"the survey file {p} does not exist; pass the path of a CSV or JSON Lines export"
        ) from None
    except OSError as exc:
        raise SurveyError(f"cannot read the survey file {p}: {exc.strerror or exc}") from None
    if not raw.strip():
        raise EmptySurveyError(
            f"the survey file {p} is empty; export the responses again (CSV or JSON Lines)"
        )
    text, encoding, decoded = _decode(raw)
    fmt: Literal["csv", "jsonl"] = (
        "jsonl"
        if p.suffix.lower() in (".jsonl", ".ndjson") or text.lstrip().startswith("{")
        else "csv"
    )
    header, records = _records(text, fmt)
    mapping = {h: _canonical(h) for h in header}
    present = set(mapping.values())
    missing = [c for c in REQUIRED_COLUMNS if c not in present]
    if missing:
        raise SurveyFormatError(
            f"the survey file {p.name} lacks the column(s) {', '.join(missing)}; it has "
            f"{', '.join(header) or 'no columns'}. Expected {', '.join(REQUIRED_COLUMNS)} "
            f"(and optionally {', '.join(OPTIONAL_COLUMNS)}); rename the columns in the export"
        )
    if not records:
        raise EmptySurveyError(f"the survey file {p.name} has a header but no responses")
    report = PreprocessReport(
        source=str(p),
        format=fmt,
        encoding=encoding,
        rows_read=len(records),
        rows_kept=0,
        decoded_lines=decoded,
        ignored_columns=[
            h for h, c in mapping.items() if c not in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)
        ],
    )
    candidates: list[tuple[int, dict[str, Any]]] = []
    seen_ids: set[str] = set()
    seen_content: set[str] = set()
    for line, rec in records:
        if isinstance(rec, str):
            report.dropped.append(DroppedRow(line=line, reason=rec))
            continue
        row = {mapping.get(k, _canonical(k)): v for k, v in rec.items()}
        rid = str(row.get("response_id") or "").strip() or None
        problem, cleaned = _clean_row(row, report)
        if problem:
            report.dropped.append(DroppedRow(line=line, response_id=rid, reason=problem))
            continue
        content = json.dumps(
            {k: v for k, v in cleaned.items() if k != "response_id"}, sort_keys=True, default=str
        )
        if rid in seen_ids:
            report.dropped.append(
                DroppedRow(line=line, response_id=rid, reason="duplicate: response id seen before")
            )
            continue
        if content in seen_content:
            report.dropped.append(
                DroppedRow(
                    line=line,
                    response_id=rid,
                    reason="duplicate: same answers as an earlier response",
                )
            )
            continue
        seen_ids.add(str(rid))
        seen_content.add(content)
        candidates.append((line, cleaned))
    _rescale(candidates, report)
    responses: list[SurveyResponse] = []
    for line, cleaned in candidates:
        try:
            responses.append(SurveyResponse.model_validate(cleaned))
        except ValidationError as exc:
            err = exc.errors(include_url=False)[0]
            report.dropped.append(
                DroppedRow(line=line, response_id=cleaned.get("response_id"),
                           reason=f"invalid {'.'.join(map(str, err['loc']))}: {err['msg']}")
            )  # fmt: skip
    report.dropped.sort(key=lambda d: d.line)
    report.rows_kept = len(responses)
    data = SurveyData(responses=responses, report=report)
    if len(responses) < min_responses:
        raise InsufficientResponsesError(
            f"the survey has {len(responses)} usable response(s) of {report.rows_read}; at least "
            f"{min_responses} are needed for a report. See the preprocessing report for the rows dropped.",
            data,
        )
    return data


class InsufficientResponsesError(SurveyError):
    """Too few usable responses to analyse; `data` keeps what was read."""

    def __init__(self, message: str, data: SurveyData) -> None:
        super().__init__(message)
        self.data = data


def _clean_row(row: dict[str, Any], report: PreprocessReport) -> tuple[str | None, dict[str, Any]]:
    out: dict[str, Any] = {}
    rid = str(row.get("response_id") or "").strip()
    if not rid:
        return "response id is missing", out
    out["response_id"] = rid
    for col in ("region", "plan"):
        value = " ".join(str(row.get(col) or "").split())
        if not value:
            return f"{col} is missing", out
        out[col] = value
    nps = _nps(row.get("nps"))
    if isinstance(nps, str):
        return nps, out
    out["nps"] = nps
    when = _date(row.get("submitted_at"))
    if isinstance(when, str):
        return when, out
    out["submitted_at"] = when
    tenure = str(row.get("tenure_months") or "").strip()
    if tenure:
        if not re.fullmatch(r"\d{1,3}", tenure):
            return f"tenure is not a whole number of months ({tenure[:20]!r})", out
        out["tenure_months"] = int(tenure)
    for item in LIKERT_ITEMS:
        score = _likert(row.get(item))
        if isinstance(score, str):
            return f"{item}: {score}", out
        out[item] = score
    comment, emails, phones = redact_pii(" ".join(str(row.get("comment") or "").split()))
    report.redacted_emails += emails
    report.redacted_phones += phones
    out["comment"] = comment
    return None, out


def _rescale(rows: list[tuple[int, dict[str, Any]]], report: PreprocessReport) -> None:
    """Items answered on 1-7 (any value above 5) are mapped linearly onto 1-5."""
    for item in LIKERT_ITEMS:
        values = [r[item] for _, r in rows if r.get(item) is not None]
        if values and max(values) > 5 and max(values) <= 7:
            for _, r in rows:
                if r.get(item) is not None:
                    r[item] = round(1 + (r[item] - 1) * 4 / 6, 3)
            report.rescaled_items[item] = "answered on a 1-7 scale, rescaled linearly to 1-5"
