"""The review page: a static HTML view of a run's report, for people. No Beam.

`build_review(report_url, out_dir)` reads a JSON-lines report and writes
``OUT_DIR/index.html``, further pages and JPEG assets:

* a summary (counts, detections per class, time, score histograms as inline SVG);
* a grid of thumbnails of every *blurred output*, each detection outlined
  and labelled; clicking one opens a larger view;
* near misses (scored below the threshold, so *not* blurred) as crops of the
  output, with a shell command that re-runs that one file at a lower threshold;
* failed files with their reasons.

Each list shows `page_size` entries per page: index.html holds the first page
of each, and ``blurred-N.html``, ``near-misses-N.html``, ``failed-N.html`` the
rest, so a 100,000-image report makes many small pages, not one huge one.

Privacy: pixels come only from output files (``"output"`` in the report);
input files are never opened. Safety: every string taken from the report is
HTML-escaped, asset names are line numbers (never file names), and the
pages' Content-Security-Policy runs only their own script and style (by hash).
The pages need no server, network, CDN or JS framework.
"""

from __future__ import annotations

import argparse
import base64
import collections
import concurrent.futures
import dataclasses
import hashlib
import html
import io
import logging
import math
import os
import posixpath
import shlex
import sys
from typing import Callable, Iterable, Optional, Sequence

from PIL import Image

from pii_blur import report_files, storage
from pii_blur.models import centerface, ppocr_plate
from pii_blur.models.base import precision_of
from pii_blur.types import Detection, FileReport

LOG = logging.getLogger(__name__)

THUMB_SIDE = 320     # longest side of grid thumbnails and near-miss crops
LARGE_SIDE = 1280    # longest side of the larger view
THUMB_QUALITY = 70
LARGE_QUALITY = 75
HISTOGRAM_BINS = 20
# Context around a near miss in its crop, as a fraction of the box's size each side.
CROP_CONTEXT = 1.0
CROP_MIN_CONTEXT_PX = 24
# Scores in the report are rounded to 4 decimals; keep this margin when
# choosing a threshold that must blur a near miss.
SCORE_ROUNDING = 1e-4
ORIENTATION_TAG = 0x0112
# EXIF orientation -> the Pillow transpose that shows the image upright.
_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
              4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
              6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_90}
# (MIN_PERCENTAGE_PROBABILITY / 100, the run's --precision or None) -> detector score threshold, per class.
THRESHOLD_FOR: dict[str, Callable[[float, Optional[str]], float]] = {
    "face": lambda probability, precision: centerface.threshold_for(
        probability, precision_of("onnx-centerface", precision)),
    "plate": lambda probability, precision: ppocr_plate.threshold_for(probability),
}

Box = tuple[float, float, float, float]


def esc(value) -> str:
    """Text or attribute value, HTML-escaped (quotes included)."""
    return html.escape(str(value), quote=True)


# --------------------------------------------------------------------------
# The report


@dataclasses.dataclass(frozen=True)
class Mark:
    """A detection or near miss as drawn: one box, or two for an object
    split by a 360° panorama's seam. Boxes are [x1, y1, x2, y2] in stored pixels."""

    label: str
    score: float
    boxes: tuple[Box, ...]

    @classmethod
    def from_detection(cls, detection: Detection) -> "Mark":
        boxes = tuple(tuple(float(v) for v in box) for box in (detection.boxes or (detection.box,)))
        if any(len(box) != 4 for box in boxes):
            raise ValueError(f"a box needs 4 numbers: {boxes!r}")
        return cls(label=detection.label, score=float(detection.score), boxes=boxes)

    def box_text(self) -> str:
        return " + ".join("[" + ", ".join(f"{v:g}" for v in box) + "]" for box in self.boxes)


@dataclasses.dataclass(frozen=True)
class Entry:
    """One input's line of the report. index: its line number (0-based), which names its assets."""

    index: int
    path: str
    status: str
    output: Optional[str]
    reason: str
    detections: tuple[Mark, ...]
    near_misses: tuple[Mark, ...]
    timings: dict
    projection: Optional[str] = None
    settings: tuple[tuple[str, object], ...] = ()

    @classmethod
    def from_report(cls, index: int, report: FileReport, settings: dict) -> "Entry":
        """settings: the run's, from the summary line (for re-run commands)."""
        return cls(index=index, path=report.path, status=report.status.value, output=report.output,
                   reason=report.reason, detections=tuple(Mark.from_detection(d) for d in report.detections),
                   near_misses=tuple(Mark.from_detection(d) for d in report.near_misses),
                   timings=dict(report.timings), projection=report.projection or None,
                   settings=tuple(sorted(settings.items())))

    @property
    def name(self) -> str:
        return posixpath.basename(self.path.rstrip("/")) or self.path


@dataclasses.dataclass(frozen=True)
class Report:
    entries: tuple[Entry, ...]
    summary: Optional[dict]

    def counts(self) -> dict:
        """Status counts, detections per class and total seconds: the summary
        line's, or computed from the entries when the summary is missing."""
        by_status = collections.Counter(e.status for e in self.entries)
        computed = {"files": len(self.entries),
                    **{s: by_status.get(s, 0) for s in ("copied", "cleaned", "blurred", "skipped", "failed")},
                    "detections": dict(collections.Counter(
                        m.label for e in self.entries if e.status == "blurred" for m in e.detections)),
                    "total_seconds": None}
        return {**computed, **(self.summary or {})}


def load_report(report_url: str) -> Report:
    """The report's entries and summary line (None when missing), merged or in parts.

    Lines are parsed by FileReport.from_json, the reader the pipeline uses.

    Raises:
        ValueError: a line is not JSON or misses a field; the message gives its line number.
    """
    reports, summary = [], None
    records = report_files.iter_report(report_url)
    number = 0
    while True:
        number += 1
        try:
            item = next(records)
        except StopIteration:
            break
        except ValueError as error:
            raise ValueError(f"report line {number}: {type(error).__name__}: {error}") from error
        try:
            if item.get("summary"):
                summary = item
                continue
            reports.append(FileReport.from_json(item))
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as error:
            raise ValueError(f"report line {number}: {type(error).__name__}: {error}") from error
    settings = (summary or {}).get("settings") or {}
    try:
        entries = tuple(Entry.from_report(index, report, settings) for index, report in enumerate(reports))
    except (ValueError, TypeError) as error:
        raise ValueError(f"report: {type(error).__name__}: {error}") from error
    return Report(entries=entries, summary=summary)


# --------------------------------------------------------------------------
# Near misses: the command that re-runs one file


def rerun_threshold(label: str, score: float, precision: Optional[str] = None) -> Optional[int]:
    """Highest MIN_PERCENTAGE_PROBABILITY (1-100) at which a detection of
    `label` scoring `score` would be blurred; None if even 1 would not.

    precision: the run's --precision (None: each model's default), which
    sets CenterFace's threshold. Unknown labels assume the score is the
    probability itself.
    """
    to_threshold = THRESHOLD_FOR.get(label, lambda probability, _precision: probability)
    for percentage in range(100, 0, -1):
        if to_threshold(percentage / 100, precision) < score - SCORE_ROUNDING:
            return percentage
    return None


# The run's settings that a re-run must repeat, as CLI options (the threshold is the re-run's own).
RERUN_OPTIONS = ("classes", "models", "projection", "mode", "precision")


def rerun_command(entry: Entry, threshold: int) -> str:
    """`pii-blur INPUT OUTPUT_DIR N --report R [the run's --classes, --models, ...]`, every argument shell-quoted.

    OUTPUT_DIR is the output's folder, so the re-run writes over the same
    output file. Its report goes beside that file, so it does not replace
    the report of the whole run. The run's own --classes, --models,
    --projection, --mode and --precision (from the summary) are kept, so
    the re-run finds and blurs what the run did.
    """
    output_dir = posixpath.dirname(entry.output)
    report = entry.output + ".pii-blur-report.jsonl"
    settings = dict(entry.settings)
    options = [word for name in RERUN_OPTIONS if settings.get(name) is not None
               for word in (f"--{name}", str(settings[name]))]
    return shlex.join(["pii-blur", entry.path, output_dir, str(threshold), "--report", report, *options])


# --------------------------------------------------------------------------
# Geometry: stored pixels -> fractions of what is shown


def frame_fractions(box: Box, frame: Box) -> Box:
    """`box` as fractions (0..1, clipped) of `frame`, both [x1, y1, x2, y2] in stored pixels."""
    width, height = frame[2] - frame[0], frame[3] - frame[1]
    fx = [min(max((x - frame[0]) / width, 0.0), 1.0) for x in (box[0], box[2])]
    fy = [min(max((y - frame[1]) / height, 0.0), 1.0) for y in (box[1], box[3])]
    return fx[0], fy[0], fx[1], fy[1]


def orient_fractions(box: Box, orientation: int) -> Box:
    """A box in fractions of the stored image -> fractions of the image shown
    upright for EXIF `orientation` (1-8), as Pillow's exif_transpose shows it."""
    point = {
        2: lambda x, y: (1 - x, y), 3: lambda x, y: (1 - x, 1 - y), 4: lambda x, y: (x, 1 - y),
        5: lambda x, y: (y, x), 6: lambda x, y: (1 - y, x), 7: lambda x, y: (1 - y, 1 - x),
        8: lambda x, y: (y, 1 - x),
    }.get(orientation, lambda x, y: (x, y))
    (ax, ay), (bx, by) = point(box[0], box[1]), point(box[2], box[3])
    return min(ax, bx), min(ay, by), max(ax, bx), max(ay, by)


def crop_frame(box: Box, size: tuple[int, int]) -> Box:
    """The region of the stored image shown for a near miss: the box with context, inside the image."""
    pad_x = max(CROP_CONTEXT * (box[2] - box[0]), CROP_MIN_CONTEXT_PX)
    pad_y = max(CROP_CONTEXT * (box[3] - box[1]), CROP_MIN_CONTEXT_PX)
    x1, y1 = max(0, math.floor(box[0] - pad_x)), max(0, math.floor(box[1] - pad_y))
    x2, y2 = min(size[0], math.ceil(box[2] + pad_x)), min(size[1], math.ceil(box[3] + pad_y))
    return x1, y1, max(x2, x1 + 1), max(y2, y1 + 1)


# --------------------------------------------------------------------------
# Assets: JPEGs made from output pixels only


@dataclasses.dataclass(frozen=True)
class Picture:
    """A JPEG written under OUT_DIR: its relative path, its size as shown, and the
    stored-pixel region it shows with the EXIF orientation it was turned by."""

    src: str
    width: int
    height: int
    frame: Box
    orientation: int


@dataclasses.dataclass(frozen=True)
class Assets:
    """One entry's pictures. crops[k][p]: near miss k, box p. error: why there are none."""

    thumb: Optional[Picture] = None
    large: Optional[Picture] = None
    crops: tuple[tuple[Picture, ...], ...] = ()
    error: str = ""


def _fit(size: tuple[int, int], side: int) -> tuple[int, int]:
    scale = min(1.0, side / max(size))
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def _save(image: Image.Image, out_dir: str, relative: str, quality: int,
          frame: Box, orientation: int) -> Picture:
    image = image.transpose(_TRANSPOSE[orientation]) if orientation in _TRANSPOSE else image
    with open(os.path.join(out_dir, relative), "wb") as handle:
        image.save(handle, "JPEG", quality=quality)
    return Picture(src=relative, width=image.width, height=image.height, frame=frame,
                   orientation=orientation)


def render_assets(entry: Entry, out_dir: str, *, large: bool) -> Assets:
    """Thumbnail (and larger view if `large`) of the entry's output, and a crop
    per near-miss box. Reads only `entry.output`; errors become Assets.error."""
    if not entry.output:
        return Assets(error="no output file in the report")
    try:
        data = storage.read_bytes(entry.output)
        with Image.open(io.BytesIO(data)) as image:
            stored = image.size
            orientation = int(image.getexif().get(ORIENTATION_TAG, 1))
            if not entry.near_misses:
                # JPEG: decode at a reduced scale, still >= what is needed.
                image.draft("RGB", _fit(stored, LARGE_SIDE if large else THUMB_SIDE))
            pixels = image.convert("RGB")
    except Exception as error:  # noqa: BLE001 - shown on the page, the build goes on
        LOG.warning("review: cannot read output %s: %s", entry.output, error)
        return Assets(error=f"cannot read output: {type(error).__name__}: {error}")
    scale = pixels.width / stored[0]
    stem = f"img/{entry.index // 1000:03d}/{entry.index:06d}"
    whole: Box = (0, 0, stored[0], stored[1])
    thumb = large_picture = None
    if entry.status == "blurred":
        if large:
            view = pixels.resize(_fit(stored, LARGE_SIDE), Image.Resampling.LANCZOS, reducing_gap=3.0)
            large_picture = _save(view, out_dir, stem + "-large.jpg", LARGE_QUALITY, whole, orientation)
        else:
            view = pixels
        thumb_pixels = view.resize(_fit(stored, THUMB_SIDE), Image.Resampling.LANCZOS, reducing_gap=3.0)
        thumb = _save(thumb_pixels, out_dir, stem + ".jpg", THUMB_QUALITY, whole, orientation)
    crops = []
    for k, mark in enumerate(entry.near_misses):
        parts = []
        for p, box in enumerate(mark.boxes):
            frame = crop_frame(box, stored)
            region = pixels.crop(tuple(round(v * scale) for v in frame))
            region = region.resize(_fit(region.size, THUMB_SIDE), Image.Resampling.LANCZOS)
            parts.append(_save(region, out_dir, f"{stem}-near{k}-{p}.jpg", THUMB_QUALITY, frame, orientation))
        crops.append(tuple(parts))
    return Assets(thumb=thumb, large=large_picture, crops=tuple(crops))


# --------------------------------------------------------------------------
# HTML pieces


def _pct(value: float) -> str:
    return f"{100 * value:.3f}%"


def overlay(marks: Iterable[Mark], picture: Picture, kind: str) -> str:
    """An SVG over `picture` outlining every box of `marks` that lies in its
    frame, labelled "class score". Coordinates are percentages, so outlines
    and label sizes hold at any displayed size."""
    shapes = []
    for mark in marks:
        for box in mark.boxes:
            if box[2] <= picture.frame[0] or box[0] >= picture.frame[2] \
                    or box[3] <= picture.frame[1] or box[1] >= picture.frame[3]:
                continue
            x1, y1, x2, y2 = orient_fractions(frame_fractions(box, picture.frame), picture.orientation)
            text = f"{mark.label} {mark.score:.2f}"
            label_y, baseline = (_pct(y1), "text-after-edge") if y1 > 0.08 else (_pct(y2), "text-before-edge")
            # Labels of boxes near the right edge end at the box's right side, inside the picture.
            label_x, anchor = (_pct(x2), "end") if x1 > 0.7 else (_pct(x1), "start")
            shapes.append(
                f'<g class="{esc(kind)}"><title>{esc(text)} {esc(mark.box_text())}</title>'
                f'<rect x="{_pct(x1)}" y="{_pct(y1)}" width="{_pct(x2 - x1)}" height="{_pct(y2 - y1)}"/>'
                f'<text x="{label_x}" y="{label_y}" text-anchor="{anchor}" dominant-baseline="{baseline}">'
                f'{esc(text)}</text></g>')
    return f'<svg class="marks" aria-hidden="true">{"".join(shapes)}</svg>'


def _img(picture: Picture, alt: str) -> str:
    return (f'<img src="{esc(picture.src)}" width="{picture.width}" height="{picture.height}" '
            f'alt="{esc(alt)}" loading="lazy" decoding="async">')


def _path_block(entry: Entry) -> str:
    output = esc(entry.output) if entry.output else "<i>none</i>"
    return (f'<dl class="paths"><dt>Input</dt><dd>{esc(entry.path)}</dd>'
            f'<dt>Output</dt><dd>{output}</dd></dl>')


def blurred_card(entry: Entry, assets: Assets) -> str:
    tags = " · ".join(f"{esc(m.label)} {m.score:.2f}" for m in entry.detections) or "no detections"
    meta = (f'<figcaption class="meta"><b class="name" title="{esc(entry.path)}">{esc(entry.name)}</b>'
            f'<span class="tags">{tags}</span>{_path_block(entry)}</figcaption>')
    if assets.thumb is None:
        return f'<figure class="card missing"><div class="error">{esc(assets.error)}</div>{meta}</figure>'
    marks = overlay(entry.detections, assets.thumb, "hit")
    target = assets.large or assets.thumb
    return (f'<figure class="card" id="f{entry.index}"><a class="open" href="{esc(target.src)}" '
            f'data-width="{target.width}" data-height="{target.height}">'
            f'<span class="shot">{_img(assets.thumb, "blurred output of " + entry.name)}{marks}</span></a>'
            f'{meta}</figure>')


def near_miss_card(entry: Entry, k: int, assets: Assets, threshold: Optional[int]) -> str:
    mark = entry.near_misses[k]
    if assets.crops:
        shots = "".join(f'<span class="shot">{_img(p, "near miss in output of " + entry.name)}'
                        f'{overlay([mark], p, "near")}</span>' for p in assets.crops[k])
    else:
        shots = f'<div class="error">{esc(assets.error)}</div>'
    precision = dict(entry.settings).get("precision")
    chosen = threshold if threshold is not None else rerun_threshold(mark.label, mark.score, precision)
    if entry.output and chosen is not None:
        command = (f'<div class="cmd"><code>{esc(rerun_command(entry, chosen))}</code>'
                   f'<button type="button" class="copy">Copy</button></div>')
    elif entry.output:
        command = '<p class="note">No threshold from 1 to 100 blurs this score; blur it by hand.</p>'
    else:
        command = ""
    projection = f" · {esc(entry.projection)}" if entry.projection else ""
    return (f'<article class="card near" id="n{entry.index}-{k}"><div class="crops">{shots}</div>'
            f'<div class="meta"><b class="name" title="{esc(entry.path)}">{esc(entry.name)}</b>'
            f'<span class="tags">{esc(mark.label)} {mark.score:.4f} · not blurred{projection}</span>'
            f'<dl class="paths"><dt>Input</dt><dd>{esc(entry.path)}</dd>'
            f'<dt>Output</dt><dd>{esc(entry.output) if entry.output else "<i>none</i>"}</dd>'
            f'<dt>Box</dt><dd>{esc(mark.box_text())}</dd></dl></div>{command}</article>')


def failed_row(entry: Entry) -> str:
    return f'<tr><td class="path">{esc(entry.path)}</td><td>{esc(entry.reason or "no reason given")}</td></tr>'


def score_histogram(scores_hit: Sequence[float], scores_near: Sequence[float],
                    bins: int = HISTOGRAM_BINS) -> tuple[list[int], list[int]]:
    """Counts per bin over [0, 1] (a score of 1 in the last bin) of blurred detections and near misses."""
    def count(scores):
        counts = [0] * bins
        for score in scores:
            counts[min(bins - 1, max(0, int(score * bins)))] += 1
        return counts
    return count(scores_hit), count(scores_near)


def histogram_svg(label: str, scores_hit: Sequence[float], scores_near: Sequence[float]) -> str:
    """Stacked bars of blurred detections (below) and near misses (above) per score bin."""
    hits, nears = score_histogram(scores_hit, scores_near)
    width, height, left, bottom, top = 360, 150, 34, 22, 18
    plot_w, plot_h = width - left - 8, height - bottom - top
    peak = max([h + n for h, n in zip(hits, nears)] + [1])
    bar_w = plot_w / len(hits)
    bars = []
    for i, (hit, near) in enumerate(zip(hits, nears)):
        low, high = i / len(hits), (i + 1) / len(hits)
        x = left + i * bar_w
        y = top + plot_h
        for count, kind in ((hit, "hit"), (near, "near")):
            if count:
                bar_h = plot_h * count / peak
                y -= bar_h
                bars.append(f'<rect class="{kind}" x="{x + 1:.1f}" y="{y:.1f}" width="{bar_w - 2:.1f}" '
                            f'height="{bar_h:.1f}"><title>{low:.2f}–{high:.2f}: {count} '
                            f'{"blurred" if kind == "hit" else "near miss(es)"}</title></rect>')
    ticks = "".join(f'<text x="{left + plot_w * t:.1f}" y="{height - 6}" text-anchor="middle">{t:g}</text>'
                    for t in (0, 0.25, 0.5, 0.75, 1))
    return (f'<figure class="hist"><svg viewBox="0 0 {width} {height}" role="img" '
            f'aria-label="score histogram for {esc(label)}">'
            f'<text x="{left}" y="12" class="title">{esc(label)}: <tspan class="hit">{len(scores_hit)} '
            f'blurred</tspan>, <tspan class="near">{len(scores_near)} near misses</tspan></text>'
            f'<text x="{left - 4}" y="{top + 4}" text-anchor="end">{peak}</text>'
            f'<text x="{left - 4}" y="{top + plot_h}" text-anchor="end">0</text>'
            f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}"/>'
            f'{"".join(bars)}{ticks}</svg></figure>')


def summary_html(report: Report, report_url: str) -> str:
    counts = report.counts()
    statuses = "".join(f'<div class="stat {s}"><b>{esc(counts.get(s, 0))}</b>{s}</div>'
                       for s in ("files", "copied", "cleaned", "blurred", "skipped", "failed"))
    near_by_class = collections.Counter(m.label for e in report.entries for m in e.near_misses)
    classes = sorted(set(counts.get("detections") or {}) | set(near_by_class))
    rows = "".join(f'<tr><td>{esc(c)}</td><td>{esc((counts.get("detections") or {}).get(c, 0))}</td>'
                   f'<td>{near_by_class.get(c, 0)}</td></tr>' for c in classes)
    stage_seconds = collections.Counter()
    for entry in report.entries:
        for stage, seconds in entry.timings.items():
            if isinstance(seconds, (int, float)):
                stage_seconds[str(stage)] += seconds
    stages = ", ".join(f"{esc(stage)} {seconds:.1f} s" for stage, seconds in stage_seconds.items())
    total = counts.get("total_seconds")
    total_text = f"{float(total):.1f} s" if isinstance(total, (int, float)) else "unknown"
    warning = "" if report.summary else \
        '<p class="warning">The report has no summary line (did the run finish?); counts are from its lines.</p>'
    histograms = "".join(
        histogram_svg(c, [m.score for e in report.entries if e.status == "blurred"
                          for m in e.detections if m.label == c],
                      [m.score for e in report.entries for m in e.near_misses if m.label == c])
        for c in classes)
    return (f'<section id="summary"><h2>Summary</h2>{warning}<div class="stats">{statuses}</div>'
            f'<p>Report: <code>{esc(report_url)}</code>. Total time: <b>{total_text}</b>'
            f'{"; summed over files: " + stages if stages else ""}.</p>'
            f'<table class="classes"><thead><tr><th>class</th><th>blurred</th><th>near misses</th></tr></thead>'
            f'<tbody>{rows or "<tr><td colspan=3>none</td></tr>"}</tbody></table>'
            f'<div class="hists">{histograms}</div></section>')


# --------------------------------------------------------------------------
# Pages

CSS = """
:root{--ink:#1d232a;--muted:#5b6570;--line:#d9dee3;--hit:#e8364f;--near:#f0a202;--bg:#f6f7f9}
*{box-sizing:border-box}body{margin:0;font:14px/1.4 system-ui,sans-serif;color:var(--ink);background:var(--bg)}
header{background:#1d232a;color:#fff;padding:10px 20px;display:flex;gap:20px;align-items:baseline;flex-wrap:wrap}
header h1{font-size:18px;margin:0}header a{color:#cfe3ff}main{padding:0 20px 40px}
h2{margin:28px 0 10px}code{font:12px/1.4 ui-monospace,monospace;white-space:pre-wrap;word-break:break-all}
.stats{display:flex;gap:10px;flex-wrap:wrap}.stat{background:#fff;border:1px solid var(--line);border-radius:6px;
padding:8px 14px;min-width:90px}.stat b{display:block;font-size:22px}.stat.failed b{color:#b3261e}
table{border-collapse:collapse;background:#fff}td,th{border:1px solid var(--line);padding:4px 8px;text-align:left;
vertical-align:top}td.path{word-break:break-all;white-space:pre-wrap}
.hists{display:flex;flex-wrap:wrap;gap:10px;margin-top:10px}
.hist{margin:0;background:#fff;border:1px solid var(--line);border-radius:6px;width:380px;padding:4px}
.hist svg{width:100%;height:auto;font-size:10px;fill:var(--muted)}
.hist line{stroke:var(--muted)}.hist rect.hit{fill:var(--hit)}.hist rect.near{fill:var(--near)}
.hist .title{fill:var(--ink);font-weight:600}.hist tspan.hit{fill:var(--hit)}.hist tspan.near{fill:#b87900}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(230px,1fr));gap:12px}
.card{margin:0;background:#fff;border:1px solid var(--line);border-radius:6px;padding:6px;min-width:0}
.shot{position:relative;display:block;line-height:0}.shot img{display:block;width:100%;height:auto;background:#ccc}
svg.marks{position:absolute;left:0;top:0;width:100%;height:100%;overflow:visible;pointer-events:none}
svg.marks rect{fill:none;stroke-width:2px}.hit rect{stroke:var(--hit)}
.near rect{stroke:var(--near);stroke-dasharray:5 3}
svg.marks text{font:600 11px system-ui,sans-serif;fill:#fff;stroke:#000;stroke-width:3px;paint-order:stroke}
.meta{display:block;line-height:1.35;margin-top:6px}.name{display:block;overflow:hidden;text-overflow:ellipsis;
white-space:nowrap}.tags{color:var(--muted)}.paths{display:none;margin:4px 0 0;font-size:12px}
.paths dt{font-weight:600}.paths dd{margin:0 0 4px;word-break:break-all;white-space:pre-wrap}
.near .paths,dialog .paths{display:block}.crops{display:flex;gap:4px}.crops .shot{flex:1}
.cmd{display:flex;gap:6px;align-items:flex-start;margin-top:6px;background:var(--bg);padding:4px;border-radius:4px}
.cmd code{flex:1}.error,.warning,.note{color:#b3261e}.missing .error{padding:30px 6px}
nav.pager{margin:12px 0;display:flex;gap:6px;flex-wrap:wrap}nav.pager a,nav.pager span{padding:2px 8px;
border:1px solid var(--line);border-radius:4px;background:#fff}
nav.pager span.current{background:#1d232a;color:#fff}
dialog{max-width:96vw;max-height:96vh;padding:10px;border:0;border-radius:8px}dialog::backdrop{background:#000c}
dialog .shot img{width:auto;max-width:92vw;max-height:80vh}dialog .shot{display:inline-block}
dialog svg.marks text{font-size:14px}dialog form{text-align:right;margin:0 0 6px}
"""

SCRIPT = """
(function () {
  "use strict";
  var viewer = document.getElementById("viewer");
  var frame = viewer.querySelector(".shot");
  var caption = viewer.querySelector("figcaption");
  document.querySelectorAll("a.open").forEach(function (link) {
    link.addEventListener("click", function (event) {
      if (typeof viewer.showModal !== "function") { return; }
      event.preventDefault();
      var card = link.closest(".card");
      var image = document.createElement("img");
      image.src = link.getAttribute("href");
      image.width = Number(link.dataset.width);
      image.height = Number(link.dataset.height);
      image.alt = card.querySelector("img").alt;
      frame.replaceChildren(image, card.querySelector("svg.marks").cloneNode(true));
      caption.replaceChildren(card.querySelector(".meta").cloneNode(true));
      viewer.showModal();
    });
  });
  viewer.addEventListener("click", function (event) {
    if (event.target === viewer) { viewer.close(); }
  });
  document.querySelectorAll("button.copy").forEach(function (button) {
    button.addEventListener("click", function () {
      var code = button.parentElement.querySelector("code");
      var select = function () {
        var range = document.createRange();
        range.selectNodeContents(code);
        window.getSelection().removeAllRanges();
        window.getSelection().addRange(range);
        button.textContent = "Selected";
      };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(code.textContent).then(function () {
          button.textContent = "Copied";
        }, select);
      } else {
        select();
      }
    });
  });
})();
"""


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


# Only this page's own style and script run; images only from files beside it.
CSP = (f"default-src 'none'; img-src 'self' file: data:; style-src {_csp_hash(CSS)}; "
       f"script-src {_csp_hash(SCRIPT)}; base-uri 'none'; form-action 'none'")

SECTIONS = (("blurred", "Blurred photos"), ("near-misses", "Near misses"), ("failed", "Failed files"))


def page_name(section: str, number: int) -> str:
    """index.html holds page 1 of every section; page N > 1 is SECTION-N.html."""
    return "index.html" if number == 1 else f"{section}-{number}.html"


def pager(section: str, number: int, pages: int) -> str:
    """Links to the first, last and nearby pages of a section."""
    if pages <= 1:
        return ""
    shown = sorted({1, pages} | set(range(max(1, number - 3), min(pages, number + 3) + 1)))
    links, previous = [], 0
    for n in shown:
        if n > previous + 1:
            links.append("<span>…</span>")
        links.append(f'<span class="current">{n}</span>' if n == number else
                     f'<a href="{page_name(section, n)}#{section}">{n}</a>')
        previous = n
    return f'<nav class="pager" aria-label="pages">{"".join(links)}</nav>'


def page_html(title: str, nav: str, body: str) -> str:
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            f'<meta name="referrer" content="no-referrer">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>{esc(title)}</title><style>{CSS}</style></head>\n<body>'
            f'<header><h1>pii-blur review</h1>{nav}</header><main>{body}</main>'
            f'<dialog id="viewer"><form method="dialog"><button>Close</button></form>'
            f'<figure><span class="shot"></span><figcaption></figcaption></figure></dialog>'
            f'<script>{SCRIPT}</script></body></html>\n')


def _chunks(items: Sequence, size: int) -> list[Sequence]:
    return [items[i:i + size] for i in range(0, len(items), size)] or [items[:0]]


def build_review(report_url: str, out_dir: str, *, near_miss_rerun_threshold: int | None = None,
                 page_size: int = 200) -> str:
    """Write the review page of the report at `report_url` into the local folder `out_dir`.

    near_miss_rerun_threshold: MIN_PERCENTAGE_PROBABILITY (1-100) in the re-run
    commands of near misses; None: per near miss, the highest that blurs it.
    page_size: entries per page in each section (blurred, near misses, failed).
    Returns the path of index.html, which is written last.

    Raises:
        ValueError: a bad argument or report line.
        FileNotFoundError: no report at `report_url`.
    """
    if page_size < 1:
        raise ValueError("page_size must be at least 1")
    if near_miss_rerun_threshold is not None and not 1 <= near_miss_rerun_threshold <= 100:
        raise ValueError("near_miss_rerun_threshold must be between 1 and 100")
    report = load_report(report_url)
    blurred = [e for e in report.entries if e.status == "blurred"]
    near = [(e, k) for e in report.entries for k in range(len(e.near_misses))]
    failed = [e for e in report.entries if e.status == "failed"]
    pictured = [e for e in report.entries if e.status == "blurred" or e.near_misses]

    for shard in sorted({e.index // 1000 for e in pictured}):
        os.makedirs(os.path.join(out_dir, "img", f"{shard:03d}"), exist_ok=True)
    workers = min(8, os.cpu_count() or 1)
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        rendered = pool.map(lambda e: render_assets(e, out_dir, large=e.status == "blurred"), pictured)
        assets = {e.index: a for e, a in zip(pictured, rendered)}

    lists = {
        "blurred": [blurred_card(e, assets[e.index]) for e in blurred],
        "near-misses": [near_miss_card(e, k, assets[e.index], near_miss_rerun_threshold) for e, k in near],
        "failed": [failed_row(e) for e in failed],
    }
    nav = "".join(f'<a href="index.html#{s}">{esc(title)} ({len(lists[s])})</a>' for s, title in SECTIONS)
    nav = '<a href="index.html#summary">Summary</a>' + nav
    intro = {
        "blurred": "Thumbnails of the blurred outputs; each blurred detection is outlined. "
                   "Click one for a larger view.",
        "near-misses": "Detections that scored below the threshold and were <b>not</b> blurred, "
                       "cropped from the output. Check each; if it is a face or plate, run its command.",
        "failed": "These inputs have no output.",
    }
    pages = {s: _chunks(items, page_size) for s, items in lists.items()}

    def section(s: str, title: str, number: int) -> str:
        items, count = pages[s][number - 1], len(pages[s])
        if not items:
            content = "<p>None.</p>" if number == 1 else ""
        elif s == "failed":
            content = (f'<table><thead><tr><th>input</th><th>reason</th></tr></thead>'
                       f'<tbody>{"".join(items)}</tbody></table>')
        else:
            content = f'<div class="grid">{"".join(items)}</div>'
        page_note = f" — page {number} of {count}" if count > 1 else ""
        return (f'<section id="{s}"><h2>{esc(title)} ({len(lists[s])}){page_note}</h2>'
                f'<p>{intro[s]}</p>{pager(s, number, count)}{content}{pager(s, number, count)}</section>')

    title = f"pii-blur review: {report_url}"
    for s, section_title in SECTIONS:
        for number in range(2, len(pages[s]) + 1):
            body = section(s, section_title, number)
            _write_text(os.path.join(out_dir, page_name(s, number)), page_html(title, nav, body))
    body = summary_html(report, report_url) + "".join(section(s, t, 1) for s, t in SECTIONS)
    index = os.path.join(out_dir, "index.html")
    _write_text(index, page_html(title, nav, body))
    return index


def _write_text(path: str, text: str) -> None:
    """Write UTF-8 through a temporary file and a rename (never half a page)."""
    temp = f"{path}{storage.TEMP_MARKER}"
    with open(temp, "w", encoding="utf-8", errors="backslashreplace") as handle:
        handle.write(text)
    os.replace(temp, path)


# --------------------------------------------------------------------------
# Command line


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pii-blur review",
        description="Write a static HTML review page of a pii-blur report: summary, thumbnails of "
                    "the blurred outputs, near misses to check, failed files. Opens offline from "
                    "a file; contains only output (blurred) pixels.")
    parser.add_argument("report", metavar="REPORT", help="report path or fsspec URL (a .jsonl from a run)")
    parser.add_argument("out_dir", metavar="OUT_DIR", help="local folder for index.html and its assets")
    parser.add_argument("--page-size", type=int, default=200,
                        help="entries per page in each section (default: 200)")
    parser.add_argument("--rerun-threshold", type=int, default=None, metavar="N",
                        help="MIN_PERCENTAGE_PROBABILITY in the near misses' re-run commands, 1-100 "
                             "(default: per near miss, the highest that would blur it)")
    return parser


def main(argv: list[str]) -> int:
    """`pii-blur review REPORT OUT_DIR`. Returns 0, or 2 on bad arguments or an unreadable report."""
    parser = make_parser()
    args = parser.parse_args(argv)
    if args.page_size < 1:
        parser.error("--page-size must be at least 1")
    if args.rerun_threshold is not None and not 1 <= args.rerun_threshold <= 100:
        parser.error("--rerun-threshold must be between 1 and 100")
    try:
        index = build_review(args.report, args.out_dir, near_miss_rerun_threshold=args.rerun_threshold,
                             page_size=args.page_size)
    except (OSError, ValueError) as error:
        print(f"pii-blur review: error: {error}", file=sys.stderr)
        return 2
    print(f"pii-blur review: {index}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
