"""Gradient estimators: functions from a rollout to a surrogate loss whose gradient is the estimate.

Every estimator has the signature ``estimator(trajectory) -> loss`` (a scalar tensor); calling ``backward()``
on the loss puts the gradient estimate in the parameters' ``.grad``. The training loop looks estimators up by
name in :data:`ESTIMATORS`, so adding one is one function, one line and one test.

HDPO uses only the pathwise estimator (spec §2): the hindsight cost C(θ; ξ) of each scenario is differentiated
through the whole rollout by automatic differentiation, with no score-function term, no critic and no
exploration noise.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from .inventory import Trajectory


def pathwise(trajectory: Trajectory) -> Tensor:
    """∇θ of the mean hindsight cost: Σ cost / (B·S·T) over **all** periods, warm-up included (spec §3.2)."""
    return trajectory.cost.mean()


Estimator = Callable[[Trajectory], Tensor]
ESTIMATORS: dict[str, Estimator] = {"pathwise": pathwise}
