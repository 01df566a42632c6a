"""Every committed notebook follows the skeleton: question first, literal parameters, executed."""

import ast
import json

import pytest

from resonance import paths
from resonance.notebooks import notebook_paths

NOTEBOOKS = notebook_paths()


def _cells(path):
    return json.loads(path.read_text())["cells"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_skeleton(path):
    cells = _cells(path)
    assert cells[0]["cell_type"] == "markdown", "start with the question in markdown"
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged `parameters`"
    for node in ast.parse("".join(tagged[0]["source"])).body:
        assert isinstance(node, ast.Assign), "the parameters cell holds assignments only"
        ast.literal_eval(node.value)  # literals only: derived values go in the next cell
    assert "profile" in "".join(tagged[0]["source"])
    code = [c for c in cells if c["cell_type"] == "code"]
    assert all(c.get("execution_count") for c in code), "commit notebooks executed"
    source = "".join("".join(c["source"]) for c in code)
    assert "sys.path" not in source, "import the installed package, no sys.path tricks"
    for c in code:
        for output in c.get("outputs", []):
            assert output.get("output_type") != "error", "a committed cell failed"
            assert output.get("name") != "stderr", "silence warnings and progress bars"


def test_notebooks_and_findings_match_both_ways():
    """Every notebook is a finding of ``resonance.paper.FINDINGS`` (in its reading order), and a
    finding with committed results or a paper section has its notebook: deleting or renaming a
    notebook fails here. Findings still planned (no notebook, results nor section) may wait."""
    from resonance.paper import FINDINGS

    planned = [f.notebook for f in FINDINGS]
    numbers = [int(name[:2]) for name in planned]
    assert numbers == sorted(set(numbers)), "FINDINGS in reading order, one per number"
    on_disk = [p.stem for p in NOTEBOOKS]
    assert [n for n in on_disk if n not in planned] == [], "add new notebooks to FINDINGS"
    assert on_disk == [n for n in planned if n in on_disk]
    for finding in FINDINGS:
        if (paths.NOTEBOOKS / f"{finding.notebook}.ipynb").is_file():
            continue
        stray = [str(p.relative_to(paths.ROOT)) for p in
                 (paths.ROOT / "results" / finding.result,
                  paths.PAPERS / "sections" / f"{finding.notebook}.md.j2") if p.exists()]
        assert not stray, f"{finding.notebook}.ipynb is missing but {stray} exist"
