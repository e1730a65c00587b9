"""Draw the pipeline's graph from Beam's own pipeline proto, as DOT and as SVG.

    python tools/pipeline_graph.py docs/pipeline   # writes docs/pipeline.dot and docs/pipeline.svg

The nodes are the steps of the card (the parts of AnonymizeImages, with
MatchImages before them and WriteReport after), the edges the PCollections
between them, both read from `pipeline.to_runner_api()`, so the picture
is the graph the runners get, not a drawing of it.
"""

from __future__ import annotations

import html
import sys
import time

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from pii_blur import pipeline
from pii_blur.config import BlurConfig

EXPANDED = ("Anonymize",)          # composites drawn as their parts
BOX_W, BOX_H, GAP_X, GAP_Y = 150, 34, 30, 34


def steps_and_edges() -> tuple[list[str], list[tuple[str, str]]]:
    args = pipeline.RunArgs(input="in", output="out", report="out/report.jsonl", config=BlurConfig(),
                            started_at=time.time())
    p = beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"]))
    pipeline.build(p, args)
    proto = p.to_runner_api()
    transforms = proto.components.transforms
    top = list(proto.root_transform_ids)
    while len(top) == 1 and transforms[top[0]].subtransforms:   # the pipeline's own root wrapper
        top = list(transforms[top[0]].subtransforms)
    steps = []
    for child in top:
        name = transforms[child].unique_name
        steps += list(transforms[child].subtransforms) if name in EXPANDED else [child]
    producers = {pcoll: step for step in steps for pcoll in transforms[step].outputs.values()}
    edges = sorted({(producers[pcoll], step) for step in steps for pcoll in transforms[step].inputs.values()
                    if pcoll in producers and producers[pcoll] != step})
    label = {step: transforms[step].unique_name.rsplit("/", 1)[-1] for step in steps}
    return [label[s] for s in steps], [(label[a], label[b]) for a, b in edges]


def dot(steps: list[str], edges: list[tuple[str, str]]) -> str:
    lines = ["digraph pii_blur {", "  rankdir=TB; node [shape=box, style=rounded];"]
    lines += [f'  "{a}" -> "{b}";' for a, b in edges]
    return "\n".join(lines + ["}"]) + "\n"


def svg(steps: list[str], edges: list[tuple[str, str]]) -> str:
    """Steps in rows by their longest path from the first step, edges as arrows."""
    level = {step: 0 for step in steps}
    for _ in steps:
        for a, b in edges:
            level[b] = max(level[b], level[a] + 1)
    rows: dict[int, list[str]] = {}
    for step in steps:
        rows.setdefault(level[step], []).append(step)
    widest = max(len(row) for row in rows.values())
    width = widest * (BOX_W + GAP_X) + GAP_X
    position = {}
    for depth, row in rows.items():
        left = (width - len(row) * (BOX_W + GAP_X) + GAP_X) / 2
        for index, step in enumerate(row):
            position[step] = (left + index * (BOX_W + GAP_X), GAP_Y + depth * (BOX_H + GAP_Y))
    height = GAP_Y + len(rows) * (BOX_H + GAP_Y)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
             f'font-family="sans-serif" font-size="13">',
             '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
             'orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>']
    for a, b in edges:
        (ax, ay), (bx, by) = position[a], position[b]
        parts.append(f'<line x1="{ax + BOX_W / 2:.0f}" y1="{ay + BOX_H:.0f}" x2="{bx + BOX_W / 2:.0f}" y2="{by:.0f}" '
                     'stroke="#555" marker-end="url(#arrow)"/>')
    for step, (x, y) in position.items():
        parts.append(f'<rect x="{x:.0f}" y="{y:.0f}" width="{BOX_W}" height="{BOX_H}" rx="8" fill="#eef3fb" '
                     f'stroke="#4a6fa5"/><text x="{x + BOX_W / 2:.0f}" y="{y + BOX_H / 2 + 4:.0f}" '
                     f'text-anchor="middle">{html.escape(step)}</text>')
    return "\n".join(parts + ["</svg>"]) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    steps, edges = steps_and_edges()
    with open(argv[1] + ".dot", "w", encoding="utf-8") as handle:
        handle.write(dot(steps, edges))
    with open(argv[1] + ".svg", "w", encoding="utf-8") as handle:
        handle.write(svg(steps, edges))
    print(" -> ".join(steps))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
