"""The conda environment files and pyproject.toml list the same runtime dependencies (names and lower
bounds): envs/facesets.yaml the runtime ones, envs/clip.yaml those plus the `clip` extra. A dependency may
sit among the conda packages or under `pip:`."""
import re
import tomllib

import pytest
import yaml
from conftest import REPO

NOT_PACKAGES = {"python", "pip"}  # the interpreter and the installer, not dependencies of the package
_REQ = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(.*)$")


def _name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503 normalisation


def _requirement(spec: str) -> tuple[str, str | None]:
    """(normalised name, lower bound or None) of 'name>=1.2', 'name >=1.2,<2', 'name=1.2' (conda) ..."""
    m = _REQ.match(spec.split(";")[0].split("#")[0])
    assert m, f"cannot read the requirement {spec!r}"
    name, rest = m.groups()
    lower = re.search(r">=\s*([^,\s]+)", rest) or re.fullmatch(r"={1,2}\s*([^,\s*]+)", rest.strip())
    return _name(name), lower.group(1) if lower else None


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def _conda(env: str) -> tuple[dict[str, str | None], list[str]]:
    """The requirements an env file lists (conda packages and its pip list), and the pip lines that
    install a local path (`-e ..[extra]`)."""
    data = yaml.safe_load((REPO / "envs" / env).read_text(encoding="utf-8"))
    reqs, local = {}, []
    for dep in data["dependencies"]:
        lines = dep["pip"] if isinstance(dep, dict) else [dep]
        for line in lines:
            if line.startswith(("-e", ".", "/")):
                local.append(line)
                continue
            name, lower = _requirement(line)
            if name not in NOT_PACKAGES:
                assert name not in reqs, f"envs/{env}: {name} listed twice"
                reqs[name] = lower
    return reqs, local


def _expected(extras: list[str]) -> dict[str, str | None]:
    project = _pyproject()
    specs = list(project["dependencies"])
    for extra in extras:
        specs += project["optional-dependencies"][extra]
    return dict(_requirement(s) for s in specs)


@pytest.mark.parametrize("env, extras, install", [
    ("facesets.yaml", [], "-e .."),
    ("clip.yaml", ["clip"], "-e ..[clip]"),
])
def test_env_file_lists_the_pyproject_dependencies(env, extras, install):
    have, local = _conda(env)
    want = _expected(extras)
    assert have == want, (f"envs/{env} and pyproject.toml disagree: only in the env file "
                          f"{ {k: v for k, v in have.items() if want.get(k, '?') != v} }, only in pyproject "
                          f"{ {k: v for k, v in want.items() if have.get(k, '?') != v} }")
    assert local == [install]  # and the package itself, with the same extras


def test_every_runtime_dependency_has_a_lower_bound():
    assert all(lower for lower in _expected([]).values()), _expected([])


def test_requirement_reader():
    assert _requirement("Jinja2>=3.1") == ("jinja2", "3.1")
    assert _requirement("open_clip_torch >=2.24,<3") == ("open-clip-torch", "2.24")
    assert _requirement("numpy=1.26") == ("numpy", "1.26")  # conda's pin
    assert _requirement("python=3.11") == ("python", "3.11")
    assert _requirement("pip") == ("pip", None)
    assert _requirement("pillow>=11.3  # comment") == ("pillow", "11.3")
