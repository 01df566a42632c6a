"""Render the write-up and the README's table of findings from ``results/``.

``papers/paper.md.j2`` is a Jinja2 template; every number in it is written as
``{{ cite("01_scale", "headline_key", ".3f") }}``, which reads ``meta.json`` of the paper-profile
result and formats it; ``meta("01_scale")`` gives the whole dict for conditional wording
(a verdict sentence chosen by the data, not typed). Nothing is typed in: ``make paper`` rewrites ``papers/paper.md`` and the
block of ``README.md`` between the FINDINGS markers, and ``tests/test_paper.py`` fails when either
differs from a fresh rendering.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import jinja2

from . import paths, store

TEMPLATE = "paper.md.j2"
README_BEGIN = "<!-- FINDINGS:BEGIN (rendered by `make paper`; do not edit) -->"
README_END = "<!-- FINDINGS:END -->"
TIMES_BEGIN = "<!-- TIMES:BEGIN (rendered by `make paper` from provenance.json; do not edit) -->"
TIMES_END = "<!-- TIMES:END -->"


@dataclass(frozen=True)
class Finding:
    notebook: str
    question: str
    result: str  # name of the result folder whose meta.json holds a "headline"


FINDINGS = (
    Finding("00_tour", "What does resonance mean here, and how is each measure used?", "00_tour"),
    Finding("01_scale", "Does resonance depend on model size, and do medium models resonate "
            "with large ones?", "01_scale"),
    Finding("02_architecture", "Do architectures differ in topology yet resonate on semantics?",
            "02_architecture"),
    Finding("03_cross_modal", "Do text and vision models resonate?", "03_cross_modal"),
    Finding("04_resonance_transformer", "Is the Resonance Transformer \"60 % smarter\"?",
            "04_resonance_transformer"),
    Finding("05_semantic_routing", "Does cosine-anchor (semantic resonance) routing beat "
            "linear routing?", "05_semantic_routing"),
    Finding("06_linear_steering", "Do linear maps between models carry steering vectors?",
            "06_linear_steering"),
    Finding("07_finetuning_topology", "Does topology change mostly early in fine-tuning?",
            "07_finetuning_topology"),
    Finding("08_measure_trust", "How far can each measure be trusted?", "08_measure_trust"),
    Finding("09_model_use", "Does resonance help choose, combine and distil models?",
            "09_model_use"),
)


class Citations:
    """Formats cited numbers and remembers each citation (source, key, text)."""

    def __init__(self, profile: str = "paper"):
        self.profile = profile
        self.cited: list[tuple[str, str, str]] = []

    def meta(self, result: str) -> dict | None:
        try:
            return store.load(result, self.profile).meta
        except FileNotFoundError:
            return None

    def __call__(self, result: str, key: str, fmt: str = "") -> str:
        meta = self.meta(result)
        if meta is None:
            raise KeyError(f"the paper cites {result}/{key}, but results/{result}/{self.profile} "
                           "does not exist; run its notebook (or `make reproduce`) first")
        if key not in meta:
            raise KeyError(f"results/{result}/{self.profile}/meta.json has no {key!r}; "
                           f"it has {sorted(meta)}")
        text = "n/a" if meta[key] is None else format(meta[key], fmt)
        self.cited.append((result, key, text))
        return text


def render_paper(profile: str = "paper") -> tuple[str, Citations]:
    cite = Citations(profile)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(paths.PAPERS),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    text = env.get_template(TEMPLATE).render(cite=cite, meta=cite.meta,
                                             has_result=lambda r: cite.meta(r) is not None)
    return text, cite


def render_findings_table(profile: str = "paper") -> str:
    cite = Citations(profile)
    rows = ["| notebook | question | headline result |", "|---|---|---|"]
    for finding in FINDINGS:
        exists = (paths.NOTEBOOKS / f"{finding.notebook}.ipynb").exists()
        meta = cite.meta(finding.result) if exists else None
        if not exists:
            headline = "*not written yet*"
        elif meta is None or "headline" not in meta:
            headline = "*not computed yet: `make reproduce`*"
        else:
            headline = meta["headline"]
        link = f"[`{finding.notebook}`](notebooks/{finding.notebook}.ipynb)" if exists \
            else f"`{finding.notebook}`"
        rows.append(f"| {link} | {finding.question} | {headline} |")
    return "\n".join(rows)


def render_times_table(profile: str = "paper") -> str:
    """Each notebook's compute at ``profile`` as its result's ``provenance.json`` records it:
    wall time, CPU time (user + sys, where recorded), torch threads and when it ran."""
    rows = ["| notebook | wall (min) | CPU (min) | torch threads | computed |",
            "|---|---:|---:|---:|---|"]
    wall_total, cpu_total = 0.0, 0.0
    for finding in FINDINGS:
        try:
            info = store.load(finding.result, profile).provenance
        except FileNotFoundError:
            rows.append(f"| `{finding.notebook}` | *not computed yet* | | | |")
            continue
        wall, cpu = info.get("wall_time_s"), info.get("cpu_time_s")
        wall_total += wall or 0.0
        cpu_total += cpu or 0.0
        threads = (info.get("numerics") or {}).get("torch_threads", "")
        rows.append(f"| `{finding.notebook}` | {wall / 60:.1f} | "
                    f"{'—' if cpu is None else f'{cpu / 60:.1f}'} | {threads} | "
                    f"{str(info.get('created', ''))[:10]} |")
    cpu_text = f"{cpu_total / 60:.1f} (where recorded)" if cpu_total else "—"
    rows.append(f"| all | {wall_total / 60:.1f} | {cpu_text} | | |")
    return "\n".join(rows)


def _between(text: str, begin: str, end: str, block: str) -> str:
    if begin not in text or end not in text:
        raise ValueError(f"README.md lacks the markers {begin!r} … {end!r}")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{begin}\n{block}\n{end}{tail}"


def readme_with_findings(readme: str, table: str) -> str:
    return _between(readme, README_BEGIN, README_END, table)


def readme_with_times(readme: str, table: str) -> str:
    return _between(readme, TIMES_BEGIN, TIMES_END, table)


def main() -> int:
    text, cite = render_paper()
    out = paths.PAPERS / "paper.md"
    with store.atomic_path(out) as tmp:
        tmp.write_text(text)
    readme = paths.ROOT / "README.md"
    updated = readme_with_findings(readme.read_text(), render_findings_table())
    updated = readme_with_times(updated, render_times_table())
    with store.atomic_path(readme) as tmp:
        tmp.write_text(updated)
    print(f"wrote {out.relative_to(paths.ROOT)} ({len(cite.cited)} cited numbers) and the "
          "README's findings table")
    return 0


if __name__ == "__main__":
    sys.exit(main())
