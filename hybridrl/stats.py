"""Aggregate statistics over seeds and instances, with honest uncertainty (Agarwal et al. 2021, "rliable").

Scores are arrays ``[runs, tasks]``: one row per independent run (training seed), one column per task
(instance, grid cell). By default a larger score is better; pass costs or gaps with ``lower_is_better=True``
where a function asks.

* :func:`aggregate` — mean, standard deviation, median and interquartile mean (IQM: the mean of the middle
  50 % of all run × task scores, robust to a few outlying runs yet less noisy than the median).
* :func:`stratified_bootstrap` — a confidence interval for any aggregate: runs are resampled with replacement
  *within each task* (so every task keeps its weight), with a fixed seed; percentile intervals.
* :func:`probability_of_improvement` — P(X > Y): the chance that a run of method X beats a run of method Y on a
  random task (the Mann–Whitney statistic per task, averaged over tasks), with a bootstrap interval.
* :func:`performance_profile` — the fraction of all runs scoring above each threshold τ, with intervals.

Results usually arrive as long tables (one row per run and task, as :func:`hybridrl.experiments.run_grid`
returns them). :func:`score_matrix` turns such a table into ``[runs, tasks]``; :func:`interval_table` gives
each task's estimate over runs with its interval and run count (the per-cell columns of the paper tables);
:func:`curve` does the same along a learning curve, one interval per point (the bands of the figures).

Everything is NumPy and deterministic given ``seed``. The tests cross-check these against ``rliable`` when
that optional package is installed and importable (the ``stats`` extra; rliable 1.2 needs ``arch`` 8 beside
pandas 3). One difference by design: our :func:`median` pools all run × task scores, where rliable's
``aggregate_median`` takes the median over tasks of the per-task means.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

Statistic = Callable[[np.ndarray], np.ndarray]


def _scores(scores, name: str = "scores") -> np.ndarray:
    x = np.asarray(scores, dtype=float)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"{name} must be an array [runs, tasks], got shape {np.shape(scores)}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains {int((~np.isfinite(x)).sum())} NaN or infinite values")
    return x


# ----------------------------------------------------------------------------------------------------------------
# Aggregates, vectorised over any leading axes: [..., runs, tasks] -> [...]
# ----------------------------------------------------------------------------------------------------------------
def mean(x: np.ndarray) -> np.ndarray:
    return np.mean(x, axis=(-2, -1))


def median(x: np.ndarray) -> np.ndarray:
    return np.median(x.reshape(*x.shape[:-2], -1), axis=-1)


def iqm(x: np.ndarray) -> np.ndarray:
    """Interquartile mean: the mean of the scores between the 25th and 75th percentiles (25 % trimmed each end)."""
    flat = np.sort(x.reshape(*x.shape[:-2], -1), axis=-1)
    n = flat.shape[-1]
    cut = int(np.floor(0.25 * n))  # as scipy.stats.trim_mean(proportiontocut=0.25)
    return flat[..., cut : n - cut].mean(axis=-1)


AGGREGATES: dict[str, Statistic] = {"mean": mean, "median": median, "iqm": iqm}


def aggregate(scores) -> dict[str, float]:
    """Mean, standard deviation (over all run × task scores), median and IQM of ``[runs, tasks]`` scores."""
    x = _scores(scores)
    return dict(mean=float(mean(x)), std=float(x.std(ddof=1)) if x.size > 1 else 0.0, median=float(median(x)),
                iqm=float(iqm(x)), runs=x.shape[0], tasks=x.shape[1])


# ----------------------------------------------------------------------------------------------------------------
# Stratified bootstrap
# ----------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Interval:
    """A point estimate with a ``confidence`` interval ``[low, high]``."""

    estimate: float
    low: float
    high: float
    confidence: float = 0.95

    def __str__(self) -> str:
        return f"{self.estimate:.4g} [{self.low:.4g}, {self.high:.4g}]"

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


def _resample(x: np.ndarray, reps: int, rng: np.random.Generator) -> np.ndarray:
    """``reps`` stratified resamples ``[reps, runs, tasks]``: rows drawn with replacement within each column."""
    runs, tasks = x.shape
    rows = rng.integers(0, runs, size=(reps, runs, tasks))
    return x[rows, np.arange(tasks)]


def stratified_bootstrap(
    scores, statistic: Statistic | str = "iqm", *, reps: int = 2000, confidence: float = 0.95, seed: int = 0
) -> Interval:
    """Percentile confidence interval of ``statistic`` by the stratified bootstrap over runs within tasks."""
    x = _scores(scores)
    fn = AGGREGATES[statistic] if isinstance(statistic, str) else statistic
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    rng = np.random.default_rng(seed)
    samples = np.asarray(fn(_resample(x, reps, rng)), dtype=float)
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(samples, [tail, 100 - tail])
    return Interval(float(fn(x)), float(low), float(high), confidence)


# ----------------------------------------------------------------------------------------------------------------
# Comparisons
# ----------------------------------------------------------------------------------------------------------------
def _improvement(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(X > Y) + P(X = Y)/2 per task, averaged over tasks; vectorised over leading axes."""
    greater = (x[..., :, None, :] > y[..., None, :, :]).mean(axis=(-3, -2))
    ties = (x[..., :, None, :] == y[..., None, :, :]).mean(axis=(-3, -2))
    return (greater + 0.5 * ties).mean(axis=-1)


def probability_of_improvement(
    x, y, *, lower_is_better: bool = False, reps: int = 2000, confidence: float = 0.95, seed: int = 0
) -> Interval:
    """The probability that a run of method X beats a run of method Y on a random task, with an interval.

    ``x`` is ``[runs_x, tasks]``, ``y`` is ``[runs_y, tasks]`` (same tasks, in the same order). Ties count one
    half. Both methods' runs are resampled within each task for the interval.
    """
    x, y = _scores(x, "x"), _scores(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must cover the same tasks, got {x.shape[1]} and {y.shape[1]} columns")
    if lower_is_better:
        x, y = -x, -y
    rng = np.random.default_rng(seed)
    samples = _improvement(_resample(x, reps, rng), _resample(y, reps, rng))
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(samples, [tail, 100 - tail])
    return Interval(float(_improvement(x, y)), float(low), float(high), confidence)


@dataclass(frozen=True)
class Profile:
    """A performance profile: for each threshold, the fraction of run × task scores beyond it, with intervals."""

    thresholds: np.ndarray
    fraction: np.ndarray
    low: np.ndarray
    high: np.ndarray


def performance_profile(
    scores, thresholds, *, lower_is_better: bool = False, reps: int = 2000, confidence: float = 0.95, seed: int = 0
) -> Profile:
    """Fraction of scores above each threshold (or at most each threshold with ``lower_is_better``)."""
    x = _scores(scores)
    tau = np.asarray(thresholds, dtype=float)

    def fraction(s: np.ndarray) -> np.ndarray:
        flat = s.reshape(*s.shape[:-2], -1)[..., None]
        hit = flat <= tau if lower_is_better else flat > tau
        return hit.mean(axis=-2)

    rng = np.random.default_rng(seed)
    samples = fraction(_resample(x, reps, rng))
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(samples, [tail, 100 - tail], axis=0)
    return Profile(tau, fraction(x), low, high)


# ----------------------------------------------------------------------------------------------------------------
# Long tables: one row per (run, task)
# ----------------------------------------------------------------------------------------------------------------
def _columns(frame: pd.DataFrame, names: Sequence[str]) -> list[str]:
    names = [names] if isinstance(names, str) else list(names)
    missing = [n for n in names if n not in frame.columns]
    if missing:
        raise ValueError(f"columns {missing} not in the table (it has {list(frame.columns)})")
    return names


def score_matrix(frame: pd.DataFrame, *, task: Sequence[str] | str, run: str = "seed", value: str) -> pd.DataFrame:
    """Pivot a long table into scores ``[runs, tasks]`` (a DataFrame: index = runs, columns = tasks).

    Every task must have a score for every run — a stratified bootstrap over an incomplete design would weigh
    tasks unequally without saying so — and no (run, task) pair may appear twice.
    """
    task = _columns(frame, task)
    _columns(frame, [run, value])
    duplicated = frame.duplicated(subset=[run, *task])
    if duplicated.any():
        raise ValueError(f"{int(duplicated.sum())} rows repeat a ({run}, {', '.join(task)}) pair")
    wide = frame.pivot_table(index=run, columns=task, values=value, aggfunc="first", dropna=False)
    if wide.isna().any().any():
        holes = wide.isna().stack(list(range(wide.columns.nlevels)), future_stack=True)
        first = [v.item() if hasattr(v, "item") else v for v in holes[holes].index[0]]
        raise ValueError(f"{int(wide.isna().sum().sum())} (run, task) scores are missing, e.g. {run} = {first[0]}, "
                         f"{', '.join(task)} = {tuple(first[1:])}")
    return wide


def interval_table(
    frame: pd.DataFrame, *, by: Sequence[str] | str, run: str = "seed", value: str, statistic: str = "mean",
    reps: int = 2000, confidence: float = 0.95, seed: int = 0,
) -> pd.DataFrame:
    """Per group of ``by`` (a task): ``statistic`` of ``value`` over runs with a bootstrap interval.

    Columns: the ``by`` keys, ``{value}`` (the estimate), ``{value}_low``, ``{value}_high`` and ``runs``. With
    few runs the percentile bootstrap is coarse (with 3 runs the interval is close to their range and tends to
    under-cover); the run count is reported beside every interval for that reason.
    """
    by = _columns(frame, by)
    rows = []
    for key, part in frame.groupby(by, sort=True):
        x = _scores(part[value].to_numpy(), value)
        iv = stratified_bootstrap(x, statistic, reps=reps, confidence=confidence, seed=seed)
        key = key if isinstance(key, tuple) else (key,)
        rows.append({**dict(zip(by, key)), value: iv.estimate, f"{value}_low": iv.low, f"{value}_high": iv.high,
                     "runs": x.shape[0]})
    return pd.DataFrame(rows)


def curve(
    frame: pd.DataFrame, *, x: str, task: Sequence[str] | str, run: str = "seed", value: str,
    statistic: str = "iqm", reps: int = 2000, confidence: float = 0.95, seed: int = 0,
) -> pd.DataFrame:
    """An aggregate learning curve: at every ``x`` (e.g. the policy update), ``statistic`` over all runs × tasks
    with a stratified-bootstrap interval. Columns ``x, estimate, low, high, runs, tasks``."""
    _columns(frame, [x])
    rows = []
    for point, part in frame.groupby(x, sort=True):
        scores = score_matrix(part, task=task, run=run, value=value).to_numpy()
        iv = stratified_bootstrap(scores, statistic, reps=reps, confidence=confidence, seed=seed)
        rows.append({x: point, "estimate": iv.estimate, "low": iv.low, "high": iv.high,
                     "runs": scores.shape[0], "tasks": scores.shape[1]})
    return pd.DataFrame(rows)


def curves_by_method(history: pd.DataFrame, *, x: str, task: Sequence[str] | str, value: str,
                     statistic: str = "iqm") -> dict[str, pd.DataFrame]:
    """Per method (column ``method``), :func:`curve` of ``value`` against ``x`` over seeds × tasks, with the median
    wall-clock ``seconds`` at every point: the input of :func:`hybridrl.plots.learning_curves` (columns ``step,
    seconds, estimate, low, high, runs, tasks``)."""
    curves = {}
    for method, part in history.groupby("method"):
        c = curve(part, x=x, task=task, value=value, statistic=statistic)
        seconds = part.groupby(x).seconds.median()
        curves[method] = c.merge(seconds, left_on=x, right_index=True).rename(columns={x: "step"})
    return curves


def compare_methods(table: pd.DataFrame, better: str, worse: str, keys: Sequence[str], value: str = "test_cost",
                    seed: int = 0) -> pd.DataFrame:
    """Per cell (``keys``) of a long table with a ``method`` column: ``worse``'s mean ``value`` relative to
    ``better``'s (``gap_pct``, with a 95 % bootstrap interval [``gap_low``, ``gap_high``] resampling each method's
    runs) and P(a ``better`` run has a lower ``value`` than a ``worse`` run) with its interval
    (:func:`probability_of_improvement`)."""
    keys = list(keys)
    rows = []
    for key, part in table.groupby(keys, sort=True):
        a = part[part.method == better][value].to_numpy(dtype=float)
        b = part[part.method == worse][value].to_numpy(dtype=float)
        if len(a) == 0 or len(b) == 0:
            continue
        p = probability_of_improvement(a[:, None], b[:, None], lower_is_better=True, seed=seed)
        rng = np.random.default_rng(seed)
        ratio = b[rng.integers(0, len(b), (2000, len(b)))].mean(1) / a[rng.integers(0, len(a), (2000, len(a)))].mean(1)
        low, high = np.percentile(100 * (ratio - 1), [2.5, 97.5])
        key = key if isinstance(key, tuple) else (key,)
        rows.append({**dict(zip(keys, key)), f"{better}_cost": a.mean(), f"{worse}_cost": b.mean(),
                     "gap_pct": 100 * (b.mean() / a.mean() - 1), "gap_low": low, "gap_high": high,
                     "p_better": p.estimate, "p_low": p.low, "p_high": p.high, "runs": min(len(a), len(b))})
    return pd.DataFrame(rows)


def paired_difference(x, y, *, scale=None, reps: int = 2000, confidence: float = 0.95, seed: int = 0) -> Interval:
    """The mean of ``x − y`` over paired units (e.g. products evaluated under two policies), divided by the mean
    of ``scale`` if given, with a percentile bootstrap interval that resamples the units (the pairs stay
    together). ``100 * paired_difference(a, b, scale=ref)`` is the difference of ``a`` and ``b`` in points of
    ``ref``'s total (e.g. percent of the oracle's profit)."""
    x, y = np.asarray(x, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
    if x.shape != y.shape or x.size == 0:
        raise ValueError(f"x and y must be non-empty and paired, got {x.size} and {y.size} values")
    s = np.ones_like(x) if scale is None else np.asarray(scale, dtype=float).ravel()
    if s.shape != x.shape:
        raise ValueError(f"scale must have one value per pair ({x.size}), got {s.size}")
    if not (np.isfinite(x).all() and np.isfinite(y).all() and np.isfinite(s).all()):
        raise ValueError("x, y and scale must be finite")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    d = x - y
    rows = np.random.default_rng(seed).integers(0, x.size, size=(reps, x.size))
    samples = d[rows].mean(1) / s[rows].mean(1)
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(samples, [tail, 100 - tail])
    return Interval(float(d.mean() / s.mean()), float(low), float(high), confidence)
