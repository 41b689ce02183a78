"""Record the demo's trace: the model's side of one survey pipeline run.

    python examples/survey/record_demo.py                 # the scripted gpt-oss turns
    python examples/survey/record_demo.py --base-url http://localhost:8000/v1 --model openai/gpt-oss-20b

Without a server, the turns come from `tests/report/scripts.py::SurveyScript`, which
answers each request the way gpt-oss does (valid harmony, its reasoning, tool calls whose
python code really runs, numbers read from the tools' output). With a server, a live
gpt-oss writes them. Either way every tool runs for real and the model calls are written
to `graphs/survey_demo/demo_trace.jsonl`, which `harmonygraph demo` replays.
Re-record after changing the pipeline's instructions or tools: a strict replay test fails
until you do.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEMO_DATA = HERE.parents[1] / "graphs" / "survey_demo"  # shipped as package data
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

DEMO_DATE = "2026-11-21"


async def record(base_url: str | None, model: str | None, out: Path) -> None:
    from harmonygraph.graphs.survey import run_survey_pipeline
    from harmonygraph.models import make_model
    from harmonygraph.tracing import RecordingModel, ScriptedModel

    if base_url or model:
        inner = make_model(base_url=base_url, model=model)
    else:
        from tests.report.scripts import SurveyScript

        inner = ScriptedModel(SurveyScript(), name="scripted/gpt-oss-20b")
    recording = RecordingModel(inner, out)
    with tempfile.TemporaryDirectory() as tmp:
        result = await run_survey_pipeline(
            DEMO_DATA / "responses.csv",
            Path(tmp) / "report",
            model=recording,
            current_date=DEMO_DATE,
            progress=None,
            store="demo",
        )
        print(
            f"recorded {len(recording.recorder.records)} records to {out}; report sections: "
            f"{len(result.report.sections) if result.report else 0}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base-url")
    parser.add_argument("--model")
    parser.add_argument("--out", type=Path, default=DEMO_DATA / "demo_trace.jsonl")
    args = parser.parse_args()
    asyncio.run(record(args.base_url, args.model, args.out))


if __name__ == "__main__":
    main()
