"""The command examples of the documentation, found and made small for the doc test.

Sources:

* every fenced block tagged ``bash``, ``sh`` or ``python`` in README.md and docs/*.md, and
  every indented (4-space) block there whose first line starts with ``cloud3d`` or ``python``;
* every line of a command's ``--help`` that starts with ``cloud3d`` (its examples), with the
  lines a trailing ``\\`` continues.

Markers, on the last non-blank line before a block (visible in the rendered page):

* ``*Not run by the doc test: REASON.*`` -- the block is skipped, by name, with REASON (GPU
  only, hours, installs system packages, a dated study on the author's data...);
* ``*Run by the doc test once the bundled model `NAME` ships.*`` -- skipped while
  ``cloud3d models`` does not list NAME, run as soon as it does.

Small scale: :func:`small_scale` rewrites each command by the fixed rules of :data:`RULES` (in
order; each says why), so a block runs in seconds on the test's frames. Nothing else in a block
is changed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SKIP_MARK = re.compile(r"^\*Not run by the doc test: (.+?)\.?\*$")
MODEL_MARK = re.compile(r"^\*Run by the doc test once the bundled model `([\w.-]+)` ships\.\*$")


@dataclass
class Block:
    """One example: where it is, its language (``bash`` or ``python``) and text."""

    source: str  # "README.md", "docs/models.md" or "help: cloud3d train"
    line: int
    lang: str
    text: str
    skip: str | None = None  # reason, from a marker
    needs_model: str | None = None

    @property
    def name(self) -> str:
        return f"{self.source}:{self.line}"


def _marker(lines: list[str], start: int) -> tuple[str | None, str | None]:
    k = start - 1
    while k >= 0 and not lines[k].strip():
        k -= 1
    prev = lines[k].strip() if k >= 0 else ""
    if m := SKIP_MARK.match(prev):
        return m.group(1), None
    if m := MODEL_MARK.match(prev):
        return None, m.group(1)
    return None, None


def doc_blocks(path: Path) -> list[Block]:
    """The runnable blocks of one Markdown file, in order."""
    rel = path.relative_to(ROOT).as_posix()
    lines = path.read_text().split("\n")
    out, i = [], 0
    while i < len(lines):
        fence = re.match(r"^```(\w*)\s*$", lines[i])
        if fence:
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            lang = {"bash": "bash", "sh": "bash", "python": "python"}.get(fence.group(1))
            if lang:
                out.append(Block(rel, i + 1, lang, "\n".join(lines[i + 1 : j]), *_marker(lines, i)))
            i = j + 1
            continue
        if (lines[i].startswith("    ") and (i == 0 or not lines[i - 1].strip())
                and re.match(r"(cloud3d|python) ", lines[i][4:])):
            j = i
            while j < len(lines) and (lines[j].startswith("    ") or not lines[j].strip()):
                j += 1
            body = "\n".join(x[4:] for x in lines[i:j]).rstrip()
            out.append(Block(rel, i + 1, "bash", body, *_marker(lines, i)))
            i = j
            continue
        i += 1
    return out


def help_blocks() -> list[Block]:
    """Each ``cloud3d ...`` example line (with its continuations) of every command's help."""
    import click

    from cloud3d.cli import cli

    out: list[Block] = []

    def walk(group: click.Group, prefix: list[str]) -> None:
        for name, cmd in sorted(group.commands.items()):
            full = [*prefix, name]
            lines = (cmd.help or "").split("\n")
            i = 0
            while i < len(lines):
                if lines[i].strip().startswith("cloud3d "):
                    j = i
                    while lines[j].rstrip().endswith("\\") and j + 1 < len(lines):
                        j += 1
                    text = "\n".join(x.strip() for x in lines[i : j + 1])
                    out.append(Block("help: cloud3d " + " ".join(full), i + 1, "bash", text))
                    i = j
                i += 1
            if isinstance(cmd, click.Group):
                walk(cmd, full)

    walk(cli, [])
    return out


def _first_two(m: re.Match) -> str:
    return m.group(1) + ",".join(m.group(2).split(",")[:2])


#: (pattern, replacement, why), applied in order to each block's text
RULES: list[tuple[str, object, str]] = [
    (r"\\\n\s*", "", "join continued lines"),
    (r"\.venv/bin/python\b", "python", "the test's interpreter"),
    (r"~/data/cloud3d-original", "original", "a dataset without manifest.csv stands for the original"),
    (r"(/work/data/dataset|data/cloud3d|DATASET_DIR)\b", "dataset",
     "the dataset placeholders are the test's dataset"),
    (r"(?<![\w/.-])benchmarks/", f"{ROOT}/benchmarks/", "benchmark scripts are the checkout's"),
    (r"(?<![\w/.-])data/", "dataset/", "data/ is the test's dataset"),
    (r"DIV2K_train_HR", "photos", "a few test images stand in for DIV2K"),
    (r"(?m)^(?!.*(?:capture|record\()).*$", lambda m: re.sub(r"(?<!\w)1080p\b", "216p", re.sub(
        r"(?<!\w)720p\b", "144p", m.group(0))),
     "dataset groups are 384x216 (216p) and 256x144 (144p) in the test; capture lines keep theirs"),
    (r"(--count[ =]|count=)(\d+)", lambda m: m.group(1) + str(min(int(m.group(2)), 16)),
     "at most 16 frames per capture"),
    (r"(--duration )\d+", r"\g<1>1", "1 s per timed capture"),
    (r"((?:[\s:;\"'](?:q|qp|crf)=|--crf |--qp ))([\d,]+)", _first_two, "two qualities per codec"),
    (r"(--workers )\d+", r"\g<1>2", "at most 2 worker processes"),
    (r"(cloud3d bench (?!-)[^\n#]*)", r"\g<1> --limit 1 ", "bench: one image per group"),
    (r"(cloud3d bench-video [^\n#]*)", r"\g<1> --max-frames 2 ", "bench-video: two frames"),
    (r"(cloud3d train [^\n#]*)", r"\g<1> --steps 20 --crop 64 --batch 1 --val-every 10 "
     r"--val-images 1 --threads 1 ", "train: 20 steps on 64 px crops"),
    (r"(cloud3d crops [^\n#]*--size )\d+", r"\g<1>64", "crops of 64 px"),
    (r"(cloud3d lap [^\n#]*)", r"\g<1> --steps 3 --crop 64 --batch 1 --val-frames 1 --threads 1 "
     r"--bundle-dir lap-bundles ", "lap: 3 steps on 64 px crops, weights kept outside the package"),
    (r"(cloud3d models study [^\n#]*)", r"\g<1> --limit 1 ", "study: one image per group"),
    (r"--train \d+ --val \d+ --test \d+", "--train 12 --val 2 --test 2", "split 16 frames"),
    (r"train=\d+, val=\d+, test=\d+", "train=12, val=2, test=2, scale_counts=True",
     "build_splits: as the split rule above ..."),
    (r"\bblock=\d+", "block=2", "... in blocks of 2 frames"),
    (r"(--frames )\d+", r"\g<1>2", "benchmarks: 2 frames ..."),
    (r"(--repeat )\d+", r"\g<1>1", "... and 1 repeat"),
    (r"(--overfit |overfit=)\d+", r"\g<1>3", "3 overfitting steps"),
    (r"(cloud3d split [^\n#]*)", r"\g<1> --scale-counts --block 2 --guard 0 ",
     "split: the split's ratio on fewer frames, in blocks of 2 frames (the test's captures last seconds)"),
]


def small_scale(text: str) -> str:
    """``text`` rewritten by :data:`RULES`."""
    for pattern, repl, _why in RULES:
        text = re.sub(pattern, repl, text)
    return text
