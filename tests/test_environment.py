"""environment.yml and pyproject.toml must name the same direct dependencies."""

import re
import tomllib

import yaml

from resonance import paths


def _name_and_spec(requirement: str) -> tuple[str, str]:
    match = re.match(r"^\s*([A-Za-z0-9_.\-]+)(\[[^\]]*\])?\s*(.*)$", requirement)
    return match.group(1).lower().replace("_", "-"), match.group(3).replace(" ", "")


def test_environment_mirrors_pyproject():
    project = tomllib.loads((paths.ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    wanted = dict(map(_name_and_spec, project["dependencies"] + extras["test"] + extras["sweep"]))
    env = yaml.safe_load((paths.ROOT / "environment.yml").read_text())
    pip_section = next(item["pip"] for item in env["dependencies"] if isinstance(item, dict))
    listed = dict(_name_and_spec(r) for r in pip_section if not r.startswith("-e"))
    assert set(listed) == set(wanted), f"only in environment.yml: {set(listed) - set(wanted)}; " \
                                       f"only in pyproject.toml: {set(wanted) - set(listed)}"
    for name, spec in wanted.items():
        if name == "torch":  # environment.yml pins the CPU build the Makefile installs
            assert listed[name] == "==2.13.0"
        else:
            assert listed[name] == spec, f"{name}: {listed[name]!r} vs pyproject {spec!r}"


def test_makefile_pins_the_cpu_torch():
    assert "torch==2.13.0" in (paths.ROOT / "Makefile").read_text()
