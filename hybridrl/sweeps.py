"""Sweeps: the runs behind every chapter, on a laptop, one GPU box or a Ray cluster (the `paper` profile's scale).

Every training run of the package is a call of a cached run function (``run_network``, ``run_lqr``,
``run_one_store``, ...): it computes a record and stores it in the result cache under a key made of everything
that determines it (:mod:`hybridrl.cache`), and a later call with the same arguments reads it back. The chapters'
grid functions fan their runs out through one function, :func:`map_jobs`, so *where* the runs execute is a choice
of **backend**, made in one place:

* ``local`` (default) — a pool of spawned processes on this machine, one per core;
* ``ray`` — one Ray task per run on a Ray cluster (``pip install "hybridrl[ray]"``): a local one that
  :func:`map_jobs` starts itself, or an existing cluster named by ``address`` or Ray's own ``RAY_ADDRESS``. Each
  task asks Ray for ``cpus_per_run`` CPUs and ``gpus_per_run`` GPUs (a fraction packs several runs on one GPU);
  Ray's scheduler places them. Runs with ``device="auto"`` then use the GPU Ray gave them.

Records are the same whichever backend computed them (a test checks it), so the notebooks read what a sweep left
in the cache exactly as if they had computed it, and compute only what is missing. The cache is a folder: on a
cluster, put ``HYBRIDRL_ROOT`` (which holds ``build/cache``) on storage every node sees.

The sweep runner
----------------
``python -m hybridrl.sweeps --profile paper --backend ray --gpus-per-run 0.25`` runs the grids of every chapter
(:data:`CHAPTER_GRIDS`: the same grid calls the notebooks make) without executing the notebooks, e.g. on a cluster
head node; ``make reproduce PROFILE=paper`` afterwards only reads the records and draws the tables. Setting
``HYBRIDRL_BACKEND=ray`` (and ``HYBRIDRL_GPUS_PER_RUN``) sends the notebooks' own runs to Ray instead.
Interrupting a sweep loses only the runs in flight: finished records are in the cache, and trainings that
checkpoint resume from their last dev evaluation. Its local workers end with it, however it is stopped (on Linux).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import pandas as pd

from ._device import threads_per_run
from ._progress import progress_bar

BACKENDS = ("local", "ray")


@dataclass(frozen=True)
class Backend:
    """Where :func:`map_jobs` runs jobs (module docstring)."""

    name: str = "local"
    workers: int | None = None
    """Local processes (``None``: one per core; the grid functions may ask for fewer)."""
    address: str | None = None
    """Ray cluster address (``None``: ``RAY_ADDRESS`` if set, else a local Ray instance)."""
    cpus_per_run: float = 1.0
    gpus_per_run: float = 0.0

    def __post_init__(self):
        if self.name not in BACKENDS:
            raise ValueError(f"backend must be one of {list(BACKENDS)}, got {self.name!r}")
        if self.workers is not None and (not isinstance(self.workers, int) or self.workers < 1):
            raise ValueError(f"workers must be a positive integer or None, got {self.workers!r}")
        for name in ("cpus_per_run", "gpus_per_run"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{name} must be a non-negative number, got {value!r}")


def _from_environment() -> Backend:
    """``HYBRIDRL_BACKEND`` (local | ray), ``HYBRIDRL_WORKERS`` (local processes at most: on one GPU, the
    runs of a pool of one process per core would share its memory), ``HYBRIDRL_GPUS_PER_RUN``,
    ``HYBRIDRL_CPUS_PER_RUN``."""
    try:
        workers = os.environ.get("HYBRIDRL_WORKERS", "")
        if workers and not workers.isdigit():
            raise ValueError(f"HYBRIDRL_WORKERS must be a positive integer, got {workers!r}")
        return Backend(os.environ.get("HYBRIDRL_BACKEND", "local") or "local",
                       workers=int(workers) if workers else None,
                       cpus_per_run=float(os.environ.get("HYBRIDRL_CPUS_PER_RUN", "1")),
                       gpus_per_run=float(os.environ.get("HYBRIDRL_GPUS_PER_RUN", "0")))
    except ValueError as err:
        raise ValueError(f"bad sweep settings in the environment: {err}") from err


_current: Backend | None = None


def current_backend() -> Backend:
    """The backend in force: the one set by :func:`use_backend`, else the environment's, else ``local``."""
    return _current if _current is not None else _from_environment()


@contextlib.contextmanager
def use_backend(backend: Backend | str) -> Iterator[Backend]:
    """Run the grids inside the ``with`` block on ``backend``."""
    global _current
    backend = Backend(backend) if isinstance(backend, str) else backend
    previous, _current = _current, backend
    try:
        yield backend
    finally:
        _current = previous


# ----------------------------------------------------------------------------------------------------------------
# Slices: a part of a grid
# ----------------------------------------------------------------------------------------------------------------
JOB_FIELDS = ("experiment", "setting", "kind", "method", "seed", "dim", "modes", "variant", "items", "n_stores",
              "n_train", "batch", "sweep")
"""The fields of the grids' jobs that a slice can select on (``--where method=hpo_full dim=8``)."""

_selection: dict[str, tuple[str, ...]] = {}
_looking_up = False


def parse_where(terms: list[str] | None) -> dict[str, tuple[str, ...]]:
    """``["dim=8,16", "method=hpo_full"]`` -> ``{"dim": ("8", "16"), "method": ("hpo_full",)}``, checked."""
    where = {}
    for term in terms or []:
        key, sep, values = term.partition("=")
        if not sep or not values:
            raise ValueError(f"a slice term must read field=value[,value...], got {term!r}")
        if key not in JOB_FIELDS:
            raise ValueError(f"cannot select on {key!r}: the jobs' fields are {list(JOB_FIELDS)}")
        where[key] = tuple(v.strip() for v in values.split(","))
    return where


def _selected(job, where: dict[str, tuple[str, ...]]) -> bool:
    """A job is in the slice when it has every field of ``where`` with one of the listed values."""
    return isinstance(job, dict) and all(k in job and str(job[k]) in values for k, values in where.items())


def _describe(where: dict[str, tuple[str, ...]]) -> str:
    return " ".join(f"{k}={','.join(v)}" for k, v in where.items())


@contextlib.contextmanager
def use_selection(where: dict[str, tuple[str, ...]]) -> Iterator[None]:
    """Inside the ``with`` block, :func:`map_jobs` runs only the jobs of the slice ``where`` (and returns only
    their results): how a sweep runs a part of a grid (:func:`run_sweep`)."""
    global _selection
    previous, _selection = _selection, dict(where)
    try:
        yield
    finally:
        _selection = previous


def map_jobs(fn: Callable, jobs: list, *, workers: int | None = None, progress: bool = True,
             description: str = "", training: bool = True) -> list:
    """``[fn(job) for job in jobs]`` on the current backend, results in order. ``fn`` must be importable (a
    module-level function) and ``jobs`` picklable. ``workers`` caps the local pool (the backend's own ``workers``
    wins); Ray ignores it and schedules by resources. ``training=False``: the jobs compute references (exact
    optima, tuned heuristics), not training runs, so a sweep's selection and the cached-only mode leave them
    alone: they are always computed (or read from the cache)."""
    backend = current_backend()
    threads_per_run()  # a bad HYBRIDRL_THREADS_PER_RUN fails here, before any run starts
    if _selection and training:
        selected = [job for job in jobs if _selected(job, _selection)]
        if progress:
            print(f"{description}: {len(selected)} of {len(jobs)} runs selected ({_describe(_selection)})")
        jobs = selected
    from .cache import cached_only_requested

    looking_up = training and (_looking_up or cached_only_requested())
    fn = _FromCache(fn) if looking_up else fn
    progress = progress and not _looking_up  # a status check prints one line per grid
    started = time.time()
    if backend.name == "ray" and jobs:
        results = _map_ray(fn, jobs, backend, progress, description)
        where = f"Ray, {backend.cpus_per_run:g} CPU and {backend.gpus_per_run:g} GPU per run"
    else:
        workers = backend.workers or workers or min(len(jobs), os.cpu_count() or 1) or 1
        results = _map_local(fn, jobs, workers, progress, description)
        where = f"{workers} workers"
    if looking_up:
        results = [r for r in results if r is not None]
        print(f"{description}: {len(results)} of {len(jobs)} runs in the cache"
              + ("" if _looking_up else " (cached-only: the others are left out, not run)"))
        if _looking_up:  # a status check: the grid stops here
            raise _Counted
    elif progress:
        print(f"{description}: {len(jobs)} runs in {time.time() - started:.0f} s ({where})")
    return results


class _FromCache:
    """``fn`` in lookup-only mode (:func:`hybridrl.cache.lookup_only`): its result if it is cached, else ``None``."""

    def __init__(self, fn: Callable):
        self.fn = fn

    def __call__(self, job):
        from .cache import NotCached, lookup_only

        with lookup_only():
            try:
                return self.fn(job)
            except NotCached:
                return None


def _exit_with_parent(parent: int) -> None:
    """A local worker's initializer: end this worker when the process that started it ends, however it ends.

    Without it, a sweep stopped by ``kill`` (not Ctrl-C, which reaches the whole process group) leaves its workers
    training on: they use the cores, and a restarted sweep would train the same runs a second time beside them.
    Their trainings resume from their last checkpoint when the sweep is started again. Linux only (``prctl``);
    elsewhere the workers end when they next ask for a job."""
    import signal

    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            return
    if os.getppid() != parent:  # the parent ended before the signal was armed
        os._exit(1)


def _start_worker(parent: int) -> None:
    """A local worker's initializer: :func:`_exit_with_parent`, and ``HYBRIDRL_THREADS_PER_RUN`` PyTorch threads
    for every job, not only for the training runs that set it themselves: a reference computed in a worker with
    PyTorch's default (one thread per core, in every worker) ran 2.5 times slower than with one thread."""
    _exit_with_parent(parent)
    import torch

    torch.set_num_threads(threads_per_run())


def _map_local(fn, jobs, workers: int, progress: bool, description: str) -> list:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_start_worker, initargs=(os.getpid(),)) as pool:
            return list(progress_bar(pool.map(fn, jobs), total=len(jobs), desc=description, disable=not progress,
                             mininterval=5))
    return [fn(job) for job in progress_bar(jobs, desc=description, disable=not progress, mininterval=5)]


def _ray():
    try:
        import ray
    except ImportError as err:
        raise ImportError('the Ray backend needs Ray: pip install "hybridrl[ray]"') from err
    return ray


def _map_ray(fn, jobs, backend: Backend, progress: bool, description: str) -> list:
    ray = _ray()
    if not ray.is_initialized():
        # a local instance unless an address is given (or RAY_ADDRESS is set, which ray.init reads itself); the
        # workers import hybridrl from the same installation as this process
        # (the package's settings travel with the tasks: where the cache is, where the data are)
        settings = {k: v for k, v in os.environ.items() if k.startswith("HYBRIDRL_")}
        ray.init(address=backend.address, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {**settings, "HYBRIDRL_BACKEND": "local"}})
    task = ray.remote(num_cpus=backend.cpus_per_run, num_gpus=backend.gpus_per_run, max_retries=1)(fn)
    refs = [task.remote(job) for job in jobs]
    index = {ref: i for i, ref in enumerate(refs)}
    results: list = [None] * len(refs)
    pending = list(refs)
    with progress_bar(total=len(refs), desc=description, disable=not progress, mininterval=5) as bar:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                results[index[ref]] = ray.get(ref)  # re-raises a run's exception here, naming it
                bar.update(1)
    return results


# ----------------------------------------------------------------------------------------------------------------
# The chapters' grids
# ----------------------------------------------------------------------------------------------------------------
def _single_store(experiment: str, methods: tuple[str, ...]):
    def run(profile: str, force: bool) -> None:
        from . import experiments

        seeds = experiments.budget(experiment, profile).seeds
        jobs = [dict(experiment=experiment, method=m, profile=profile, seed=s, device="auto", force=force,
                     progress=False) for m in methods for s in seeds]
        map_jobs(_run_grid_job, jobs, description=f"{experiment} ({profile})")
    return run


def _run_grid_job(job: dict) -> bool:
    from . import experiments

    job = dict(job)
    seed = job.pop("seed")
    experiments.run_grid(**job, seeds=(seed,))
    return True


def _hpo(name: str):
    def run(profile: str, force: bool) -> None:
        from . import hpo_experiments as hx

        grid = {"lqr": hx.run_lqr_grid, "jrp": hx.run_jrp_grid, "jrp_table": hx.run_jrp_table_grid,
                "alignment": hx.run_alignment_grid}[name]
        grid(profile, force=force)
    return run


def _network(setting: str, data_sizes: bool = False):
    def run(profile: str, force: bool) -> None:
        from . import network_experiments as nx

        stores = nx.data_study_stores(profile) if data_sizes else None
        nx.run_network_grid(setting, profile, methods=nx.chapter_methods(setting, profile, data_sizes=data_sizes),
                            stores=stores, data_sizes=data_sizes, force=force)
    return run


def _reinforce(profile: str, force: bool) -> None:
    from . import network_experiments as nx

    nx.run_reinforce_grid(profile, force=force)


def _real_data(part: str):
    def run(profile: str, force: bool) -> None:
        from . import favorita, realdata_experiments as rx

        if not favorita.available():
            print(f"real data: skipped, {favorita.HOW_TO_GET}" if part == "forecaster" else
                  f"real data ({part}): skipped, no data")
            return
        if part == "forecaster":  # the newsvendors' forecaster first
            rx.forecaster(favorita.load_favorita(), profile, force=force)
        else:
            (rx.run_one_store_grid if part == "one store" else rx.run_network_grid)(profile, force=force)
    return run


CHAPTER_GRIDS: dict[str, list[Callable[[str, bool], None]]] = {
    "01_lost_sales": [_single_store("lost_sales", ("hdpo", "capped_base_stock"))],
    "02_backlogged": [_single_store("backlogged", ("hdpo", "base_stock"))],
    "05_switched_lqr": [_hpo("lqr")],
    "06_joint_replenishment": [_hpo("jrp"), _hpo("jrp_table")],
    "07_cross_term": [_hpo("alignment")],
    "08_serial": [_network("serial")],
    "09_one_warehouse": [_network("one_warehouse"), _network("one_warehouse", data_sizes=True)],
    "10_transshipment": [_network("transshipment")],
    "11_hdpo_vs_reinforce": [_reinforce],
    "12_real_data": [_real_data("forecaster"), _real_data("one store"), _real_data("network")],
}
"""The grid calls of each chapter that trains something (the notebooks make the same calls)."""


# ----------------------------------------------------------------------------------------------------------------
# The size of a profile
# ----------------------------------------------------------------------------------------------------------------
def _steps(epochs: int, scenarios: int, batch: int) -> int:
    """Gradient steps of ``epochs`` passes over ``scenarios`` in minibatches of ``batch`` (the last one partial)."""
    return epochs * math.ceil(scenarios / min(batch, scenarios))


def _single_store_work(experiment: str, methods: tuple[str, ...]):
    def work(profile: str) -> list[dict]:
        from . import experiments as ex

        b = ex.budget(experiment, profile)
        cells = ex.GRIDS[experiment]().n_stores
        groups = math.ceil(cells / (b.cells_per_run or cells))
        return [dict(part=experiment, method=m, runs=len(b.seeds) * groups,
                     steps_per_run=_steps(b.train[m].epochs, b.protocol.n_train, b.train[m].batch_size))
                for m in methods]
    return work


def _hpo_work(name: str):
    def work(profile: str) -> list[dict]:
        from . import hpo_experiments as hx

        if name == "alignment":
            study, jrp = hx.ALIGNMENT_BUDGETS[hx.check_profile(profile)], hx.jrp_budget(profile)
            return [dict(part="cross-term study (JRP)", method="hpo_full", runs=len(study.items) * len(study.seeds),
                         steps_per_run=jrp.configs["hpo_full"].updates)]
        if name == "jrp":
            b = hx.jrp_budget(profile)
            return [dict(part="JRP", method=m, runs=len(b.items) * len(b.seeds), steps_per_run=c.updates)
                    for m, c in b.configs.items()]
        if name == "jrp_table":
            b = hx.jrp_budget(profile)
            return [dict(part=f"JRP, batch {sweep.batch}", method=m, runs=len(sweep.items) * len(sweep.seeds),
                         steps_per_run=b.configs[m].updates)
                    for sweep in hx.JRP_TABLE_SWEEPS[hx.check_profile(profile)] for m in sweep.methods]
        b, runs = hx.lqr_budget(profile), [run[-1] for run in hx.lqr_runs(profile)]
        return [dict(part="switched LQR", method=m, runs=runs.count(m) * len(b.seeds), steps_per_run=c.updates)
                for m, c in b.configs.items()]
    return work


def _network_work(setting: str, data_sizes: bool = False):
    def work(profile: str) -> list[dict]:
        from . import network_experiments as nx

        b = nx.network_budget(setting, profile)
        stores = nx.data_study_stores(profile) if data_sizes else b.stores
        sizes = b.data_sizes if data_sizes else (None,)
        rows = []
        for m in nx.chapter_methods(setting, profile, data_sizes=data_sizes):
            c = b.configs[m]  # the data study keeps the number of gradient steps (nx.run_network)
            rows.append(dict(part=f"{setting}{', data study' if data_sizes else ''}", method=m,
                             runs=len(stores) * len(sizes) * len(b.seeds),
                             steps_per_run=_steps(c.epochs, b.protocol.n_train, c.batch_size)))
        return rows
    return work


def _reinforce_work(profile: str) -> list[dict]:
    from . import network_experiments as nx

    rows = []
    for setting in nx.COMPARISON_SETTINGS:
        b = nx.COMPARISON_BUDGETS[(setting, nx.check_profile(profile))]
        rows += [dict(part=f"HDPO vs REINFORCE, {setting}", method=m, runs=len(b.seeds),
                      steps_per_run=_steps(b.config.epochs, b.protocol.n_train, b.config.batch_size))
                 for m in ("hdpo", "reinforce")]
    return rows


def _real_data_work(profile: str) -> list[dict]:
    from . import favorita, realdata_experiments as rx

    b = rx.budget(profile)
    items, stores, _ = favorita.SHAPE  # the data set's shape (the plan does not read the data)
    series = b.n_series or items * stores
    items = b.network_items or items
    one_store = {"hdpo": (b.hdpo, series), "fixed_quantile": (b.newsvendor, series),
                 "transformed_nv": (b.newsvendor, series)}  # the others are evaluated, not trained
    network = {"hdpo": (b.network_hdpo, items), "echelon_stock": (b.network_heuristic, items)}
    rows = [dict(part="real data, forecaster", method="quantile forecaster", runs=1, steps_per_run=b.forecaster_epochs)]
    for part, methods, trained in (("one store", rx.ONE_STORE_METHODS, one_store),
                                   ("network", rx.NETWORK_METHODS, network)):
        for m in methods:
            config, scenarios = trained.get(m, (None, 0))
            rows.append(dict(part=f"real data, {part}", method=m, runs=len(b.seeds) if m in rx.TRAINED else 1,
                             steps_per_run=_steps(config.epochs, scenarios, config.batch_size) if config else 0))
    return rows


CHAPTER_WORK: dict[str, list[Callable[[str], list[dict]]]] = {
    "01_lost_sales": [_single_store_work("lost_sales", ("hdpo", "capped_base_stock"))],
    "02_backlogged": [_single_store_work("backlogged", ("hdpo", "base_stock"))],
    "05_switched_lqr": [_hpo_work("lqr")],
    "06_joint_replenishment": [_hpo_work("jrp"), _hpo_work("jrp_table")],
    "07_cross_term": [_hpo_work("alignment")],
    "08_serial": [_network_work("serial")],
    "09_one_warehouse": [_network_work("one_warehouse"), _network_work("one_warehouse", data_sizes=True)],
    "10_transshipment": [_network_work("transshipment")],
    "11_hdpo_vs_reinforce": [_reinforce_work],
    "12_real_data": [_real_data_work],
}
"""How much each chapter's grids train, read from the same budgets the grids run (a test checks the run counts
against the jobs the grids send to :func:`map_jobs`)."""


def plan(profile: str = "paper", chapters: list[str] | None = None) -> pd.DataFrame:
    """The training work of ``profile``: one row per chapter, part and method, with ``runs`` (cached training
    runs), ``steps_per_run`` (the most gradient steps or policy updates a run takes: early stopping may end it
    sooner) and ``steps`` (their product). Nothing is run."""
    from .experiments import check_profile

    check_profile(profile)
    chapters = _check_chapters(chapters)
    rows = [dict(chapter=c, **row) for c in chapters for work in CHAPTER_WORK[c] for row in work(profile)]
    table = pd.DataFrame(rows, columns=["chapter", "part", "method", "runs", "steps_per_run"])
    return table.assign(steps=table.runs * table.steps_per_run)


def estimate_hours(table: pd.DataFrame, seconds_per_step: dict[tuple[str, str], float]) -> pd.DataFrame:
    """Per chapter of a :func:`plan` table: ``hours`` of training one run at a time, the plan's steps times
    ``seconds_per_step[(part, method)]`` (measured elsewhere, e.g. by the benchmark chapter) summed over the rows
    that have a time (NaN if none has); ``measured_steps_pct``, the share of the chapter's steps they cover; and
    ``not_measured``, the rows that train but have no time (left out, not guessed)."""
    seconds = pd.Series([seconds_per_step.get((r.part, r.method), math.nan) for r in table.itertuples()],
                        index=table.index)
    rows = []
    for chapter, part in table.assign(seconds=seconds).groupby("chapter", sort=False):
        measured = part[part.seconds.notna()]
        missing = part[part.seconds.isna() & (part.steps > 0)]
        rows.append(dict(chapter=chapter, runs=int(part.runs.sum()), steps=int(part.steps.sum()),
                         measured_steps_pct=100 * measured.steps.sum() / max(part.steps.sum(), 1),
                         hours=float((measured.steps * measured.seconds).sum() / 3600) if len(measured) else math.nan,
                         not_measured=", ".join(f"{r.part}: {r.method}" for r in missing.itertuples()) or "–"))
    return pd.DataFrame(rows)


def plan_markdown(table: pd.DataFrame) -> str:
    """:func:`plan` as Markdown: every row, then the runs and steps of each chapter."""
    from .reporting import markdown_table

    chapters = table.groupby("chapter", sort=False)[["runs", "steps"]].sum().reset_index()
    return (markdown_table(table) + "\n\nPer chapter (steps: gradient steps or policy updates, at most; early "
            "stopping may end a run sooner):\n\n" + markdown_table(chapters) + "\n")


def _check_chapters(chapters: list[str] | None) -> list[str]:
    chapters = list(chapters or CHAPTER_GRIDS)
    unknown = [c for c in chapters if c not in CHAPTER_GRIDS]
    if unknown:
        raise ValueError(f"no grid for chapter(s) {unknown}; chapters with grids: {list(CHAPTER_GRIDS)}")
    return chapters


def run_sweep(profile: str = "paper", chapters: list[str] | None = None, *, backend: Backend | str | None = None,
              force: bool = False, where: dict[str, tuple[str, ...]] | None = None,
              status: bool = False, archive: bool = False) -> list[str]:
    """Run the grids of ``chapters`` (default: all of :data:`CHAPTER_GRIDS`) in ``profile`` on ``backend``; the
    records land in the result cache. ``where`` (:func:`parse_where`) runs only a slice of each grid: the jobs
    that have every listed field with one of its values. ``status`` runs nothing: it says how many runs of each
    grid (or slice) are in the cache. ``archive`` runs nothing either: it copies the finished runs of the grids
    (or slice) from the cache to the committed archive ``paper/runs/`` (:mod:`hybridrl.cache`). Returns the
    chapters."""
    from .experiments import check_profile

    check_profile(profile)
    chapters = _check_chapters(chapters)
    backend = current_backend() if backend is None else backend
    if where and "12_real_data" in chapters:
        raise ValueError("the real-data chapter runs whole: leave it out of a sliced sweep (--where)")
    if status or archive:
        return _status(profile, chapters, where or {}, archive=archive)
    with use_backend(backend), use_selection(where or {}):
        for chapter in chapters:
            started = time.time()
            print(f"[sweep] {chapter} (profile {profile}) ...", flush=True)
            for grid in CHAPTER_GRIDS[chapter]:
                grid(profile, force)
            print(f"[sweep] {chapter} done in {(time.time() - started) / 60:.1f} min", flush=True)
    return chapters


class _Counted(Exception):
    """Raised by :func:`map_jobs` in a status check once it has counted a grid's cached runs."""


def _status(profile: str, chapters: list[str], where: dict, *, archive: bool = False) -> list[str]:
    """Every grid's jobs looked up in the cache in this process (nothing computed): ``map_jobs`` prints the count
    and stops the grid there, before it draws anything from a partial set of records. ``archive``: the records
    found in the cache are then copied to the archive (:data:`hybridrl.paths.RUNS`)."""
    global _looking_up
    from .cache import NotCached, lookup_only, recording_hits

    previous, _looking_up = _looking_up, True
    try:
        with (use_backend(Backend("local", workers=1)), use_selection(where), lookup_only(),
              recording_hits() as hits):
            for chapter in chapters:
                print(f"[status] {chapter} (profile {profile})", flush=True)
                for grid in CHAPTER_GRIDS[chapter]:
                    try:
                        grid(profile, False)
                    except _Counted:
                        pass
                    except NotCached as missing:
                        print(f"  not in the cache yet: {missing}")
    finally:
        _looking_up = previous
    if archive:
        _archive(hits)
    return chapters


def _archive(hits: list) -> None:
    """Copy the cache entries ``hits`` that the archive lacks into it (:func:`hybridrl.cache.archive`); say how
    many."""
    from . import paths
    from .cache import archive

    new, already = archive(hits)
    size = sum(e.stat().st_size for e in new)
    print(f"[archive] {len(new)} runs copied to {paths.RUNS} ({size / 1e6:.2f} MB); {already} were there already")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hybridrl.sweeps", description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="paper", help="smoke, quick or paper (default)")
    parser.add_argument("--chapters", nargs="*", help=f"chapters to run (default: all of {list(CHAPTER_GRIDS)})")
    parser.add_argument("--backend", default=None, choices=BACKENDS, help="local (default) or ray")
    parser.add_argument("--address", default=None, help="Ray cluster address (default: RAY_ADDRESS, else local)")
    parser.add_argument("--workers", type=int, default=None, help="local processes (default: one per core)")
    parser.add_argument("--cpus-per-run", type=float, default=1.0)
    parser.add_argument("--gpus-per-run", type=float, default=0.0, help="Ray: GPUs per run (fractions share one)")
    parser.add_argument("--force", action="store_true", help="recompute cached runs")
    parser.add_argument("--where", nargs="*", metavar="FIELD=VALUES",
                        help=f"run a slice: only the runs with these values, e.g. dim=8 modes=2 method=hpo_full "
                             f"seed=0,1,2 (fields: {', '.join(JOB_FIELDS)})")
    parser.add_argument("--status", action="store_true",
                        help="say how many runs of each grid (or slice) are in the cache, and run nothing")
    parser.add_argument("--archive", action="store_true",
                        help="copy the finished runs of the chapters (or slice) from build/cache/ to paper/runs/, "
                             "which is committed (runs too long to repeat); run nothing")
    parser.add_argument("--plan", action="store_true",
                        help="print how many runs and gradient steps each chapter trains, and run nothing")
    args = parser.parse_args(argv)
    if args.plan:
        try:
            print(plan_markdown(plan(args.profile, args.chapters)))
        except ValueError as err:
            parser.error(str(err))
        return 0
    try:
        backend = replace(current_backend(), **{k: v for k, v in dict(
            name=args.backend, address=args.address, workers=args.workers).items() if v is not None},
            cpus_per_run=args.cpus_per_run, gpus_per_run=args.gpus_per_run)
        run_sweep(args.profile, args.chapters, backend=backend, force=args.force, where=parse_where(args.where),
                  status=args.status, archive=args.archive)
    except ValueError as err:
        parser.error(str(err))
    return 0


if __name__ == "__main__":
    # run in the imported module, not in this `__main__` copy: the grid functions look up the backend there
    from hybridrl.sweeps import main as _main

    sys.exit(_main())
