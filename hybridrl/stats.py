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

Everything is NumPy and deterministic given ``seed``. The tests cross-check these against ``rliable`` when
that optional package is installed and importable (the ``stats`` extra; rliable 1.2 needs ``arch`` 8 beside
pandas 3). One difference by design: our :func:`median` pools all run × task scores, where rliable's
``aggregate_median`` takes the median over tasks of the per-task means.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

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
