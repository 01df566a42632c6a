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


def test_notebooks_are_numbered_without_gaps_or_duplicates():
    numbers = [int(p.name[:2]) for p in NOTEBOOKS]
    assert numbers == sorted(set(numbers))
    assert paths.NOTEBOOKS.is_dir()
