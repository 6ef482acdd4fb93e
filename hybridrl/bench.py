"""Timings of the training loop, measured with the real :func:`hybridrl.train.fit` (``make bench``).

* :func:`time_hdpo_epochs` — seconds per HDPO epoch on the paper's lost-sales setup (32768 training
  scenarios of 50 periods, minibatches of 8192, MLP 32×32×32, L = 4), with and without the dev evaluation
  that the authors' loop runs every 10 epochs (32768 scenarios of 100 periods).
* :func:`time_to_gap` — wall-clock training time until the test cost is within a given gap of the optimum.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, replace

import torch

from .experiments import lost_sales_grid
from .policies import VanillaMLP
from .scenarios import Protocol, make_splits
from .train import TrainConfig, evaluate, fit


@dataclass
class EpochTiming:
    device: str
    compiled: bool
    cuda_graph: bool
    n_train: int
    batch_size: int
    periods: int
    epochs: int
    train_seconds: float
    """Median seconds of one training epoch (no dev evaluation)."""
    dev_seconds: float
    """Seconds of one dev evaluation."""

    @property
    def amortized_seconds(self) -> float:
        """Seconds per epoch with a dev evaluation every 10 epochs, as in the authors' loop."""
        return self.train_seconds + self.dev_seconds / 10


def time_hdpo_epochs(
    *,
    n_train: int = 32768,
    n_dev: int = 32768,
    batch_size: int = 8192,
    periods: int = 50,
    dev_periods: int = 100,
    lead_time: int = 4,
    epochs: int = 6,
    device: str = "cpu",
    compile: bool = False,
    cuda_graph: bool = False,
) -> EpochTiming:
    """Time ``epochs`` HDPO epochs (the first, a warm-up that also compiles or records, is dropped) and one dev
    evaluation (never recorded as a graph; compiled with ``compile``)."""
    setting = lost_sales_grid((lead_time,), (9,))
    protocol = Protocol(n_train=n_train, n_dev=n_dev, n_test=1, train_periods=periods, dev_periods=dev_periods,
                        dev_warmup=min(60, dev_periods - 1), test_periods=2, test_warmup=1)
    splits = make_splits(setting, protocol)
    config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=3e-3, dev_every=epochs, patience=None,
                         device=device, progress=False, compile=compile, cuda_graph=cuda_graph)
    result = fit(VanillaMLP(setting.n_slots), splits.train, splits.dev, config, dev_warmup=protocol.dev_warmup)
    ends = [h["seconds"] for h in result.history]
    per_epoch = [b - a for a, b in zip(ends[:-1], ends[1:])]  # epochs 2 .. epochs-1 plus the last (with dev)
    train_seconds = statistics.median(per_epoch[:-1]) if len(per_epoch) > 1 else ends[0]
    dev = splits.dev.to(device)
    evaluate(result.policy, dev, protocol.dev_warmup, batch_size=n_dev, device=device, compile=compile)  # compiles
    _sync(device)
    t0 = time.perf_counter()
    evaluate(result.policy, dev, protocol.dev_warmup, batch_size=n_dev, device=device, compile=compile)
    _sync(device)
    return EpochTiming(str(device), compile, cuda_graph, n_train, batch_size, periods, epochs, train_seconds,
                       time.perf_counter() - t0)


@dataclass
class GapTiming:
    seconds: float | None
    """Training seconds until the test gap first fell within ``target_pct`` (``None``: never)."""
    target_pct: float
    curve: list[tuple[int, float, float]]
    """``(epoch, seconds, test gap %)`` at every dev evaluation."""


def time_to_gap(
    optimum: float,
    *,
    lead_time: int = 4,
    penalty: float = 9.0,
    target_pct: float = 0.5,
    protocol: Protocol = Protocol(n_train=8192, n_dev=4096, n_test=4096, test_periods=2000, test_warmup=500),
    config: TrainConfig = TrainConfig(epochs=50, batch_size=512, lr=2e-2, schedule="cosine", dev_every=5,
                                      patience=None, progress=False),
    device: str = "cpu",
    cuda_graph: bool = False,
) -> GapTiming:
    """Train HDPO on one lost-sales cell, recording the test gap (rounded orders) at every dev evaluation."""
    setting = lost_sales_grid((lead_time,), (penalty,))
    splits = make_splits(setting, protocol)
    curve = []

    def record(epoch, policy, seconds):
        cost = evaluate(policy, splits.test, protocol.test_warmup, round_orders=True, device=device).mean().item()
        curve.append((epoch, seconds, 100 * (cost / optimum - 1)))

    fit(VanillaMLP(setting.n_slots), splits.train, splits.dev, replace(config, device=device, cuda_graph=cuda_graph),
        dev_warmup=protocol.dev_warmup, callback=record)
    reached = next((s for _, s, gap in curve if gap <= target_pct), None)
    return GapTiming(reached, target_pct, curve)


def _sync(device) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


@dataclass
class UpdateTiming:
    problem: str
    method: str
    device: str
    batch_size: int
    hidden: tuple[int, ...]
    seconds: float
    """Seconds per policy update (rollout, every loss and optimizer step of the method), median of ``repeats``."""
    spread: tuple[float, float]
    """Lowest and highest of the repeats."""


def time_hybrid_updates(problem, splits, config, *, updates: int = 4, repeats: int = 3, name: str = "") -> UpdateTiming:
    """Seconds per policy update of :func:`hybridrl.hpo.train_hybrid` with ``config`` on ``problem``.

    Each repeat trains ``1`` and ``1 + updates`` updates with the dev evaluation only at the end, and takes the
    difference over ``updates``: set-up, the first (warm-up) update and the dev evaluation cancel out.
    """
    from .hpo import train_hybrid

    def seconds(n: int) -> float:
        run = replace(config, updates=n, dev_every=n)
        _sync(run.device)
        t0 = time.perf_counter()
        train_hybrid(problem, splits.train, splits.dev, run)
        _sync(run.device)
        return time.perf_counter() - t0

    per_update = sorted((seconds(1 + updates) - seconds(1)) / updates for _ in range(repeats))
    return UpdateTiming(name or type(problem).__name__, config.method, config.device, config.batch_size,
                        tuple(config.hidden), statistics.median(per_update), (per_update[0], per_update[-1]))


@dataclass
class NetworkEpochTiming:
    setting: str
    n_stores: int
    method: str
    device: str
    n_train: int
    batch_size: int
    periods: int
    seconds: float
    """Seconds of one training epoch (every minibatch: rollout, backward, Adam step)."""
    cuda_graph: bool = False


def time_network_epoch(method: str, *, setting: str = "one_warehouse", n_stores: int = 50, n_train: int = 8192,
                       batch_size: int = 1024, periods: int = 50, device: str = "cpu", cuda_graph: bool = False,
                       **policy_kwargs) -> NetworkEpochTiming:
    """Seconds of one HDPO epoch on a network with :func:`hybridrl.train.fit` (a 16-scenario dev evaluation
    excluded), the vanilla network with the `paper` profile's layers for ``setting``. On a GPU a first epoch
    (library start-up, the recording of ``cuda_graph``) runs untimed and the second is timed; on the CPU the
    first is timed. ``policy_kwargs`` go to the policy (e.g. ``checkpoint=True`` for the graph network, whose
    activations otherwise need memory in proportion to ``batch_size × periods × edges``)."""
    from .network_experiments import make_network, make_network_policy, network_budget
    from .networks import sample_network_scenarios
    from .train import resolve_device

    network = make_network(setting, n_stores)
    train = sample_network_scenarios(network, n_train, periods, demand_seed=0, inventory_seed=1)
    dev = sample_network_scenarios(network, 16, periods, demand_seed=2, inventory_seed=3)
    policy = make_network_policy(method, network, 0, hidden=network_budget(setting, "paper").hidden)
    for name, value in policy_kwargs.items():
        setattr(policy, name, value)
    dev_device = resolve_device(device)
    epochs = 2 if dev_device.type == "cuda" else 1
    config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=1e-3, dev_every=epochs, patience=None,
                         progress=False, device=device, cuda_graph=cuda_graph)
    result = fit(policy, train, dev, config)
    ends = [h["seconds"] for h in result.history]  # training seconds at the end of each epoch (dev included)
    _sync(dev_device)
    t1 = time.perf_counter()
    evaluate(policy, dev.to(dev_device), 0)
    _sync(dev_device)
    seconds = ends[-1] - (ends[-2] if epochs > 1 else 0.0) - (time.perf_counter() - t1)
    return NetworkEpochTiming(setting, n_stores, method, str(dev_device), n_train, batch_size, periods, seconds,
                              cuda_graph)


# ----------------------------------------------------------------------------------------------------------------
# The benchmark file, written part by part
# ----------------------------------------------------------------------------------------------------------------
PARTS = {"HDPO epochs": "epochs", "time to gap": "gaps", "hybrid updates": "updates",
         "network epochs": "network_epochs", "paper estimate": "estimates"}
"""The benchmark chapter's parts, in the order it measures them, and the argument of :func:`write_benchmarks`
that carries each."""

_REFERENCE = {"cpu": ("about 1.7 s (2-core CPU; no faster on an H100)", "<= 0.5 s on a 2-core CPU"),
              "cuda": ("about 2 s on an H100", "<= 0.05 s on an H100")}


def write_benchmarks(path, stamp, devices: list[str], repeats: int, *, epochs: dict, failed: dict | None = None,
                     gaps: dict | None = None, updates=None, network_epochs=None, estimates=None) -> str:
    """Write the benchmark chapter's file (``paper/benchmarks.md`` or ``benchmarks_gpu.md``) from the parts
    measured so far, and return its text.

    ``epochs`` maps ``(device, loop)`` to ``(median timings, ranges)`` of :func:`time_hdpo_epochs`, ``failed``
    ``(device, loop)`` to why a loop failed; ``gaps`` maps a device to its :class:`GapTiming`; ``updates``,
    ``network_epochs`` and ``estimates`` are the chapter's tables. A part left ``None`` is not measured yet: the
    file is then stamped partial and names the parts it lacks, so that a run stopped midway (say, by the time
    limit of a GPU lease) keeps what it measured."""
    import pandas as pd

    from . import reporting

    given = dict(epochs=epochs, gaps=gaps, updates=updates, network_epochs=network_epochs, estimates=estimates)
    missing = [name for name, key in PARTS.items() if given[key] is None]
    if missing:
        stamp = replace(stamp, status=f"partial: stopped before {', '.join(missing)}")
    failed, gaps = failed or {}, gaps or {}
    reached = {on: "not reached" if g.seconds is None else f"{g.seconds:.1f} s" for on, g in gaps.items()}
    rows = []
    for on in devices:
        if (on, "eager") not in epochs:
            continue
        kind = "cuda" if on.startswith("cuda") else "cpu"
        e, spread = epochs[(on, "eager")]
        best = min((loop for d, loop in epochs if d == on), key=lambda loop: epochs[(on, loop)][0].amortized)
        b, b_spread = epochs[(on, best)]
        rows += [
            dict(measurement="HDPO epoch, lost sales (32768 x 50 periods, batch 8192, MLP 32x32x32, L = 4), eager",
                 device=on, ours=f"{e.train:.3f} s (range {spread['train']})", reference="–", target="–"),
            dict(measurement="same, with a dev evaluation (32768 x 100 periods) every 10 epochs, eager", device=on,
                 ours=f"{e.amortized:.3f} s (range {spread['amortized']})", reference=_REFERENCE[kind][0],
                 target=_REFERENCE[kind][1] if kind == "cpu" else "–"),
            dict(measurement=f"same, the fastest loop ({best})", device=on,
                 ours=f"{b.amortized:.3f} s (range {b_spread['amortized']}); training epoch alone {b.train:.3f} s",
                 reference=_REFERENCE[kind][0], target=_REFERENCE[kind][1]),
            dict(measurement="one dev evaluation (32768 x 100 periods, no gradient), eager", device=on,
                 ours=f"{e.dev:.3f} s (range {spread['dev']})", reference="–", target="–"),
        ]
        if on in reached:
            rows.append(dict(measurement="training time to a test cost within 0.5 % of the DP optimum (L = 4, p = 9, "
                             "quick budget" + (", `cuda_graph=True`)" if on != "cpu" else ")"), device=on,
                             ours=reached[on], reference="unknown", target="report"))
    loops = pd.DataFrame([dict(device=on, loop=loop, training_epoch=e.train, dev_evaluation=e.dev,
                               epoch_with_dev_every_10=e.amortized, range_of_the_last=spread["amortized"])
                          for (on, loop), (e, spread) in epochs.items()]
                         + [dict(device=on, loop=loop, training_epoch=float("nan"), dev_evaluation=float("nan"),
                                 epoch_with_dev_every_10=float("nan"), range_of_the_last=f"failed: {why}")
                            for (on, loop), why in failed.items()])
    curve = pd.concat([pd.DataFrame(g.curve, columns=["epoch", "seconds", "test_gap_pct"]).assign(device=on)
                       for on, g in gaps.items()], ignore_index=True) if gaps else None
    sections = [
        ("Seconds of one HDPO epoch by training loop (eager; `compile=True`; `cuda_graph=True`, GPU only; both):",
         loops, 3),
        ("Seconds per hybrid policy update (HPO spec: the largest published sizes, the `paper` profile's networks "
         f"and batches; median of {repeats} repeat(s) with the range):", updates, 3),
        ("One HDPO epoch on the `paper` profile's networks at their largest size (50 periods; the vanilla network "
         "with the `paper` layers; the graph network with activation checkpointing; a step is one minibatch):",
         network_epochs, 3),
        ("Test gap along training (time to gap):", curve, 3),
        ("The `paper` profile on this device, one run at a time: an estimate, not a measurement (the plan's steps "
         "times the seconds per step measured above, for the workloads measured here; `hours` covers "
         "`measured_steps_pct` of the chapter's steps; an upper bound in steps and instance sizes, a lower bound "
         "where a single-store run trains four cells at once; see the notebook):",
         None if estimates is None else estimates[["device", "chapter", "runs", "steps", "measured_steps_pct",
                                                   "hours", "not_measured"]], 1),
    ]
    lines = [
        "# Benchmarks", "", f"_{stamp.line()}_", "",
        "Devices: " + "; ".join(f"`{on}` = {reporting.device_name(on)}" for on in devices)
        + f"; PyTorch {torch.__version__}. Every measurement ran on each device in this one run (the time to a gap: "
        "on the last device only). Timings use the package's real training loop (`hybridrl.train.fit`); seconds per "
        f"epoch are medians over epochs after the first, repeated {repeats} time(s) (median and range shown).", "",
    ]
    if missing:
        lines += [f"**Partial:** this run stopped before it measured: {', '.join(missing)}.", ""]
    lines += [reporting.markdown_table(pd.DataFrame(rows)), ""]
    for caption, table, digits in sections:
        if table is not None:
            lines += [caption, "", reporting.markdown_table(table, digits=digits), ""]
    text = "\n".join(lines)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return text
