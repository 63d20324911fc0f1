"""The three places that name dependencies agree: pyproject.toml (ranges), constraints.txt
(exact pins that setup installs) and environment.yml (conda users)."""

import re
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]


# Extras that never enter the students' environment (environment.yml, make setup).
PEER_EXTRAS = ("bench",)


def pyproject_requirements(skip_extras: tuple[str, ...] = ()) -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    listed = project["dependencies"] + [d for name, extra in project["optional-dependencies"].items()
                                        if name not in skip_extras for d in extra]
    reqs = [Requirement(d) for d in listed]
    return {canonicalize_name(r.name): r for r in reqs if canonicalize_name(r.name) != "rlteach"}


def constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    return pins


def test_every_direct_dependency_is_pinned_within_its_range():
    pins = constraints()
    for name, req in pyproject_requirements().items():
        assert name in pins, f"{name} has no pin in constraints.txt"
        assert req.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} is outside {req.specifier}"


def test_torch_is_pinned_to_the_cpu_build_on_disk():
    assert constraints()["torch"] == "2.13.0"


def test_environment_yml_lists_the_same_dependencies_at_the_same_versions():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert "python=3.11" in env["dependencies"]
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    listed = {}
    for entry in pip_section:
        if entry.startswith("-e"):
            continue
        name, _extras, version = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[^\]]+\])?==(\S+)", entry).groups()
        listed[canonicalize_name(name)] = version
    assert "-e ." in pip_section
    assert set(listed) == set(pyproject_requirements(skip_extras=PEER_EXTRAS))
    pins = constraints()
    assert {name: pins[name] for name in listed} == listed


def test_the_benchmark_peers_stay_out_of_the_students_environment():
    """stable-baselines3 and sb3-contrib live in the bench extra only (make bench-peers, .venv-bench)."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    peers = {canonicalize_name(Requirement(d).name) for d in extras["bench"]}
    assert peers == {"stable-baselines3", "sb3-contrib"}
    for name in ("course", "dev"):
        assert not any(canonicalize_name(Requirement(d).name) in peers for d in extras[name]), name
    assert not any("bench" in d for d in extras["dev"] + extras["course"])
    assert not peers & set(pyproject_requirements(skip_extras=PEER_EXTRAS))
