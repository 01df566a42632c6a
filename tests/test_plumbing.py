"""The house's habits: lazy public API, io re-exports, LICENSE/CITATION, make targets."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]


def test_import_resonance_is_light_and_the_public_api_resolves():
    code = ("import sys, time; t = time.perf_counter(); import resonance; "
            "print(time.perf_counter() - t); "
            "print(','.join(m for m in ('torch', 'numpy', 'pandas', 'sklearn', 'transformers') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out[1] == ""  # nothing heavy is imported by `import resonance`
    assert float(out[0]) < 1.0
    import resonance
    from resonance import activations, similarity, train

    for name in resonance.__all__:
        assert getattr(resonance, name) is not None, name
    assert resonance.extract is activations.extract
    assert resonance.similarity_matrix is similarity.similarity_matrix
    assert resonance.train is train  # a submodule keeps its name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        resonance.nope


def test_store_keeps_the_old_names_of_the_io_helpers(tmp_path):
    from resonance import io, store

    assert store.config_hash is io.config_hash and store.atomic_path is io.atomic_path
    store._write_json(tmp_path / "x.json", {"a": float("nan")})
    assert store._read_json(tmp_path / "x.json") == {"a": None}
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(store.CorruptResultError, match="bad.json is not valid JSON"):
        store._read_json(tmp_path / "bad.json")


def test_license_and_citation_match_pyproject():
    import yaml

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"]["text"] == "MIT"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert citation["license"] == "MIT" and citation["version"] == project["version"]
    assert citation["cff-version"] == "1.2.0" and citation["authors"]


def test_ruff_and_pre_commit_are_configured():
    import yaml

    ruff = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["ruff"]
    assert "F" in ruff["lint"]["select"]
    hooks = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())["repos"]
    assert any(h["id"] == "ruff" for repo in hooks for h in repo["hooks"])


def _git(folder: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(folder), *args], check=True, capture_output=True,
                   env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
                        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"})


@pytest.mark.skipif(not (shutil.which("git") and shutil.which("make")), reason="needs git, make")
def test_make_reproduce_refuses_a_dirty_tree(tmp_path):
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    (tmp_path / "code.py").write_text("x = 1\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-qm", "init")

    def check(**env):
        return subprocess.run(["make", "-s", "check-clean"], cwd=tmp_path, capture_output=True,
                              text=True, env={**os.environ, **env})

    assert check().returncode == 0
    (tmp_path / "untracked.txt").write_text("not code\n")
    assert check().returncode == 0  # untracked files are not the code
    (tmp_path / "code.py").write_text("x = 2\n")
    dirty = check()
    assert dirty.returncode != 0
    assert "ALLOW_DIRTY=1 make reproduce" in dirty.stderr and "code.py" in dirty.stderr
    assert check(ALLOW_DIRTY="1").returncode == 0
    dry = subprocess.run(["make", "-n", "reproduce"], cwd=ROOT, capture_output=True, text=True)
    assert "RESONANCE_GIT_COMMIT=" in dry.stdout


@pytest.mark.skipif(not shutil.which("make"), reason="needs make")
def test_make_lab_registers_a_kernel_named_resonance(tmp_path):
    dry = subprocess.run(["make", "-n", "lab"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    install = next(line for line in dry.splitlines() if "ipykernel install" in line)
    assert "jupyter lab" in dry
    subprocess.run(install, shell=True, cwd=ROOT, check=True,
                   env={**os.environ, "JUPYTER_DATA_DIR": str(tmp_path)})
    spec = (tmp_path / "kernels" / "resonance" / "kernel.json").read_text()
    assert str(ROOT / ".venv" / "bin" / "python") in spec or ".venv/bin/python" in spec


def test_readme_quick_start_uses_the_public_api_and_the_layout_matches_the_tree():
    import ast
    import re

    import resonance

    readme = (ROOT / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1]
    code = re.search(r"```python\n(.*?)```", quick, re.S).group(1)
    assert len(code.strip().splitlines()) <= 15
    imported = [a.name for node in ast.parse(code).body if isinstance(node, ast.ImportFrom)
                and node.module == "resonance" for a in node.names]
    assert imported and set(imported) <= set(resonance.__all__)
    assert resonance.load is resonance.zoo.load
    layout = readme.split("## Layout", 1)[1].split("```")[1]
    lib = ROOT / "lib" / "resonance"
    for package in ("zoo", "models", "experiments"):
        assert f"{package}/" in layout and (lib / package / "__init__.py").is_file(), package
    for module in re.findall(r"^  ([a-z_, ]+?)(?:/| {2,})", layout, re.M):
        for name in filter(None, (m.strip() for m in module.split(","))):
            assert (lib / f"{name}.py").is_file() or (lib / name).is_dir(), name
