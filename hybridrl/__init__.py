"""hybridrl: reproducible HDPO and HPO — policy optimisation by differentiating through simulators.

The notebooks import what they need from the modules below; this page maps the papers' notation to the code.

=====================  ==============================================  =============================
paper                  meaning                                         code
=====================  ==============================================  =============================
ξ                      a scenario: demand trace, costs, lead times,    :class:`~hybridrl.scenarios.Scenarios`
                       initial inventory
C(θ; ξ)                hindsight cost of the policy on a scenario       ``Trajectory.hindsight_cost``
π_θ                    a (deterministic) policy                         :mod:`hybridrl.policies`
p, h, L                underage cost, holding cost, lead time           ``underage_cost``, ``holding_cost``, ``lead_time``
S, (S, c)              base-stock level, order cap                      ``BaseStock.level``, ``CappedBaseStock.cap``
∇θ C (pathwise)        gradient through the simulator                   :func:`hybridrl.estimators.pathwise`
=====================  ==============================================  =============================

Modules, each one idea: :mod:`~hybridrl.inventory` (the simulator), :mod:`~hybridrl.scenarios` (seeded data
and splits), :mod:`~hybridrl.policies`, :mod:`~hybridrl.estimators`, :mod:`~hybridrl.reinforce` (the REINFORCE
baseline), :mod:`~hybridrl.train` (the training loop), :mod:`~hybridrl.references` (exact optima),
:mod:`~hybridrl.experiments` (grids, budgets, cached runs), :mod:`~hybridrl.reporting` and
:mod:`~hybridrl.reproduction` (artifacts under ``paper/``), :mod:`~hybridrl.paths`, :mod:`~hybridrl.cache`,
:mod:`~hybridrl.bench`.
"""

__version__ = "0.1.0"
