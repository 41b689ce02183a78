"""Shared by the report tests: where the example survey is, and optional imports."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "survey"
DEMO_DATA = ROOT / "graphs" / "survey_demo"
