"""The dashboard: server-rendered pages (Jinja2) on the serve app, readable without JavaScript.

- `/signin`: an API key in, an HttpOnly cookie out (the key is checked like the API's).
- `/runs`: every response run: status, agent, duration, tokens, cost; filter and search.
- `/runs/{id}`: its timeline (model steps, tool calls with arguments and results,
  durations, tokens, artifacts); reasoning behind a toggle, for keys allowed to see it;
  and, for the key that made the run, its trace to replay (`/runs/{id}/trace`, the same as
  `GET /v1/responses/{id}/trace`): `harmonygraph replay resp_….jsonl`.
- `/reports`: the survey pipeline's reports, and a form to upload a survey export and
  start the pipeline; `/reports/{id}` shows its progress (refreshing itself while it
  runs), then the report (HTML view, Markdown and PDF downloads, charts).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import os
import re
import secrets
import time
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from harmonygraph.serve.errors import AuthenticationError, InvalidRequestError, NotFoundError
from harmonygraph.serve.store import ApiKey
from harmonygraph.tracing.redaction import without_reasoning
from jinja2 import Environment, PackageLoader, select_autoescape

__all__ = ["add_finished_report", "error_page", "install", "report_id", "trace_download"]

COOKIE = "hg_key"
MAX_UPLOAD_BYTES = 20_000_000

_env = Environment(
    loader=PackageLoader("harmonygraph.serve", "templates"),
    autoescape=select_autoescape(["html"]),
)


def _when(ts: float | None) -> str:
    if not ts:
        return ""
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _dur(s: float | None) -> str:
    if s is None:
        return ""
    return f"{s * 1000:.0f} ms" if s < 1 else f"{s:.2f} s"


def _cost(c: float | None) -> str:
    return "" if c is None else f"${c:.6f}"


_env.filters.update(when=_when, dur=_dur, cost=_cost)


def render(request: Request, template: str, http_status: int = 200, **ctx: Any) -> HTMLResponse:
    html = _env.get_template(template).render(request=request, **ctx)
    return HTMLResponse(html, status_code=http_status)


def error_page(request: Request, status: int, message: str) -> HTMLResponse:
    return render(request, "error.html", http_status=status, status_code=status, message=message)


def trace_download(response_id: str, records: list[dict[str, Any]], key: ApiKey) -> Response:
    """A run's trace as a JSON Lines download, `<id>.jsonl`, for `harmonygraph replay`;
    reasoning masked (consistently, so it still replays) unless `key` may see it."""
    if not key.show_reasoning:
        records = without_reasoning(records)
    body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    return Response(
        body.encode("utf-8"), media_type="application/jsonl",
        headers={"Content-Disposition": f'attachment; filename="{response_id}.jsonl"',
                 "Cache-Control": "no-store"},
    )  # fmt: skip


def report_id(out_dir: Path) -> str:
    """The id under which a report folder made elsewhere is listed (the demo's, for one)."""
    return "rep_" + hashlib.sha256(os.path.abspath(out_dir).encode()).hexdigest()[:16]


def _files(out_dir: Path) -> dict[str, str]:
    found = {}
    for kind in ("html", "md", "pdf"):
        path = out_dir / f"report.{kind}"
        if path.is_file():
            found[kind] = path.name
    return found


def _describe(event: Any) -> dict[str, Any]:
    kind = type(event).__name__
    data = {k: getattr(event, k) for k in getattr(event, "__slots__", ())}
    text = {
        "StageStarted": lambda: f"▸ {data.get('stage')} {data.get('detail', '')}",
        "StageDone": lambda: (
            f"✓ {data.get('stage')} {data.get('detail', '')} ({data.get('duration_s', 0):.1f} s)"
        ),
        "SectionStarted": lambda: f"  section {data.get('index')}: started",
        "SectionDone": lambda: (
            f"  section {data.get('index')}/{data.get('total')}: "
            f"{data.get('title')} ({data.get('citations')} citations, {data.get('figures')} figures)"
        ),
        "ToolActivity": lambda: f"    {data.get('recipient')}: {data.get('status')}",
        "ReportWarning": lambda: f"  warning: {data.get('message')}",
    }.get(kind, lambda: kind)()
    return {"kind": kind, "text": text.strip(), "at": time.time()}


def install(app: Any) -> None:
    """Add the dashboard's pages to the serve app."""
    fa: FastAPI = app

    async def viewer(request: Request) -> ApiKey | None:
        secret = request.cookies.get(COOKIE)
        if not secret:
            return None
        try:
            key: ApiKey = await request.app.state.key_for(secret)
        except AuthenticationError:
            return None
        return key

    def to_signin(request: Request) -> RedirectResponse:
        return RedirectResponse(f"/signin?next={request.url.path}", status_code=303)

    @fa.get("/", include_in_schema=False)
    async def home(request: Request) -> Response:
        return RedirectResponse("/runs", status_code=303)

    @fa.get("/signin", include_in_schema=False)
    async def signin_form(request: Request, next: str = "/runs") -> Response:
        return render(request, "signin.html", next=next, error=None, key=None)

    @fa.post("/signin", include_in_schema=False)
    async def signin(request: Request) -> Response:
        form = await request.form()
        secret = str(form.get("key", "")).strip()
        nxt = str(form.get("next", "/runs"))
        if not nxt.startswith("/") or nxt.startswith("//"):
            nxt = "/runs"
        try:
            await request.app.state.key_for(secret)
        except AuthenticationError:
            return render(request, "signin.html", http_status=401, next=nxt, key=None,
                          error="That key is unknown or revoked.")  # fmt: skip
        resp = RedirectResponse(nxt, status_code=303)
        resp.set_cookie(COOKIE, secret, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")  # fmt: skip
        return resp

    @fa.post("/signout", include_in_schema=False)
    async def signout(request: Request) -> Response:
        resp = RedirectResponse("/signin", status_code=303)
        resp.delete_cookie(COOKIE)
        return resp

    @fa.get("/runs", include_in_schema=False)
    async def runs(request: Request, status: str = "", agent: str = "", q: str = "") -> Response:
        key = await viewer(request)
        if key is None:
            return to_signin(request)
        rows = await request.app.store.list_responses(
            status=status or None, agent=agent or None, search=q or None
        )
        agents = sorted({s.name for s in request.app.config.agents}
                        | set(await request.app.store.agents_seen()))  # fmt: skip
        return render(request, "runs.html", key=key, rows=rows, status=status, agent=agent,
                      q=q, agents=agents,
                      statuses=["completed", "in_progress", "incomplete", "failed", "cancelled"])  # fmt: skip

    @fa.get("/runs/{run_id}", include_in_schema=False)
    async def run_page(request: Request, run_id: str, reasoning: int = 0) -> Response:
        key = await viewer(request)
        if key is None:
            return to_signin(request)
        row = await request.app.store.get_response(run_id)
        if row is None:
            return error_page(request, 404, f"No run {run_id}.")
        show = bool(reasoning) and key.show_reasoning
        answer = ""
        for item in (row["response"] or {}).get("output", []):
            if item.get("type") == "message":
                answer = "".join(c.get("text", "") for c in item.get("content", []))
        owner = row["key_id"] == key.id
        has_trace = owner and await request.app.store.has_trace(run_id)
        return render(request, "run.html", key=key, row=row, timeline=row["timeline"] or [],
                      show_reasoning=show, can_see_reasoning=key.show_reasoning, answer=answer,
                      owner=owner, has_trace=has_trace, base_url=str(request.base_url).rstrip("/"))  # fmt: skip

    @fa.get("/runs/{run_id}/trace", include_in_schema=False)
    async def run_trace(request: Request, run_id: str) -> Response:
        key = await viewer(request)
        if key is None:
            return to_signin(request)
        row = await request.app.store.get_response(run_id)
        # Only the key that made a run downloads its trace; another key's run is unknown.
        records = None
        if row is not None and row["key_id"] == key.id:
            records = await request.app.store.get_trace(run_id)
        if records is None:
            return error_page(request, 404, f"No trace of a run {run_id} made with your key.")
        return trace_download(run_id, records, key)

    # -- reports ------------------------------------------------------------------------
    @fa.get("/reports", include_in_schema=False)
    async def reports(request: Request) -> Response:
        key = await viewer(request)
        if key is None:
            return to_signin(request)
        jobs = await request.app.store.list_jobs()
        return render(request, "reports.html", key=key, jobs=jobs,
                      can_upload=request.app.config.survey_model is not None)  # fmt: skip

    @fa.post("/reports", include_in_schema=False)
    async def start_report(request: Request) -> Response:
        key = await viewer(request)
        if key is None:
            return to_signin(request)
        config = request.app.config
        if config.survey_model is None:
            raise InvalidRequestError("this server runs no survey pipeline (no survey model)")
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > MAX_UPLOAD_BYTES:
            return error_page(request, 413, f"The upload is over {MAX_UPLOAD_BYTES} bytes.")
        form = await request.form()
        upload = form.get("survey")
        if upload is None or isinstance(upload, str) or not upload.filename:
            return error_page(request, 400, "Choose a survey export (CSV or JSON Lines).")
        suffix = Path(upload.filename).suffix.lower()
        if suffix not in (".csv", ".jsonl"):
            return error_page(request, 400, "The survey export must be a .csv or .jsonl file.")
        title = str(form.get("title") or Path(upload.filename).stem)[:200]
        job_id = "rep_" + secrets.token_hex(8)
        out_dir = (config.reports_dir / job_id).resolve()
        out_dir.mkdir(parents=True, exist_ok=True)
        data = await upload.read()
        input_path = out_dir / f"input{suffix}"
        input_path.write_bytes(data)
        await request.app.store.create_job(job_id, key.id, title, str(out_dir))
        task = asyncio.create_task(_run_pipeline(request.app, job_id, input_path, out_dir,
                                                 shown_as=Path(upload.filename).name))  # fmt: skip
        request.app.state.jobs[job_id] = task
        task.add_done_callback(lambda _t: request.app.state.jobs.pop(job_id, None))
        return RedirectResponse(f"/reports/{job_id}", status_code=303)

    @fa.get("/reports/{job_id}", include_in_schema=False)
    async def report_page(request: Request, job_id: str) -> Response:
        key = await viewer(request)
        if key is None:
            return to_signin(request)
        job = await request.app.store.get_job(job_id)
        if job is None:
            return error_page(request, 404, f"No report {job_id}.")
        return render(request, "report.html", key=key, job=job)

    @fa.get("/reports/{job_id}/progress", include_in_schema=False)
    async def report_progress(request: Request, job_id: str) -> Response:
        key = await viewer(request)
        if key is None:
            raise AuthenticationError("sign in first")
        job = await request.app.store.get_job(job_id)
        if job is None:
            raise NotFoundError(f"No report {job_id}.")
        return render(request, "progress.html", job=job)

    @fa.get("/reports/{job_id}/files/{name:path}", include_in_schema=False)
    async def report_file(request: Request, job_id: str, name: str) -> Response:
        key = await viewer(request)
        if key is None:
            return to_signin(request)
        job = await request.app.store.get_job(job_id)
        if job is None or not re.fullmatch(r"[\w.\-/]+", name) or ".." in name:
            return error_page(request, 404, "No such file.")
        path = await asyncio.to_thread(_report_file, Path(job["out_dir"]), name)
        if path is None:
            return error_page(request, 404, "No such file.")
        download = request.query_params.get("download") == "1"
        return FileResponse(
            path, filename=path.name if download else None,
            content_disposition_type="attachment" if download else "inline",
        )  # fmt: skip


def _report_file(out_dir: Path, name: str) -> Path | None:
    """The file `name` of a report folder; None outside it, missing, or the upload itself."""
    root = out_dir.resolve()
    path = (root / name).resolve()
    if not path.is_relative_to(root) or not path.is_file() or name.startswith("input"):
        return None
    return path


async def add_finished_report(store: Any, title: str, out_dir: Path, key_id: str = "") -> str:
    """List a report folder made elsewhere (the demo's) on the reports page; its id."""
    job_id = report_id(out_dir)
    files = await asyncio.to_thread(_files, out_dir)
    where = await asyncio.to_thread(os.path.abspath, out_dir)
    if await store.get_job(job_id) is None:
        await store.create_job(job_id, key_id or "local", title, where)
    await store.finish_job(job_id, status="done", files=files, error=None)
    return job_id


async def _run_pipeline(
    app: Any, job_id: str, input_path: Path, out_dir: Path, *, shown_as: str = ""
) -> None:
    from harmonygraph.graphs.survey import PipelineError, run_survey_pipeline

    store = app.store

    def as_uploaded(text: str) -> str:
        """The upload named as its person named it, not as the server saved it."""
        if not shown_as:
            return text
        return text.replace(str(input_path), shown_as).replace(input_path.name, shown_as)

    async def progress(event: Any) -> None:
        described = _describe(event)
        described["text"] = as_uploaded(described["text"])
        await store.job_event(job_id, described)

    try:
        await run_survey_pipeline(
            input_path, out_dir, model=app.config.survey_model, progress=progress,
            **app.config.survey_options,
        )  # fmt: skip
    except asyncio.CancelledError:
        await asyncio.shield(store.finish_job(job_id, status="cancelled", files=_files(out_dir),
                                              error="the server stopped"))  # fmt: skip
        raise
    except Exception as exc:  # the job's failure, shown on its page
        # The pipeline's own errors say what to fix; anything else is named by its kind.
        said = str(exc) if isinstance(exc, PipelineError) else f"{type(exc).__name__}: {exc}"
        await store.finish_job(job_id, status="failed", files=_files(out_dir),
                               error=as_uploaded(said))  # fmt: skip
        return
    await store.finish_job(job_id, status="done", files=_files(out_dir), error=None)
