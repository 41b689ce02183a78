"""Rendering a `Report` to Markdown, HTML and PDF from one template.

`templates/report.md.j2` lays the report out once, as Markdown. HTML is that Markdown
converted (Python-Markdown) inside a page shell with a screen stylesheet and the charts
inlined as data URIs, so `report.html` is one self-contained file. The PDF is the same
HTML with a print stylesheet, laid out by xhtml2pdf (ReportLab underneath): it installs
with pip alone, with no Pango or Cairo from the system, and embeds a Unicode TTF font
(DejaVu from matplotlib when present, else ReportLab's own Bitstream Vera).

Citation markers in the bodies become numbered links `[n]` to the reference list. A
chart that cannot be read is replaced by a visible note and reported in `warnings`.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import importlib.util
import io
import logging
import re
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import jinja2
from harmonygraph.graphs.report_models import Report, Section
from harmonygraph.graphs.sources import CITATION_MARKER

__all__ = ["RenderError", "RenderedReport", "number_citations", "render_report", "warm_pdf"]

log = logging.getLogger(__name__)

Format = Literal["md", "html", "pdf"]
TEMPLATES = Path(__file__).parent / "templates"
_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    autoescape=False,  # the Markdown template is not HTML; HTML comes from the converter
    keep_trailing_newline=True,
    undefined=jinja2.StrictUndefined,
)
# Figures in the PDF: wide enough to read, narrow enough to leave margins (points).
PDF_FIGURE_WIDTH_PT = 400


class RenderError(RuntimeError):
    """A format could not be produced; the formats written before it are kept."""

    def __init__(self, message: str, written: list[Path]) -> None:
        super().__init__(message)
        self.written = written


@dataclass
class RenderedReport:
    markdown: Path | None = None
    html: Path | None = None
    pdf: Path | None = None
    figures: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def files(self) -> list[Path]:
        return [p for p in (self.markdown, self.html, self.pdf) if p is not None] + self.figures


@dataclass
class _FigureView:
    number: int
    caption: str
    file: Path | None  # the copy in the output's figures/ folder
    problem: str = ""
    src: str = ""


@dataclass
class _SectionView:
    title: str
    body: str
    supported: bool
    unsupported_reason: str | None
    figures: list[_FigureView]


_REF_MARKER = re.compile(r"\[ref:(\d+)\]")
_HEADING = re.compile(r"^(#{1,5})(\s)", re.M)


def _demote_headings(body: str) -> str:
    """A section's own headings sit under its `##` title."""
    return _HEADING.sub(lambda m: "#" * min(len(m.group(1)) + 2, 6) + m.group(2), body)


def _neutralise_html(text: str) -> str:
    """Model-written text must not carry raw HTML or images of its own into the report.

    Scripts and remote images would run or be fetched when a reader opens the HTML;
    charts come only from the section's validated figures.
    """
    return text.replace("<", "&lt;").replace("![", "!\\[")


def number_citations(report: Report, text: str, section: Section | None = None) -> str:
    """Citation markers replaced by `[n](#ref-n)`, numbered as in `report.references`."""
    text = _neutralise_html(text)
    by_key = {r.key: r.number for r in report.references}
    lookup: dict[str, int] = {}
    pool = [section] if section else report.sections
    for s in pool:
        for c in s.citations:
            if c.key in by_key:
                lookup.setdefault(c.marker, by_key[c.key])

    def sub(m: re.Match[str]) -> str:
        n = lookup.get(m.group(0))
        return _link(n) if n else ""

    numbers = set(by_key.values())
    text = _REF_MARKER.sub(lambda m: _link(int(m[1])) if int(m[1]) in numbers else "", text)
    return CITATION_MARKER.sub(sub, text)


def _link(n: int) -> str:
    return f"[\\[{n}\\]](#ref-{n})"


def _check_png(path: Path) -> str:
    """'' when the file is a readable image, else why not."""
    if not path.is_file():
        return "the chart file is missing"
    try:
        from PIL import Image

        with Image.open(path) as im:
            im.verify()
    except Exception as exc:  # any decoder failure means the chart cannot be shown
        return f"the chart file is not a readable image ({type(exc).__name__})"
    return ""


def _views(
    report: Report, out_dir: Path, warnings: list[str]
) -> tuple[list[_SectionView], list[Path]]:
    figures_dir = out_dir / "figures"
    copied: list[Path] = []
    sections: list[_SectionView] = []
    number = 0
    for s in report.sections:
        figs: list[_FigureView] = []
        for f in s.figures:
            number += 1
            src = Path(f.path)
            problem = _check_png(src)
            dest: Path | None = None
            if problem:
                warnings.append(
                    f"figure {number} ({f.file}) of section '{s.title}' was left out: {problem}"
                )
            else:
                figures_dir.mkdir(parents=True, exist_ok=True)
                dest = figures_dir / f"fig{number:02d}-{Path(f.file).name}"
                shutil.copyfile(src, dest)
                copied.append(dest)
            figs.append(_FigureView(number, f.caption, dest, problem))
        body = _demote_headings(number_citations(report, s.body, s)) if s.body else ""
        sections.append(_SectionView(s.title, body, s.supported, s.unsupported_reason, figs))
    return sections, copied


def _markdown(report: Report, sections: list[_SectionView], figure_src: Any) -> str:
    for s in sections:
        for f in s.figures:
            f.src = figure_src(f.file) if f.file is not None else ""
    template = _ENV.get_template("report.md.j2")
    text = template.render(
        report=report,
        summary=number_citations(report, report.summary),
        sections=sections,
        conclusions=[number_citations(report, c) for c in report.conclusions],
        generated=report.generated_at.astimezone(dt.UTC).strftime("%d %B %Y, %H:%M UTC"),
        figure_count=sum(1 for s in sections for f in s.figures if f.file is not None),
    )
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def _to_html_body(md_text: str) -> str:
    import markdown

    return markdown.markdown(
        md_text, extensions=["tables", "sane_lists", "fenced_code"], output_format="html"
    )


def _page(title: str, body: str, css: str) -> str:
    return _ENV.get_template("page.html.j2").render(title=html.escape(title), body=body, css=css)


def _fonts() -> tuple[list[dict[str, Any]], str]:
    """A Unicode TTF family for the PDF: DejaVu Sans if matplotlib is installed, else Vera."""
    faces: list[dict[str, Any]] = []
    spec = importlib.util.find_spec("matplotlib")
    if spec and spec.origin:
        ttf = Path(spec.origin).parent / "mpl-data" / "fonts" / "ttf"
        names = {
            (False, False): "DejaVuSans.ttf",
            (True, False): "DejaVuSans-Bold.ttf",
            (False, True): "DejaVuSans-Oblique.ttf",
            (True, True): "DejaVuSans-BoldOblique.ttf",
        }
        if all((ttf / n).is_file() for n in names.values()):
            faces = [
                {"path": (ttf / n).as_posix(), "bold": b, "italic": i}
                for (b, i), n in names.items()
            ]
    if not faces:
        rl = importlib.util.find_spec("reportlab")
        if rl and rl.origin:
            fonts = Path(rl.origin).parent / "fonts"
            names = {
                (False, False): "Vera.ttf",
                (True, False): "VeraBd.ttf",
                (False, True): "VeraIt.ttf",
                (True, True): "VeraBI.ttf",
            }
            if all((fonts / n).is_file() for n in names.values()):
                faces = [
                    {"path": (fonts / n).as_posix(), "bold": b, "italic": i}
                    for (b, i), n in names.items()
                ]
    return faces, ('"ReportSans"' if faces else "Helvetica")


# xhtml2pdf and ReportLab keep process-wide state (the registered fonts): one document
# at a time, the warm-up's included.
_PDF_LOCK = threading.Lock()


def _print_css() -> tuple[str, list[dict[str, Any]]]:
    faces, family = _fonts()
    return _ENV.get_template("print.css").render(fonts=faces, font_family=family), faces


def warm_pdf() -> None:
    """Do the PDF renderer's one-time work now: import it and load the report's fonts.

    About half of the first PDF's time is xhtml2pdf's import and parsing the four TrueType
    faces, which it does once per process. A caller with time to spare before its report
    is ready (the survey pipeline, while the sandbox runs the analysis) calls this in a
    thread; the report's own PDF then skips that work. Never raises: a renderer that
    cannot start says so when the report is rendered.
    """
    try:
        from xhtml2pdf import pisa

        css, faces = _print_css()
        fonts = sorted({Path(f["path"]).parent for f in faces})
        options = _pdf_access(fonts) if fonts else {}
        page = _page("", '<p>.</p><div id="page-footer" class="footer">.</div>', css)
        with _PDF_LOCK:
            pisa.CreatePDF(page, dest=io.BytesIO(), encoding="utf-8", **options)
    except Exception as exc:
        log.debug("the PDF renderer was not warmed: %s", exc)


def _pdf_access(roots: list[Path]) -> dict[str, Any]:
    """xhtml2pdf's options that let a document read local files under `roots` only."""
    options: dict[str, Any] = {}
    try:
        from xhtml2pdf.config.resources import ResourceAccessPolicy

        options["resource_policy"] = ResourceAccessPolicy(
            allow_remote=False, base_dir=roots[0], extra_roots=roots[1:]
        )
    except ImportError:  # xhtml2pdf before its resource policies: filter links ourselves

        def allowed(uri: str, rel: str) -> str:
            target = Path(uri).resolve()
            return str(target) if any(target.is_relative_to(r) for r in roots) else ""

        options["link_callback"] = allowed
    return options


def _write_pdf(report: Report, sections: list[_SectionView], path: Path) -> None:
    try:
        from xhtml2pdf import pisa
    except ImportError as exc:
        raise RuntimeError(
            "PDF output needs xhtml2pdf: pip install 'harmonygraph[report]'"
        ) from exc
    md_text = _markdown(report, sections, lambda p: p.resolve().as_posix())
    body = _to_html_body(md_text)
    # ReportLab lays images out at their pixel size; give every chart one printable width.
    body = re.sub(r"<img ", f'<img width="{PDF_FIGURE_WIDTH_PT}" ', body)
    body += (
        f'<div id="page-footer" class="footer">{html.escape(report.title)} · page '
        "<pdf:pagenumber> of <pdf:pagecount></div>"
    )
    css, faces = _print_css()
    page = _page(report.title, body, css)
    # Local reads only, and only the output folder (the charts) and the font folder:
    # the bodies are model-written, so nothing they name may be fetched.
    options = _pdf_access([path.parent.resolve(), *sorted({Path(f["path"]).parent for f in faces})])
    buffer = io.BytesIO()
    with _PDF_LOCK:
        status = pisa.CreatePDF(page, dest=buffer, encoding="utf-8", **options)
    if status.err:
        raise RuntimeError(f"xhtml2pdf reported {status.err} error(s) laying out the PDF")
    path.write_bytes(buffer.getvalue())


def render_report(
    report: Report,
    out_dir: Path,
    *,
    formats: tuple[Format, ...] = ("md", "html", "pdf"),
    stem: str = "report",
) -> RenderedReport:
    """Write `report.md`, `report.html`, `report.pdf` and `figures/` under `out_dir`.

    Raises `RenderError` (with the files written so far) when a format fails.
    """
    result = RenderedReport()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        sections, result.figures = _views(report, out_dir, result.warnings)
    except OSError as exc:
        raise RenderError(
            f"cannot write the report under {out_dir}: {exc.strerror or exc}", []
        ) from exc
    current: Format = "md"
    try:
        if "md" in formats:
            path = out_dir / f"{stem}.md"
            path.write_text(
                _markdown(report, sections, lambda p: p.relative_to(out_dir).as_posix()),
                encoding="utf-8",
            )
            result.markdown = path
        if "html" in formats:
            current = "html"

            def data_uri(p: Path) -> str:
                return "data:image/png;base64," + base64.b64encode(p.read_bytes()).decode("ascii")

            body = _to_html_body(_markdown(report, sections, data_uri))
            path = out_dir / f"{stem}.html"
            path.write_text(
                _page(report.title, body, (TEMPLATES / "screen.css").read_text()), encoding="utf-8"
            )
            result.html = path
        if "pdf" in formats:
            current = "pdf"
            path = out_dir / f"{stem}.pdf"
            _write_pdf(report, sections, path)
            result.pdf = path
    except (OSError, RuntimeError, jinja2.TemplateError) as exc:
        raise RenderError(
            f"writing the {current.upper()} report failed: {exc}", result.files
        ) from exc
    return result
