"""The training loop: HDPO by minibatch Adam on a fixed set of training scenarios (spec §3.3).

One epoch is one shuffled pass over the training scenarios. Each minibatch is rolled out through the
differentiable simulator, the estimator turns the rollout into a surrogate loss, and Adam takes a step. Every
``dev_every`` epochs the policy is evaluated on the dev scenarios without gradients; the best-dev parameters
are kept (per member, see :mod:`hybridrl.policies`) and training stops after ``patience`` epochs without a dev
improvement. Test scenarios are never seen here (spec §11 R3): evaluate the returned policy with
:func:`evaluate`.

**On a GPU** one training step launches thousands of small kernels (every simulated period of the policy and
the simulator, forward and backward), and launching them, not computing them, takes the time. With
``TrainConfig(cuda_graph=True)`` the first step is recorded once as a CUDA graph (after two warm-up steps whose
effect on the parameters and on Adam's state is undone) and every later minibatch is copied into the recorded
input buffers and replayed with a single launch. Nothing in the step may wait for the device: the non-negative
order check moves to the end of the epoch. Training follows the same path as without a graph, step for step
(tested on the CPU, where the same buffered step runs without recording, and on CUDA against the CPU).

Interruptions lose nothing: with ``checkpoint=...`` the full training state (parameters, optimizer, best
parameters, history, shuffling generator) is written atomically at every dev evaluation and picked up again
by the next call with the same path.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from ._config import check_choice, check_int, check_positive, from_dict
from ._device import deterministic_requested, use_deterministic_cuda
from .cache import save_state_atomic
from .estimators import ESTIMATORS
from .inventory import rollout
from .scenarios import Scenarios

SCHEDULES = ("constant", "cosine")


@dataclass
class TrainConfig:
    """Optimisation settings. Defaults are the paper's one-store protocol (spec §3.3, §7)."""

    epochs: int = 20000
    """Maximum number of epochs (passes over the training scenarios)."""
    batch_size: int = 8192
    """Scenarios per minibatch."""
    lr: float = 3e-3
    """Adam learning rate (betas 0.9/0.999, eps 1e-8, no weight decay)."""
    schedule: str = "constant"
    """Learning-rate schedule: ``constant`` (the paper) or ``cosine`` decay to zero over ``epochs``."""
    dev_every: int = 10
    """Evaluate on the dev scenarios every this many epochs."""
    patience: int | None = 500
    """Stop after this many epochs without dev improvement (``None``: never)."""
    grad_clip: float | None = None
    """Clip the gradient norm of each member to this value (``None``: no clipping)."""
    estimator: str = "pathwise"
    """Name of the gradient estimator in :data:`hybridrl.estimators.ESTIMATORS`."""
    seed: int = 0
    """Seed of the minibatch shuffling (network initialisation is seeded by the policy)."""
    device: str = "cpu"
    """``cpu``, ``cuda``, ``cuda:1``, ... or ``auto`` (CUDA when available)."""
    max_seconds: float | None = None
    """Stop after this much wall-clock training time (``None``: no limit)."""
    compile: bool = False
    """Run each simulated period through ``torch.compile`` (faster after a compilation of some seconds)."""
    cuda_graph: bool = False
    """Capture one training step (rollout, loss, backward, Adam step) as a CUDA graph and replay it for every
    minibatch: on a GPU the step then costs one launch instead of thousands. The same numbers as without
    (module docstring). Deterministic policies only; on the CPU the same step runs without a graph."""
    progress: bool = True
    """Show a tqdm progress bar."""

    def __post_init__(self):
        check_int("epochs", self.epochs, minimum=1)
        check_int("batch_size", self.batch_size, minimum=1)
        check_positive("lr", self.lr)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_int("dev_every", self.dev_every, minimum=1)
        if self.patience is not None:
            check_int("patience", self.patience, minimum=1)
        if self.grad_clip is not None:
            check_positive("grad_clip", self.grad_clip)
        check_choice("estimator", self.estimator, tuple(ESTIMATORS))
        check_int("seed", self.seed, minimum=0)
        resolve_device(self.device)
        if self.max_seconds is not None:
            check_positive("max_seconds", self.max_seconds)
        for name in ("compile", "cuda_graph", "progress"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        return from_dict(cls, values, where="train config")


EXECUTION_ONLY = ("progress", "cuda_graph")
""":class:`TrainConfig` fields that change how a run executes, not what it computes: never part of a cache key."""


def config_key(config: TrainConfig, *, without: tuple[str, ...] = ()) -> dict:
    """``config`` as a dict for a cache key: every field but :data:`EXECUTION_ONLY` and ``without``."""
    return {k: v for k, v in asdict(config).items() if k not in EXECUTION_ONLY + tuple(without)}


def resolve_device(device: str | torch.device) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; anything else must name a usable device. On CUDA, with
    ``HYBRIDRL_DETERMINISTIC=1``, it also switches PyTorch to deterministic kernels (:mod:`hybridrl._device`)."""
    if str(device) == "auto":
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError) as err:
            raise ValueError(f"device must be 'cpu', 'cuda[:k]' or 'auto', got {device!r}") from err
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device={device!r} was requested but CUDA is not available")
    if deterministic_requested() and dev.type == "cuda":  # HYBRIDRL_DETERMINISTIC=1 (a bad value fails here)
        use_deterministic_cuda()
    return dev


@dataclass
class FitResult:
    """What :func:`fit` returns. ``policy`` holds the best-dev parameters of every member."""

    policy: nn.Module
    history: list[dict] = field(default_factory=list)
    """One row per (epoch, member): ``epoch, member, step, seconds, train_cost, dev_cost`` (NaN if not evaluated)."""
    best_dev: list[float] = field(default_factory=list)
    """Best dev cost per member."""
    best_epoch: list[int] = field(default_factory=list)
    """Epoch (1-based) of the best dev cost per member."""
    epochs: int = 0
    seconds: float = 0.0
    stopped: str = ""
    """Why training stopped: ``epochs``, ``patience`` or ``time``."""

    def history_frame(self):
        """The per-epoch record as a ``pandas.DataFrame``."""
        import pandas as pd

        return pd.DataFrame(self.history)

    def save_history(self, path: str | Path) -> Path:
        """Write the per-epoch record as CSV."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.history_frame().to_csv(path, index=False)
        return path


def _members(policy: nn.Module) -> int:
    return int(getattr(policy, "members", 1))


def _member_view(cost: Tensor, members: int) -> Tensor:
    """Per-store costs ``[..., S]`` -> per-member ``[..., M]``: itself, or the mean over stores if shared."""
    return cost if members == cost.shape[-1] else cost.mean(-1, keepdim=True)


def evaluation_chunk(scenarios: Scenarios, entries: int = 2**21) -> int:
    """Scenarios per evaluation chunk: about ``entries`` inventory entries (scenarios × stores × slots)."""
    per_scenario = scenarios.initial_inventory.shape[1] * scenarios.initial_inventory.shape[2]
    return max(1, entries // per_scenario)


@torch.no_grad()
def evaluate(
    policy: nn.Module,
    scenarios: Scenarios,
    warmup: int = 0,
    *,
    round_orders: bool = False,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    compile: bool = False,
) -> Tensor:
    """Average cost per period over ``t >= warmup`` for every scenario and store: ``[N, S]`` on the CPU.

    Runs without gradients and without any parameter update, in chunks of ``batch_size`` scenarios. By default
    a chunk holds about 2²¹ inventory entries (scenarios × stores × slots): every simulated period allocates a
    few tensors of that size, and over thousands of periods larger chunks made the process's memory grow to
    several GB (the allocator keeps freed blocks) while running no faster. Results do not depend on the chunks.
    """
    if device is None:
        device = next((p.device for p in policy.parameters()), torch.device("cpu"))
    device = resolve_device(device)  # "auto" -> CUDA when available
    if warmup >= scenarios.periods:
        raise ValueError(f"warmup={warmup} leaves no period to evaluate out of {scenarios.periods}")
    if batch_size is None:
        batch_size = evaluation_chunk(scenarios)
    out = []
    for start in range(0, scenarios.n, batch_size):
        chunk = scenarios[start : start + batch_size].to(device)
        out.append(rollout(policy, chunk, round_orders=round_orders, compile=compile).hindsight_cost(warmup).cpu())
    return torch.cat(out)


def fit(
    policy: nn.Module,
    train: Scenarios,
    dev: Scenarios,
    config: TrainConfig = TrainConfig(),
    *,
    dev_warmup: int = 0,
    checkpoint: str | Path | None = None,
    description: str = "HDPO",
    callback: Callable[[int, nn.Module, float], dict | None] | None = None,
    round_orders: bool = False,
) -> FitResult:
    """Train ``policy`` on ``train`` with the pathwise (or another named) estimator; select on ``dev``.

    Training always uses continuous orders. With ``round_orders`` (integer demand) the dev evaluations round
    orders as the test does, so that the model is selected on the policy that will be tested.

    ``callback(epoch, policy, seconds)``, if given, runs after every dev evaluation (e.g. to record test costs
    for a benchmark); its own run time is not counted in the training time. A dict it returns is added to that
    epoch's history rows, so that it is kept in the checkpoint and survives an interruption.
    """
    # ---- plumbing: devices, members, estimator --------------------------------------------------------------
    device = resolve_device(config.device)
    members = _members(policy)
    if members not in (1, train.setting.n_stores):
        raise ValueError(f"policy has {members} members but the setting has {train.setting.n_stores} stores")
    for name, p in policy.named_parameters():
        if p.shape[:1] != (members,):
            raise ValueError(f"parameter {name} must have a leading member dimension of size {members}")
    if dev_warmup >= dev.periods:
        raise ValueError(f"dev_warmup={dev_warmup} leaves no dev period out of {dev.periods}")
    estimator = ESTIMATORS[config.estimator]
    policy.to(device)
    train, dev = train.to(device), dev.to(device)
    batch_size = min(config.batch_size, train.n)
    steps_per_epoch = train.n // batch_size  # the remainder of a shuffled epoch is left for the next ones
    total_steps = steps_per_epoch * config.epochs

    graphed = config.cuda_graph and device.type == "cuda"
    if config.cuda_graph and hasattr(policy, "pop_record"):
        raise ValueError(f"cuda_graph=True needs a deterministic policy; {type(policy).__name__} samples its actions")
    # a graph reads the learning rate from a tensor on the device (Adam's capturable mode), which the schedule
    # updates in place; the schedule's own bookkeeping stays in Python numbers
    lr = torch.tensor(config.lr, device=device) if graphed else config.lr
    optimizer = torch.optim.Adam(policy.parameters(), lr=lr, capturable=graphed)
    for group in optimizer.param_groups:
        group["initial_lr"] = config.lr
    if config.schedule == "cosine":
        lr_lambda = lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))  # noqa: E731
    else:
        lr_lambda = lambda step: 1.0  # noqa: E731
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)
    shuffle = torch.Generator().manual_seed(config.seed)

    best_state = copy.deepcopy(policy.state_dict())
    best_dev = torch.full((members,), math.inf)
    best_epoch = torch.zeros(members, dtype=torch.long)
    history: list[dict] = []
    start_epoch, elapsed = 0, 0.0

    checkpoint = Path(checkpoint) if checkpoint is not None else None
    if checkpoint is not None and checkpoint.exists():
        state = torch.load(checkpoint, map_location=device, weights_only=False)
        policy.load_state_dict(state["policy"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        shuffle.set_state(state["shuffle"])
        best_state, best_dev, best_epoch = state["best_state"], state["best_dev"], state["best_epoch"]
        history, start_epoch, elapsed = state["history"], state["epoch"], state["seconds"]
        for group in optimizer.param_groups:  # a state saved with or without a graph resumes with or without one
            rate = float(group["lr"])
            group["lr"] = torch.tensor(rate, device=device) if graphed else rate

    def save_checkpoint(epoch: int) -> None:
        if checkpoint is not None:
            save_state_atomic(
                checkpoint,
                dict(
                    policy=policy.state_dict(), optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                    shuffle=shuffle.get_state(), best_state=best_state, best_dev=best_dev, best_epoch=best_epoch,
                    history=history, epoch=epoch, seconds=elapsed, config=asdict(config),
                ),
            )

    bar = None
    if config.progress:
        from ._progress import progress_bar

        bar = progress_bar(total=config.epochs, initial=start_epoch, desc=description, leave=False, mininterval=5.0)

    stopped, epoch = "epochs", start_epoch
    clock = time.perf_counter() - elapsed

    def train_step(batch: Scenarios) -> tuple[Tensor, Tensor | None]:
        """One step on a minibatch: its cost per store and its smallest order (both detached)."""
        trajectory = rollout(policy, batch, compile=config.compile, check_orders=not config.cuda_graph)
        loss = estimator(trajectory)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip is not None:
            _clip_per_member(policy, config.grad_clip, members)
        optimizer.step()
        return trajectory.cost.detach().mean(dim=(0, 2)), trajectory.lowest_order

    step = _BufferedStep(train_step, optimizer, record=graphed) if config.cuda_graph else None

    for epoch in range(start_epoch + 1, config.epochs + 1):
        # ---- ALGO LOGIC: one epoch of HDPO ------------------------------------------------------------------
        policy.train()
        epoch_cost = torch.zeros(train.setting.n_stores, device=device)
        lowest = None
        order = torch.randperm(train.n, generator=shuffle).to(device)
        for k in range(steps_per_epoch):
            mb_index = order[k * batch_size : (k + 1) * batch_size]
            if step is None:
                cost, _ = train_step(train[mb_index])
            else:
                cost, lowest_now = step(train, mb_index)
                if lowest_now is not None:  # (None: a policy that may return stock places signed orders)
                    # (a replay overwrites its outputs: keep a copy, not the recorded tensor itself)
                    lowest = lowest_now.clone() if lowest is None else torch.minimum(lowest, lowest_now)
            _keep_lr_tensors(optimizer, scheduler.step, graphed)
            epoch_cost += cost
        if lowest is not None:  # the order check of the buffered step: once per epoch
            from .inventory import check_lowest_order

            check_lowest_order(lowest)
        train_cost = _member_view(epoch_cost / steps_per_epoch, members).cpu()

        # ---- dev evaluation and best-model selection ----------------------------------------------------------
        time_up = config.max_seconds is not None and time.perf_counter() - clock >= config.max_seconds
        dev_cost = torch.full((members,), math.nan)
        evaluated = epoch % config.dev_every == 0 or epoch == config.epochs or time_up
        if evaluated:
            policy.eval()
            dev_cost = evaluate(policy, dev, dev_warmup, round_orders=round_orders,
                                compile=config.compile)
            dev_cost = _member_view(dev_cost.mean(0), members)
            improved = dev_cost < best_dev
            if bool(improved.any()):
                best_dev = torch.where(improved, dev_cost, best_dev)
                best_epoch = torch.where(improved, torch.tensor(epoch), best_epoch)
                best_state = _merge_members(best_state, policy.state_dict(), improved, members)
        elapsed = time.perf_counter() - clock
        extra = {}
        if callback is not None and evaluated:
            extra = callback(epoch, policy, elapsed) or {}
            clock = time.perf_counter() - elapsed
        for m in range(members):
            history.append(
                dict(epoch=epoch, member=m, step=epoch * steps_per_epoch, seconds=elapsed,
                     train_cost=float(train_cost[m]), dev_cost=float(dev_cost[m]), **extra)
            )
        if bar is not None:
            bar.update(1)
            bar.set_postfix(train=f"{float(train_cost.mean()):.4f}", dev=f"{float(best_dev.mean()):.4f}")

        # ---- stopping rules -------------------------------------------------------------------------------------
        if evaluated:
            save_checkpoint(epoch)
            if config.patience is not None and bool(((epoch - best_epoch) >= config.patience).all()):
                stopped = "patience"
                break
        if time_up:
            stopped = "time"
            break
    if bar is not None:
        bar.close()

    policy.load_state_dict(best_state)
    policy.eval()
    return FitResult(
        policy=policy,
        history=history,
        best_dev=[float(v) for v in best_dev],
        best_epoch=[int(v) for v in best_epoch],
        epochs=epoch,
        seconds=time.perf_counter() - clock,
        stopped=stopped,
    )


# ----------------------------------------------------------------------------------------------------------------
# The buffered (CUDA-graph) training step
# ----------------------------------------------------------------------------------------------------------------
class _BufferedStep:
    """``step(train, index)``: copy the minibatch ``train[index]`` into fixed input buffers and run ``body`` on
    them; with ``record`` (CUDA) the body is recorded once as a CUDA graph and replayed afterwards.

    ``body(batch)`` must do the whole optimisation step and return detached tensors. The first call runs two
    warm-up steps (CUDA's libraries, autograd's and ``torch.compile``'s caches, Adam's state all need a first
    run outside a recording) and then puts the parameters and Adam's state back as they were, so that the
    training path is the one without buffers. The warm-up runs on the CPU too: tests check it there.
    """

    WARMUP = 2

    def __init__(self, body: Callable, optimizer: torch.optim.Optimizer, *, record: bool):
        self.body, self.optimizer, self.record = body, optimizer, record
        self.batch, self.outputs, self.graph = None, None, None

    def __call__(self, train: Scenarios, index: Tensor) -> tuple[Tensor, ...]:
        if self.batch is None:
            self.batch = train[index]  # the buffers: fresh tensors of the minibatch's shapes
            self._warm_up()
        else:
            self.batch.fill_from(train, index)
        if self.graph is not None:
            self.graph.replay()
            return self.outputs
        return self.body(self.batch)

    def _warm_up(self) -> None:
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        saved_params = [p.detach().clone() for p in params]
        saved_state = {p: {k: v.clone() if isinstance(v, Tensor) else v for k, v in self.optimizer.state[p].items()}
                       for p in params if p in self.optimizer.state}
        stream = torch.cuda.Stream() if self.record else None
        if stream is not None:
            stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext():
            for _ in range(self.WARMUP):
                self.body(self.batch)
        if stream is not None:
            torch.cuda.current_stream().wait_stream(stream)
        with torch.no_grad():  # undo the warm-up: parameters and Adam's state as before
            for p, saved in zip(params, saved_params):
                p.copy_(saved)
            for p in params:
                state = self.optimizer.state.get(p, {})
                for key, value in state.items():
                    if isinstance(value, Tensor):
                        value.copy_(saved_state[p][key]) if p in saved_state else value.zero_()
        if self.record:
            self.optimizer.zero_grad(set_to_none=True)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.outputs = self.body(self.batch)


def _keep_lr_tensors(optimizer: torch.optim.Optimizer, step_schedule: Callable[[], None], graphed: bool) -> None:
    """Step the learning-rate schedule; with a recorded step, write the new rate into the device tensor that the
    recording reads (PyTorch's schedulers do so themselves in recent versions; older ones replace it)."""
    tensors = [group["lr"] for group in optimizer.param_groups] if graphed else None
    step_schedule()
    if tensors is not None:
        for group, tensor in zip(optimizer.param_groups, tensors):
            if group["lr"] is not tensor:
                tensor.fill_(float(group["lr"]))
                group["lr"] = tensor


def _merge_members(best: dict, current: dict, improved: Tensor, members: int) -> dict:
    """Copy the parameters of the improved members from ``current`` into ``best`` (buffers follow member 0)."""
    out = {}
    for key, value in current.items():
        if value.dim() >= 1 and value.shape[0] == members:
            mask = improved.to(value.device).view(members, *([1] * (value.dim() - 1)))
            out[key] = torch.where(mask, value, best[key].to(value.device)).detach().clone()
        else:
            out[key] = value.detach().clone() if bool(improved.all()) else best[key]
    return out


def _clip_per_member(policy: nn.Module, max_norm: float, members: int) -> None:
    """Clip the gradient norm of each member separately (members are independent problems)."""
    grads = [p.grad for p in policy.parameters() if p.grad is not None]
    if not grads:
        return
    norms = torch.stack([g.reshape(members, -1).pow(2).sum(1) for g in grads]).sum(0).sqrt()
    scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(scale.view(members, *([1] * (g.dim() - 1))))
