"""Open anywhere: Binder, Colab and a plain installed package.

* ``environment.yml`` (conda, Binder) and ``pyproject.toml`` (pip, Colab, ``make``) name the same dependencies with
  the same bounds, so the two cannot drift;
* the repository's address is written in one authoritative place, ``[project.urls] Repository`` in
  ``pyproject.toml``; every chapter's Colab cell and the README's Binder and Colab badges agree with it;
* Binder's ``postBuild`` exists and is executable, and the chapters default to the ``quick`` profile;
* one chapter runs in a fresh virtual environment that holds only the package installed from (a copy of) the
  working tree, from a folder outside the checkout: its outputs land in that folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import jupytext
import nbformat
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

PROJECT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((PROJECT / "pyproject.toml").read_text())
README = (PROJECT / "README.md").read_text()
CHAPTERS = sorted((PROJECT / "notebooks").glob("[0-9][0-9]_*.py"))

# --------------------------------------------------------------------------------------------------------------
# environment.yml <-> pyproject.toml
# --------------------------------------------------------------------------------------------------------------

# Conda (conda-forge) package names that differ from the pip distribution they stand for. Every other conda name is
# taken to be the pip name (after PEP 503 normalisation). Add a line here when a dependency's names differ.
CONDA_TO_PIP = {
    "pytorch-cpu": "torch",  # conda-forge's CPU build of PyTorch
    "pytorch": "torch",
}
# Conda entries that are the environment itself, not dependencies of the package.
CONDA_ONLY = {"python", "pip"}
# The extras that environment.yml installs besides the core dependencies; `stats` (rliable) is left to pip.
CONDA_EXTRAS = ("notebooks", "lab", "gym", "agents", "test")

_CONDA_SPEC = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*?)\s*$")


def _pip_requirements() -> dict[str, SpecifierSet]:
    """Name -> specifier over the core dependencies and the extras of CONDA_EXTRAS; a name listed twice (in two
    extras, say) must carry the same bounds each time."""
    project = PYPROJECT["project"]
    lines = list(project["dependencies"])
    for extra in CONDA_EXTRAS:
        lines += project["optional-dependencies"][extra]
    found: dict[str, SpecifierSet] = {}
    for line in lines:
        req = Requirement(line)
        name = canonicalize_name(req.name)
        assert found.get(name, req.specifier) == req.specifier, f"pyproject.toml gives {name} two sets of bounds"
        found[name] = req.specifier
    return found


def _conda_requirements() -> dict[str, SpecifierSet]:
    """Name (mapped to pip's) -> specifier over environment.yml's conda and pip dependencies."""
    env = yaml.safe_load((PROJECT / "environment.yml").read_text())
    found: dict[str, SpecifierSet] = {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict):  # the `pip:` section: real requirements, no local paths
            for line in dep.get("pip", []):
                assert not line.lstrip().startswith(("-e", ".", "/")), (
                    f"environment.yml installs {line!r}: the package is installed by postBuild, so that Binder can "
                    "build the environment before it copies the repository"
                )
                req = Requirement(line)
                found[canonicalize_name(req.name)] = req.specifier
            continue
        name, spec = _CONDA_SPEC.match(dep).groups()
        if name in CONDA_ONLY:
            continue
        name = canonicalize_name(CONDA_TO_PIP.get(name, name))
        assert name not in found, f"environment.yml lists {name} twice"
        found[name] = SpecifierSet(spec.replace(" ", ""))
    return found


def test_environment_yml_and_pyproject_name_the_same_dependencies_and_bounds():
    pip, conda = _pip_requirements(), _conda_requirements()
    assert sorted(conda) == sorted(pip), (
        f"only in pyproject.toml: {sorted(set(pip) - set(conda))}; only in environment.yml: "
        f"{sorted(set(conda) - set(pip))} (conda names that differ from pip's belong in CONDA_TO_PIP)"
    )
    differ = {name: (str(pip[name]), str(conda[name])) for name in pip if pip[name] != conda[name]}
    assert not differ, f"bounds differ (pyproject.toml, environment.yml): {differ}"
    for name, spec in pip.items():  # every dependency has a lower bound
        assert any(s.operator in (">=", "==", "~=") for s in spec), f"{name} has no lower bound"


def test_environment_yml_pins_python_and_uses_conda_forge_cpu_pytorch():
    env = yaml.safe_load((PROJECT / "environment.yml").read_text())
    assert env["channels"] == ["conda-forge"]
    assert any(isinstance(d, str) and re.fullmatch(r"python=3\.\d+", d) for d in env["dependencies"])
    assert any(isinstance(d, str) and d.startswith("pytorch-cpu") for d in env["dependencies"])


def test_the_drift_check_catches_a_drift(tmp_path, monkeypatch):
    """The check above compares what it should: a changed bound or a missing package is caught."""
    text = (PROJECT / "environment.yml").read_text()
    assert "numpy>=1.24" in text
    monkeypatch.setattr(sys.modules[__name__], "PROJECT", tmp_path)
    (tmp_path / "environment.yml").write_text(text.replace("numpy>=1.24", "numpy>=1.20"))
    with pytest.raises(AssertionError, match="numpy"):
        test_environment_yml_and_pyproject_name_the_same_dependencies_and_bounds()
    (tmp_path / "environment.yml").write_text(text.replace("  - tqdm>=4.60\n", ""))
    with pytest.raises(AssertionError, match="tqdm"):
        test_environment_yml_and_pyproject_name_the_same_dependencies_and_bounds()


# --------------------------------------------------------------------------------------------------------------
# the repository's address: pyproject.toml, the Colab cells, the README's badges
# --------------------------------------------------------------------------------------------------------------

REPOSITORY = PYPROJECT["project"]["urls"]["Repository"]
_GITHUB = re.fullmatch(r"https://github\.com/([A-Za-z0-9_.\-]+)/([A-Za-z0-9_.\-]+)", REPOSITORY)
# The Colab cell, word for word; only the extras may differ from one chapter to another. It installs no Jupyter
# packages: Colab has its own, and upgrading its ipykernel can break the runtime.
COLAB_CELL = (
    "# On Colab, install the package first (does nothing anywhere else).\n"
    "import sys\n"
    "\n"
    'if "google.colab" in sys.modules:\n'
    "    import subprocess\n"
    "\n"
    '    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "hybridrl{extras} @ git+{url}"], check=True)'
)


def binder_url(stem: str) -> str:
    owner, repo = _GITHUB.groups()
    return f"https://mybinder.org/v2/gh/{owner}/{repo}/HEAD?labpath=notebooks%2F{stem}.ipynb"


def colab_url(stem: str) -> str:
    owner, repo = _GITHUB.groups()
    return f"https://colab.research.google.com/github/{owner}/{repo}/blob/main/notebooks/{stem}.ipynb"


def test_the_repository_is_a_github_address_in_pyproject():
    assert _GITHUB, f"[project.urls] Repository must be https://github.com/<owner>/<repo>, not {REPOSITORY!r}"


def test_there_are_chapters():
    assert {"00_overview", "90_benchmarks"} <= {p.stem for p in CHAPTERS}


@pytest.mark.parametrize("source", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_first_code_cell_installs_the_package_on_colab(source):
    cells = jupytext.read(source).cells
    assert cells[0].cell_type == "markdown" and cells[0].source.startswith("# "), "a chapter opens with its title"
    code = [i for i, c in enumerate(cells) if c.cell_type == "code"]
    assert code and code[0] == 1, f"{source.name}: the Colab cell comes right after the title"
    cell = cells[1].source
    match = re.search(r'"hybridrl(\[[^\]]*\])? @ git\+([^"]*)"', cell)
    assert match, f"{source.name}: the first code cell is not the Colab cell:\n{cell}"
    extras, url = match.groups()
    extras = extras or ""
    assert url == REPOSITORY, f"{source.name} installs from {url}, pyproject.toml says {REPOSITORY}"
    assert cell == COLAB_CELL.format(extras=extras, url=REPOSITORY), f"{source.name}: the Colab cell differs:\n{cell}"
    names = [e.strip() for e in extras.strip("[]").split(",") if e.strip()]
    assert set(names) <= set(PYPROJECT["project"]["optional-dependencies"]) - {"notebooks", "lab", "test"}, names
    assert "torch" not in cell.lower(), "never pin PyTorch: Colab's CUDA build must stay"
    parameters = [i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", [])]
    assert parameters and parameters[0] > 1, f"{source.name}: the Colab cell comes before the parameters cell"


@pytest.mark.parametrize("source", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_defaults_to_the_quick_profile(source):
    """What Binder (and Colab) runs without any change."""
    (cell,) = [c for c in jupytext.read(source).cells if "parameters" in c.metadata.get("tags", [])]
    assert re.search(r'^profile = "quick"', cell.source, re.MULTILINE), cell.source


@pytest.mark.parametrize("source", CHAPTERS, ids=lambda p: p.stem)
def test_readme_has_binder_and_colab_badges_for_every_chapter(source):
    assert f"({binder_url(source.stem)})" in README, f"README: no Binder badge for {source.stem}"
    assert f"({colab_url(source.stem)})" in README, f"README: no Colab badge for {source.stem}"


def test_no_other_address_of_this_repository_in_readme_or_notebooks():
    """Every Binder or Colab link, and every `git+` install, names the repository of pyproject.toml (links to other
    projects' repositories are fine)."""
    owner, repo = _GITHUB.groups()
    pattern = re.compile(
        r"(?:git\+https://github\.com|mybinder\.org/v2/gh|colab\.research\.google\.com/github)"
        r"/([A-Za-z0-9_.\-]+)/([A-Za-z0-9_\-]+(?:\.[A-Za-z0-9_\-]+)*)"
    )
    texts = {"README.md": README}
    texts.update({p.name: p.read_text() for p in (PROJECT / "notebooks").glob("[0-9][0-9]_*.*")})
    seen = 0
    for name, text in texts.items():
        for found in pattern.finditer(text):
            seen += 1
            assert found.groups() == (owner, repo), f"{name} links to {found.group(0)}, not to {REPOSITORY}"
    assert seen >= 2 * len(CHAPTERS)


def test_binder_postbuild_installs_the_package_and_opens_py_files_as_notebooks():
    post = PROJECT / "postBuild"
    assert post.is_file() and os.access(post, os.X_OK), "postBuild must exist and be executable"
    text = post.read_text()
    assert text.startswith("#!/bin/bash\n") and "set -euo pipefail" in text
    assert re.search(r"pip install .*--no-deps.* -e \.", text), "postBuild installs the package (deps from conda)"
    assert "jupytext-config" in text and "set-default-viewer python" in text


# --------------------------------------------------------------------------------------------------------------
# a fresh virtual environment, the package installed from the working tree, run outside the checkout
# --------------------------------------------------------------------------------------------------------------

_CHECK = "FRESH-VENV-CHECK "
_KERNEL = "hybridrl-fresh-venv"


@pytest.mark.fresh_venv
def test_a_chapter_runs_in_a_fresh_venv_and_writes_into_the_working_directory(tmp_path):
    """00_overview (smoke) in a new venv holding only `pip install <copy of the tree>[notebooks]` (+ the CPU
    PyTorch wheel), run by papermill with that venv's kernel from a folder outside the checkout, HYBRIDRL_ROOT unset:
    the figure lands in <cwd>/paper/figures/ and the kernel imports the installed package, not the checkout."""
    started = time.time()
    assert not tmp_path.resolve().is_relative_to(PROJECT)
    # a copy of the working tree: what `pip install git+<repository>` would build (tracked or not, as it stands)
    tree = tmp_path / "tree"
    tree.mkdir()
    for name in ["pyproject.toml", "README.md"]:
        shutil.copy2(PROJECT / name, tree / name)
    shutil.copytree(PROJECT / "hybridrl", tree / "hybridrl", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    venv = tmp_path / "venv"
    python = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items()
           if k not in {"HYBRIDRL_ROOT", "HYBRIDRL_DATA", "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"}}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", MPLBACKEND="Agg",
               JUPYTER_DATA_DIR=str(tmp_path / "jupyter-data"), JUPYTER_CONFIG_DIR=str(tmp_path / "jupyter-config"))

    work = tmp_path / "work"  # the user's folder: outside the checkout, empty; every command runs there
    work.mkdir()

    def run(*args, timeout):
        done = subprocess.run([str(a) for a in args], cwd=work, env=env, capture_output=True, text=True,
                              timeout=timeout)
        assert done.returncode == 0, f"{args}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return done
    run(sys.executable, "-m", "venv", venv, timeout=120)
    # torch==2.13.0 is the CPU wheel here (Makefile's default); nothing else but the package and its extra
    run(python, "-m", "pip", "install", "-q", "torch==2.13.0", f"{tree}[notebooks]", timeout=600)
    installed = time.time()
    # the kernel: this venv's python, under a name no other kernelspec on the machine can shadow
    run(python, "-m", "ipykernel", "install", "--sys-prefix", "--name", _KERNEL, timeout=60)
    spec = json.loads((venv / "share" / "jupyter" / "kernels" / _KERNEL / "kernel.json").read_text())
    assert Path(spec["argv"][0]) == python

    # the chapter as a notebook, plus one last cell that reports where the package and the outputs are
    notebook = jupytext.read(PROJECT / "notebooks" / "00_overview.py")
    notebook.cells.append(nbformat.v4.new_code_cell(
        "import json as _json, sys as _sys\nimport hybridrl as _h\nfrom hybridrl import paths as _p\n"
        f"print({_CHECK!r} + _json.dumps(dict(package=_h.__file__, executable=_sys.executable, "
        "prefix=_sys.prefix, root=str(_p.ROOT), figures=str(_p.FIGURES), checkout=str(_p.CHECKOUT))))"
    ))
    staged, executed = tmp_path / "00_overview.input.ipynb", tmp_path / "00_overview.ipynb"
    jupytext.write(notebook, staged)
    run(python, "-m", "papermill", staged, executed, "-p", "profile", "smoke", "-k", _KERNEL, "--cwd", work,
        "--no-progress-bar", timeout=300)
    finished = time.time()

    figure = work / "paper" / "figures" / "overview_base_stock_fit.png"
    assert figure.is_file() and figure.stat().st_size > 1000, sorted(str(p) for p in work.rglob("*"))
    outputs = [o.get("text", "") for c in nbformat.read(executed, as_version=4).cells if c.cell_type == "code"
               for o in c.get("outputs", []) if o.get("output_type") == "stream"]
    (line,) = [x for out in outputs for x in out.splitlines() if x.startswith(_CHECK)]
    seen = json.loads(line[len(_CHECK):])
    assert Path(seen["package"]).resolve().is_relative_to(venv.resolve()), seen  # the installed copy
    assert not Path(seen["package"]).resolve().is_relative_to(PROJECT), seen  # not the checkout
    assert Path(seen["prefix"]).resolve() == venv.resolve(), seen  # the kernel is this venv's python
    assert seen["checkout"] == "None" and Path(seen["root"]) == work.resolve(), seen
    assert Path(seen["figures"]) == work.resolve() / "paper" / "figures", seen
    print(f"fresh venv: install {installed - started:.0f} s, kernel and run {finished - installed:.0f} s, "
          f"total {finished - started:.0f} s")


def test_data_folder_follows_hybridrl_data_else_the_root(tmp_path):
    code = "from hybridrl import paths; print(paths.ROOT); print(paths.DATA)"
    env = {k: v for k, v in os.environ.items() if k not in {"HYBRIDRL_ROOT", "HYBRIDRL_DATA"}}
    env["HYBRIDRL_ROOT"] = str(tmp_path / "root")
    root, data = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                check=True).stdout.split()
    assert Path(data) == Path(root) / "data" == (tmp_path / "root").resolve() / "data"
    env["HYBRIDRL_DATA"] = str(tmp_path / "elsewhere")
    _, data = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                             check=True).stdout.split()
    assert Path(data) == (tmp_path / "elsewhere").resolve()


def test_limit_heap_growth_applies_on_glibc_and_can_be_switched_off(monkeypatch):
    """The grids fix glibc's mmap / trim thresholds so that freed tensors go back to the system (README, memory)."""
    import platform
    import sys

    from hybridrl import experiments

    monkeypatch.setenv("HYBRIDRL_KEEP_MALLOC", "1")
    assert experiments.limit_heap_growth() is False
    monkeypatch.delenv("HYBRIDRL_KEEP_MALLOC")
    if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
        assert experiments.limit_heap_growth() is True
