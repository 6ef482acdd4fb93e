"""Run the notebooks headless, in reading order, to regenerate everything under ``paper/``.

``python -m hybridrl.pipeline reproduce --profile quick`` (what ``make reproduce`` calls) executes every
chapter ``notebooks/NN_*.py`` with papermill into ``build/notebooks/`` (executed notebooks are not committed),
passing the ``profile`` and ``force`` parameters, and the reproduction report last. The benchmark chapter
(``90_benchmarks``) is left to ``python -m hybridrl.pipeline bench`` (``make bench``): timings describe a
machine, not the papers. A failing chapter does not stop the others; the command exits non-zero at the end
and names it. A chapter whose data set is absent (the real-data chapter without ``HYBRIDRL_DATA``) stops at its
first cell with instructions, marks its tables "not run: data missing" and is reported as skipped, not failed.

The ``.py`` file is the source of each chapter: it is converted with jupytext at run time, so what runs is
what is reviewed. ``--plain`` runs the same ``.py`` files as Python scripts instead, with no Jupyter at all
(:func:`execute_script`), for machines that have PyTorch but not papermill or a kernel.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from . import paths
from ._config import check_int
from .experiments import check_profile

BENCHMARK = "90_benchmarks"
DATA_MISSING = "DataMissing"
"""A chapter that raises :class:`hybridrl.favorita.DataMissing` stopped early for lack of data: skipped, not failed."""
REPORT = "99_reproduction"


def chapters(directory: Path | None = None) -> list[Path]:
    """The chapter sources in reading order: ``NN_name.py``, benchmarks excluded, the report last."""
    directory = directory or paths.NOTEBOOKS
    found = sorted(p for p in directory.glob("[0-9][0-9]_*.py") if p.stem != BENCHMARK)
    return sorted(found, key=lambda p: (p.stem == REPORT, p.stem))


def execute(source: Path, parameters: dict, output_dir: Path | None = None, *, log_output: bool = False) -> Path:
    """Execute one chapter with papermill; returns the executed notebook's path.

    Only the parameters the chapter declares in its ``parameters`` cell are passed on.
    """
    import jupytext
    import papermill

    output_dir = output_dir or paths.EXECUTED
    output_dir.mkdir(parents=True, exist_ok=True)
    notebook = jupytext.read(source)
    staged = output_dir / f"{source.stem}.input.ipynb"
    jupytext.write(notebook, staged)
    declared = papermill.inspect_notebook(str(staged))
    if "profile" not in declared:
        raise ValueError(f"{source.name} has no `profile` in a cell tagged 'parameters'")
    parameters = {k: v for k, v in parameters.items() if k in declared}
    executed = output_dir / f"{source.stem}.ipynb"
    papermill.execute_notebook(
        str(staged), str(executed), parameters=parameters, kernel_name="python3", progress_bar=False,
        log_output=log_output, cwd=str(source.parent),
    )
    staged.unlink()
    return executed


class ChapterFailed(RuntimeError):
    """A chapter run as a plain script (:func:`execute_script`) raised ``ename``: ``evalue``."""

    def __init__(self, source: Path, ename: str, evalue: str):
        super().__init__(f"{source.name}: {ename}: {evalue}")
        self.ename, self.evalue = ename, evalue


_PARAMETERS_CELL = re.compile(r"^# %%.*\btags=\[[^\]]*[\"']parameters[\"']")
# The chapter's code runs in a namespace of its own while ``__main__`` stays this file-less driver, as in a Jupyter
# kernel: the processes that the grids spawn then do not run the chapter again (``runpy.run_path`` would give
# ``__main__`` the script's path, which spawned children re-execute).
_DRIVER = """\
import json, sys, traceback


def display(*objects):  # what a notebook shows, printed
    for obj in objects:
        print(obj.to_string() if hasattr(obj, "to_string") else obj)


try:
    with open(sys.argv[1]) as source:
        code = compile(source.read(), sys.argv[1], "exec")
    exec(code, {"__name__": "__main__", "display": display})
except BaseException as err:
    traceback.print_exc()
    with open(sys.argv[2], "w") as f:
        json.dump(dict(ename=type(err).__name__, evalue=str(err)), f)
    sys.exit(1)
"""


def declared_parameters(source: Path) -> tuple[list[str], int]:
    """The names a chapter's ``parameters`` cell assigns, and the line (0-based) where the next cell starts, where
    the overriding values go (as papermill injects them after that cell)."""
    lines = source.read_text().splitlines()
    start = next((i for i, line in enumerate(lines) if _PARAMETERS_CELL.match(line)), None)
    if start is None:
        raise ValueError(f"{source.name} has no cell tagged 'parameters'")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("# %%")), len(lines))
    tree = ast.parse("\n".join(lines[start + 1:end]))
    names = [t.id for node in tree.body if isinstance(node, (ast.Assign, ast.AnnAssign))
             for t in (node.targets if isinstance(node, ast.Assign) else [node.target]) if isinstance(t, ast.Name)]
    return names, end


def execute_script(source: Path, parameters: dict, output_dir: Path | None = None) -> Path:
    """Execute one chapter as a plain Python script, without Jupyter (``--plain``: for a headless GPU or cluster
    node that has PyTorch and the package's dependencies but not papermill, jupytext or a kernel). The py:percent
    source is a valid script; the declared parameters are assigned right after its ``parameters`` cell, as
    papermill would, and the script runs in a fresh interpreter from the notebooks folder; what it prints and
    passes to ``display`` is the log (a cell's bare last expression, which a notebook would show, is not). It
    writes the same artifacts; the script actually run is kept in ``output_dir`` (no executed notebook). Raises
    :class:`ChapterFailed` if the chapter raises."""
    output_dir = output_dir or paths.EXECUTED
    output_dir.mkdir(parents=True, exist_ok=True)
    names, end = declared_parameters(source)
    if "profile" not in names:
        raise ValueError(f"{source.name} has no `profile` in a cell tagged 'parameters'")
    lines = source.read_text().splitlines()
    injected = ["# %% tags=[\"injected-parameters\"]"] + [f"{k} = {v!r}" for k, v in parameters.items() if k in names]
    script = output_dir / f"{source.stem}.py"
    script.write_text("\n".join(lines[:end] + injected + [""] + lines[end:]) + "\n")
    error = output_dir / f"{source.stem}.error.json"
    error.unlink(missing_ok=True)
    env = dict(os.environ, MPLBACKEND=os.environ.get("MPLBACKEND", "Agg"))
    run = subprocess.run([sys.executable, "-c", _DRIVER, str(script.resolve()), str(error.resolve())],
                         cwd=str(source.parent), env=env)
    if run.returncode:
        failure = json.loads(error.read_text()) if error.exists() else dict(ename="ExitCode",
                                                                            evalue=f"exit status {run.returncode}")
        raise ChapterFailed(source, failure["ename"], failure["evalue"])
    return script


def reproduce(profile: str, force: bool = False, only: list[str] | None = None, device: str = "cpu",
              data: str | None = None, cached_only: bool = False, plain: bool = False) -> int:
    """Execute the chapters (``only``: these file stems) in ``profile``. ``cached_only``: train nothing; every
    grid draws its tables from its finished (cached) runs alone, e.g. the slices a sweep has run so far
    (``python -m hybridrl.sweeps --where ...``), and every artifact is stamped *partial*. A chapter that cannot
    draw a table from what is there fails and the others go on."""
    check_profile(profile)
    if cached_only and force:
        raise ValueError("cached_only and force exclude each other: one reads the cache, the other recomputes it")
    data = _absolute_data_folder(data)
    previous = os.environ.get("HYBRIDRL_CACHED_ONLY")
    if cached_only:
        os.environ["HYBRIDRL_CACHED_ONLY"] = "1"  # read by the grids, here and in the kernels (they inherit it)
    try:
        return _reproduce(profile, force, only, device, data, plain)
    finally:
        if cached_only and previous is None:
            del os.environ["HYBRIDRL_CACHED_ONLY"]
        elif cached_only:
            os.environ["HYBRIDRL_CACHED_ONLY"] = previous


def _reproduce(profile: str, force: bool, only: list[str] | None, device: str, data: str | None,
               plain: bool = False) -> int:
    failures, skipped, timings = [], [], []
    for source in chapters():
        if only and source.stem not in only:
            continue
        parameters = dict(profile=profile, force=force, device=device, data=data)
        print(f"[reproduce] {source.name} (profile {profile}) ...", flush=True)
        started = time.time()
        try:
            execute_script(source, parameters) if plain else execute(source, parameters)
        except Exception as err:  # noqa: BLE001 - report and go on with the other chapters
            if getattr(err, "ename", "") == DATA_MISSING:  # the chapter stopped early: its data set is absent
                skipped.append(source.name)
                print(f"[reproduce] {source.name} SKIPPED: {str(getattr(err, 'evalue', err))[:2000]}", flush=True)
            else:
                failures.append(source.name)
                print(f"[reproduce] {source.name} FAILED: {type(err).__name__}: {str(err)[:2000]}", flush=True)
        seconds = time.time() - started
        timings.append((source.name, seconds))
        print(f"[reproduce] {source.name} done in {seconds / 60:.1f} min", flush=True)
    total = sum(s for _, s in timings)
    print(f"[reproduce] total {total / 60:.1f} min; executed notebooks in {paths.EXECUTED}")
    if skipped:
        print(f"[reproduce] skipped for lack of data (their rows in REPRODUCTION.md say so): {', '.join(skipped)}")
    if failures:
        print(f"[reproduce] failed: {', '.join(failures)}")
        return 1
    return 0


def _absolute_data_folder(data: str | None) -> str | None:
    """Chapters run with the notebooks folder as their working directory: a relative data folder (``--data`` or
    ``HYBRIDRL_DATA``, e.g. ``../shared/data`` from the repository root) is made absolute here, where it was
    meant, before any chapter starts (the kernels inherit the environment)."""
    folder = os.environ.get("HYBRIDRL_DATA")
    if folder:
        os.environ["HYBRIDRL_DATA"] = str(Path(folder).expanduser().resolve())
    return None if data is None else str(Path(data).expanduser().resolve())


def bench(profile: str = "quick", device: str = "cpu", plain: bool = False, repeats: int | None = None) -> int:
    """Run the benchmark chapter; ``repeats`` (default: the chapter's own, 3) repeats each timing."""
    if repeats is not None:
        check_int("repeats", repeats, minimum=1)
    source = paths.NOTEBOOKS / f"{BENCHMARK}.py"
    print(f"[bench] {source.name} (profile {profile}, device {device}) ...", flush=True)
    parameters = dict(profile=profile, device=device)
    if repeats is not None:
        parameters["repeats"] = repeats
    execute_script(source, parameters) if plain else execute(source, parameters, log_output=True)
    print(f"[bench] wrote {paths.BENCHMARKS if device == 'cpu' else paths.BENCHMARKS_GPU}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hybridrl.pipeline", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser("reproduce", help="execute every chapter and regenerate paper/")
    rep.add_argument("--profile", default="quick", help="smoke, quick (default) or paper")
    rep.add_argument("--force", action="store_true", help="recompute cached experiments")
    rep.add_argument("--only", nargs="*", help="run only these chapters (file stems, e.g. 01_lost_sales)")
    rep.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    rep.add_argument("--data", default=None, help="folder holding favorita/ (default: $HYBRIDRL_DATA, else ./data)")
    rep.add_argument("--cached-only", action="store_true",
                     help="train nothing: draw every table from the finished runs in the cache (stamped partial)")
    ben = sub.add_parser("bench", help="run the benchmark chapter and write paper/benchmarks.md")
    ben.add_argument("--profile", default="quick")
    ben.add_argument("--device", default="cpu")
    ben.add_argument("--repeats", type=int, default=None,
                     help="repeat each timing this many times (default: the chapter's 3; 1 on a short GPU lease)")
    for command in (rep, ben):
        command.add_argument("--plain", action="store_true",
                             help="run each chapter as a plain Python script, without Jupyter (papermill, jupytext "
                                  "and a kernel not needed); the same artifacts, no executed notebook")
    args = parser.parse_args(argv)
    try:
        check_profile(args.profile)
    except ValueError as err:
        parser.error(str(err))
    if args.command == "reproduce":
        try:
            return reproduce(args.profile, args.force, args.only, args.device, args.data, args.cached_only,
                             args.plain)
        except ValueError as err:
            parser.error(str(err))
    try:
        return bench(args.profile, args.device, args.plain, args.repeats)
    except ValueError as err:
        parser.error(str(err))


if __name__ == "__main__":
    sys.exit(main())
