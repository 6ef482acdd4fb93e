"""The Gymnasium environments: the API checker, the same numbers as the simulator, seeding, autoreset, errors."""

import subprocess
import sys
import tempfile
import warnings

import numpy as np
import pytest
import torch

gymnasium = pytest.importorskip("gymnasium")

from gymnasium import spaces  # noqa: E402
from gymnasium.error import ResetNeeded  # noqa: E402
from gymnasium.utils.env_checker import check_env  # noqa: E402

from hybridrl import envs, paths  # noqa: E402
from hybridrl.inventory import ClippedNormal, InventorySetting, Poisson, Store, rollout  # noqa: E402
from hybridrl.policies import BaseStock  # noqa: E402
from hybridrl.scenarios import sample_scenarios  # noqa: E402
from hybridrl.train import evaluate  # noqa: E402

LOST = InventorySetting(stores=Store(Poisson(5.0), 9.0, 1.0, 2), unmet_demand="lost")
BACKLOG = InventorySetting(  # two independent stores of different lead times (padded slots), backlog
    stores=(Store(ClippedNormal(5.0, 1.6), 4.0, 1.0, 1), Store(ClippedNormal(8.0, 2.0), 19.0, 1.0, 3)),
    unmet_demand="backlog",
)
ZERO_LEAD_PROFIT = InventorySetting(stores=Store(Poisson(3.0), 2.0, 0.5, 0), unmet_demand="lost", objective="profit")
SETTINGS = {"lost": LOST, "backlog_two_stores": BACKLOG, "zero_lead_profit": ZERO_LEAD_PROFIT}

# what Gymnasium's checker may say about our spaces: advice, not violations (module docstring of hybridrl.envs)
ADVISORIES = ("recommend using a symmetric and normalized space", "maximum value is infinity",
              "minimum value is -infinity")


def _check(env):
    """``check_env`` raises on API violations; it reports many others as warnings, which must not occur."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env, skip_render_check=True)
    problems = [str(w.message) for w in caught if not any(a in str(w.message) for a in ADVISORIES)]
    assert not problems, problems


def _order_up_to(level):
    return lambda obs: np.maximum(level - obs.sum(-1), 0.0)


def _play(env, policy, steps, seed=None):
    obs, _ = env.reset(seed=seed)
    out = dict(obs=[obs], reward=[], terminated=[], truncated=[], info=[])
    for _ in range(steps):
        obs, reward, terminated, truncated, info = env.step(policy(obs))
        for key, value in zip(("obs", "reward", "terminated", "truncated", "info"),
                              (obs, reward, terminated, truncated, info)):
            out[key].append(value)
    return out


# ---- the API ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", SETTINGS)
def test_gymnasium_check_env_passes(name):
    _check(envs.InventoryEnv(SETTINGS[name], horizon=10))


def test_check_env_on_a_replayed_scenario_and_through_gymnasium_make():
    scenario = sample_scenarios(LOST, 1, 12, demand_seed=1, inventory_seed=2)
    _check(envs.InventoryEnv(LOST, scenarios=scenario))
    made = gymnasium.make(envs.ENV_ID, setting=BACKLOG, horizon=5)
    assert isinstance(made.unwrapped, envs.InventoryEnv)
    _check(made.unwrapped)
    vec = gymnasium.make_vec(envs.ENV_ID, num_envs=3, vectorization_mode="vector_entry_point", setting=LOST, horizon=5)
    assert isinstance(vec, envs.InventoryVectorEnv) and vec.num_envs == 3


def test_spaces_are_documented_ones():
    env = envs.InventoryVectorEnv(BACKLOG, num_envs=4, horizon=3)
    assert env.single_observation_space.shape == (2, 3) and env.observation_space.shape == (4, 2, 3)
    assert env.single_action_space.shape == (2,) and env.action_space.shape == (4, 2)
    np.testing.assert_allclose(env.single_action_space.high, [20.0, 32.0])  # 4 x mean demand
    assert env.single_observation_space.low[0, 0] == -np.inf  # backlog: on-hand may be negative
    assert envs.InventoryEnv(LOST, max_order=7).action_space.high.tolist() == [7.0]
    obs, _ = env.reset(seed=0)
    assert obs.dtype == np.float32 and obs in env.observation_space
    for _ in range(3):
        obs, reward, *_ = env.step(env.action_space.sample())
        assert obs in env.observation_space and reward.dtype == np.float64 and reward.shape == (4,)


# ---- the environment is the simulator ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", SETTINGS)
def test_vector_env_costs_equal_the_simulator(name):
    setting = SETTINGS[name]
    env = envs.InventoryVectorEnv(setting, num_envs=32, horizon=25, autoreset_mode="disabled")
    level = 3.0 * min(s.demand.mean for s in setting.stores)  # orders stay below the action bound (4 x mean)
    policy = BaseStock(members=1, initial_level=level)
    numpy_policy = _order_up_to(float(policy.level.detach()))
    out = _play(env, numpy_policy, 25, seed=3)
    rewards = np.stack(out["reward"], 1)  # [B, T]
    per_store = np.stack([i["cost"] for i in out["info"]], -1)  # [B, S, T]
    with torch.no_grad():
        trajectory = rollout(policy, env.scenarios, record=True)
    # the same costs, period by period and store by store, as the simulator under a torch policy ...
    np.testing.assert_allclose(per_store, trajectory.cost.numpy(), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(rewards, -trajectory.cost.sum(1).numpy(), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(np.stack(out["obs"][:-1], 2), trajectory.inventory.numpy(), rtol=1e-5, atol=1e-4)
    # ... and exactly the same under the same NumPy policy wrapped for the simulator
    replay = rollout(envs.ExternalPolicy(numpy_policy, setting), env.scenarios, record=True)
    np.testing.assert_array_equal(rewards, -replay.cost.sum(1).double().numpy())
    np.testing.assert_array_equal(np.stack([i["demand"] for i in out["info"]], -1), env.scenarios.demand.numpy())
    assert rewards.std() > 0  # the test would notice a constant


def test_replaying_fixed_scenarios_matches_evaluate():
    test = sample_scenarios(LOST, 16, 30, demand_seed=65, inventory_seed=4840)
    env = envs.InventoryVectorEnv(LOST, scenarios=test, autoreset_mode="disabled")
    assert env.num_envs == 16 and env.horizon == 30
    policy = _order_up_to(14.0)
    first = np.stack(_play(env, policy, 30)["reward"], 1)
    again = np.stack(_play(env, policy, 30, seed=123)["reward"], 1)  # fixed data: seeds do not matter
    np.testing.assert_array_equal(first, again)
    costs = evaluate(envs.ExternalPolicy(policy, LOST), test, warmup=10)[:, 0]
    np.testing.assert_allclose(costs.numpy(), -first[:, 10:].mean(1), rtol=1e-6)


def test_demand_follows_the_settings_model():
    env = envs.InventoryVectorEnv(BACKLOG, num_envs=64, horizon=100)
    env.reset(seed=0)
    demand = env.scenarios.demand  # [B, S, T]
    assert (demand >= 0).all()
    for s, store in enumerate(BACKLOG.stores):
        assert abs(float(demand[:, s].mean()) - store.demand.mean) < 0.1
        assert abs(float(demand[:, s].std()) - store.demand.std) < 0.1
    lost = envs.InventoryVectorEnv(LOST, num_envs=64, horizon=100)
    lost.reset(seed=0)
    d = lost.scenarios.demand
    assert torch.equal(d, d.round()) and abs(float(d.mean()) - 5.0) < 0.1  # Poisson: integers, mean 5


# ---- seeding --------------------------------------------------------------------------------------------------------
def test_same_seed_same_trajectory_different_seed_different():
    policy = _order_up_to(15.0)

    def run(seed):
        out = _play(envs.InventoryVectorEnv(LOST, num_envs=8, horizon=20), policy, 20, seed=seed)
        return np.stack(out["obs"]), np.stack(out["reward"])

    torch.rand(3), np.random.rand(3)  # unrelated global random activity must not matter
    a, b, c = run(7), run(7), run(8)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1]) and not np.array_equal(a[0][0], c[0][0])


def test_single_env_is_sub_environment_zero_of_the_vector_env():
    single = _play(envs.InventoryEnv(LOST, horizon=15), lambda o: _order_up_to(15.0)(o[None])[0], 15, seed=11)
    vector = _play(envs.InventoryVectorEnv(LOST, num_envs=1, horizon=15), _order_up_to(15.0), 15, seed=11)
    np.testing.assert_array_equal(np.stack(single["obs"]), np.stack(vector["obs"])[:, 0])
    np.testing.assert_array_equal(np.array(single["reward"]), np.stack(vector["reward"])[:, 0])
    assert isinstance(single["reward"][0], float) and isinstance(single["truncated"][0], bool)


def test_each_episode_draws_new_data():
    env = envs.InventoryVectorEnv(LOST, num_envs=4, horizon=5, autoreset_mode="same_step")
    env.reset(seed=0)
    first = env.scenarios
    for _ in range(5):
        env.step(np.full((4, 1), 5.0))
    assert not torch.equal(first.demand, env.scenarios.demand)


# ---- episodes: truncation and autoreset ---------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["next_step", "same_step", "disabled"])
def test_truncated_exactly_at_the_horizon_and_never_terminated(mode):
    env = envs.InventoryVectorEnv(LOST, num_envs=3, horizon=7, autoreset_mode=mode)
    out = _play(env, _order_up_to(15.0), 7, seed=0)
    truncated = np.stack(out["truncated"])
    assert not np.stack(out["terminated"]).any()
    assert not truncated[:-1].any() and truncated[-1].all()
    single = _play(envs.InventoryEnv(LOST, horizon=7), lambda o: np.array([5.0]), 7, seed=0)
    assert single["truncated"] == [False] * 6 + [True] and not any(single["terminated"])


def test_next_step_autoreset():
    env = envs.InventoryVectorEnv(LOST, num_envs=3, horizon=4, autoreset_mode="next_step")
    assert env.metadata["autoreset_mode"] == gymnasium.vector.AutoresetMode.NEXT_STEP
    _play(env, _order_up_to(15.0), 4, seed=0)  # the episode ends with truncation
    old = env.scenarios
    obs, reward, terminated, truncated, info = env.step(np.full((3, 1), 19.0))  # this action is ignored
    assert env.scenarios is not old  # a new episode with new data
    np.testing.assert_array_equal(obs, env.scenarios.initial_inventory.numpy())
    assert (reward == 0).all() and not terminated.any() and not truncated.any() and info == {}
    obs, reward, terminated, truncated, _ = env.step(np.zeros((3, 1)))  # the new episode goes on normally
    assert (reward < 0).all() and not truncated.any()


def test_same_step_autoreset_matches_next_step():
    policy = _order_up_to(15.0)
    nxt = envs.InventoryVectorEnv(LOST, num_envs=3, horizon=4, autoreset_mode="next_step")
    same = envs.InventoryVectorEnv(LOST, num_envs=3, horizon=4, autoreset_mode="same_step")
    a, b = _play(nxt, policy, 4, seed=5), _play(same, policy, 4, seed=5)
    np.testing.assert_array_equal(np.stack(a["reward"]), np.stack(b["reward"]))
    info = b["info"][-1]
    assert info["_final_obs"].all() and info["_final_info"].all()
    # the last observation of the episode is in info, the first of the next one is returned
    np.testing.assert_array_equal(np.stack(info["final_obs"]), a["obs"][-1])
    np.testing.assert_array_equal(info["final_info"]["cost"], a["info"][-1]["cost"])
    reset_obs, *_ = nxt.step(np.zeros((3, 1)))
    np.testing.assert_array_equal(b["obs"][-1], reset_obs)
    np.testing.assert_array_equal(nxt.scenarios.demand, same.scenarios.demand)


def test_disabled_autoreset_and_partial_reset():
    env = envs.InventoryVectorEnv(LOST, num_envs=3, horizon=2, autoreset_mode="disabled")
    _play(env, _order_up_to(15.0), 2, seed=0)
    with pytest.raises(ResetNeeded, match="reset_mask"):
        env.step(np.zeros((3, 1)))
    before = env.scenarios
    obs, _ = env.reset(options={"reset_mask": np.array([True, False, True])})
    with pytest.raises(ResetNeeded, match=r"\[1\]"):  # sub-environment 1 is still finished
        env.step(np.zeros((3, 1)))
    assert torch.equal(env.scenarios.demand[1], before.demand[1])
    assert not torch.equal(env.scenarios.demand[0], before.demand[0])
    np.testing.assert_array_equal(obs[[0, 2]], env.scenarios.initial_inventory[[0, 2]].numpy())
    # a running episode may be restarted too: the sub-environments then run out of step
    env = envs.InventoryVectorEnv(LOST, num_envs=3, horizon=3, autoreset_mode="disabled")
    _play(env, _order_up_to(15.0), 1, seed=0)
    env.reset(options={"reset_mask": np.array([False, True, False])})
    data = env.scenarios
    steps = [env.step(np.full((3, 1), 5.0)) for _ in range(2)]
    assert [s[3].tolist() for s in steps] == [[False, False, False], [True, False, True]]
    demand = np.stack([s[4]["demand"][:, 0] for s in steps], 1)  # each reads its own episode's periods
    np.testing.assert_array_equal(demand[[0, 2]], data.demand[[0, 2], 0, 1:3].numpy())
    np.testing.assert_array_equal(demand[1], data.demand[1, 0, 0:2].numpy())
    single = envs.InventoryEnv(LOST, horizon=1)
    single.reset(seed=0)
    single.step(np.array([1.0]))
    with pytest.raises(ResetNeeded, match="reset"):
        single.step(np.array([1.0]))


# ---- bad input -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(horizon=-3), "horizon must be an integer >= 1, got -3"),
        (dict(horizon=0), "horizon"),
        (dict(horizon=2.5), "horizon must be an integer"),
        (dict(num_envs=0), "num_envs must be an integer >= 1, got 0"),
        (dict(max_order=-1.0), "max_order must be a positive"),
        (dict(max_order=[1.0, 2.0]), r"one per store \(1\)"),
        (dict(autoreset_mode="sometimes"), "autoreset_mode must be one of"),
    ],
)
def test_bad_construction_raises_a_clear_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        envs.InventoryVectorEnv(LOST, **{"num_envs": 2, "horizon": 5, **kwargs})


def test_bad_scenarios_raise():
    test = sample_scenarios(LOST, 4, 10, demand_seed=1, inventory_seed=1)
    with pytest.raises(ValueError, match="exceeds the 10 periods"):
        envs.InventoryVectorEnv(LOST, horizon=11, scenarios=test)
    with pytest.raises(ValueError, match="num_envs=3 must equal the number of scenarios"):
        envs.InventoryVectorEnv(LOST, num_envs=3, scenarios=test)
    with pytest.raises(ValueError, match="another setting"):
        envs.InventoryVectorEnv(BACKLOG, scenarios=test)
    with pytest.raises(ValueError, match="one scenario"):
        envs.InventoryEnv(LOST, scenarios=test)
    with pytest.raises(ValueError, match="InventorySetting"):
        envs.InventoryVectorEnv("lost sales")


def test_bad_actions_raise_a_clear_error():
    env = envs.InventoryVectorEnv(BACKLOG, num_envs=3, horizon=5)
    with pytest.raises(ResetNeeded, match="reset"):
        env.step(np.zeros((3, 2)))
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"action must have shape \(3, 2\).*got shape \(2,\)"):
        env.step(np.zeros(2))
    with pytest.raises(ValueError, match=r"got shape \(3, 3\)"):
        env.step(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="NaN or infinite"):
        env.step(np.full((3, 2), np.nan))
    with pytest.raises(ValueError, match="numeric"):
        env.step(np.full((3, 2), "5"))
    with pytest.raises(ValueError, match="unknown reset option"):
        env.reset(options={"seed": 3})
    single = envs.InventoryEnv(LOST, horizon=5)
    single.reset(seed=0)
    with pytest.raises(ValueError, match=r"action must have shape \(1,\), got shape \(2,\)"):
        single.step(np.array([1.0, 2.0]))
    # out-of-box orders are clipped to the box, as the docstring says
    clipped = envs.InventoryVectorEnv(LOST, num_envs=1, horizon=3, autoreset_mode="disabled")
    plain = envs.InventoryVectorEnv(LOST, num_envs=1, horizon=3, autoreset_mode="disabled")
    clipped.reset(seed=1), plain.reset(seed=1)
    np.testing.assert_array_equal(clipped.step(np.array([[-4.0]]))[1], plain.step(np.array([[0.0]]))[1])
    np.testing.assert_array_equal(clipped.step(np.array([[99.0]]))[0], plain.step(np.array([[20.0]]))[0])


# ---- the generic base: hybrid (Dict) actions -----------------------------------------------------------------------
class _ToyHybrid(envs.BatchedVectorEnv):
    """A toy problem (not a model of anything) with a hybrid action: switch each of 2 items on, and an amount."""

    def __init__(self, num_envs=1, horizon=4, autoreset_mode="disabled"):
        action = spaces.Dict({"switch": spaces.MultiBinary(2), "amount": spaces.Box(0.0, 1.0, (2,), np.float32)})
        observation = spaces.Box(-np.inf, np.inf, (2,), np.float32)
        super().__init__(num_envs, horizon, observation, action, autoreset_mode=autoreset_mode)

    def _start(self, indices, rng):
        if not hasattr(self, "state"):
            self.state = torch.zeros(self.num_envs, 2)
        self.state[torch.as_tensor(indices)] = torch.as_tensor(rng.normal(size=(len(indices), 2)), dtype=torch.float32)

    def _observe(self):
        return self.state

    def _advance(self, action, period):
        self.seen = action
        self.state = self.state + action["switch"] * action["amount"]
        return self.state.abs().sum(-1) + action["switch"].sum(-1), None, {}


def test_generic_base_takes_dict_actions():
    _check(envs.SingleEnv(_ToyHybrid()))
    env = _ToyHybrid(num_envs=3, autoreset_mode="next_step")
    env.reset(seed=0)
    env.step({"switch": np.array([[1, 0], [0, 0], [1, 1]]), "amount": np.full((3, 2), 0.5)})
    assert env.seen["switch"].dtype == torch.int64 and env.seen["amount"].dtype == torch.float32
    with pytest.raises(ValueError, match=r"action\['switch'\] is outside MultiBinary"):
        env.step({"switch": np.full((3, 2), 2), "amount": np.zeros((3, 2))})
    with pytest.raises(ValueError, match=r"action\['switch'\] must hold integers"):
        env.step({"switch": np.full((3, 2), 0.5), "amount": np.zeros((3, 2))})
    with pytest.raises(ValueError, match=r"keys \['amount', 'switch'\]"):
        env.step({"switch": np.zeros((3, 2), int)})
    with pytest.raises(ValueError, match="num_envs=1"):
        envs.SingleEnv(_ToyHybrid(num_envs=2))
    # a discrete mode and a continuous control, as a Tuple: checked and converted the same way
    mode_and_control = spaces.Tuple((spaces.Discrete(3), spaces.Box(-1.0, 1.0, (1,), np.float32)))
    mode, control = envs._action_tensor((np.array([0, 2]), np.array([[0.5], [-3.0]])), mode_and_control, 2, "cpu")
    assert mode.tolist() == [0, 2] and control.tolist() == [[0.5], [-1.0]]
    with pytest.raises(ValueError, match=r"action\[0\] is outside Discrete\(3\)"):
        envs._action_tensor((np.array([0, 3]), np.zeros((2, 1))), mode_and_control, 2, "cpu")


# ---- outside agents on our scenarios --------------------------------------------------------------------------------
def test_external_policy_checks_what_predict_returns():
    test = sample_scenarios(LOST, 8, 12, demand_seed=65, inventory_seed=4840)
    with pytest.raises(ValueError, match=r"predict\(...\) must have shape \(8, 1\)"):
        evaluate(envs.ExternalPolicy(lambda obs: np.zeros(8), LOST), test)
    wide = InventorySetting(stores=LOST.stores, unmet_demand="lost", inventory_slots=4)
    with pytest.raises(ValueError, match=r"inventory of shape \(1, 4\).*\(1, 2\)"):
        evaluate(envs.ExternalPolicy(lambda obs: np.zeros((8, 1)), wide), test)
    with pytest.raises(ValueError, match="callable"):
        envs.ExternalPolicy(3, LOST)


def test_mean_demand_view_and_compare_to_optimum():
    view = envs.mean_demand_view(BACKLOG)
    obs = np.array([[[5.0, 5.0, 0.0], [8.0, 16.0, 0.0]]], dtype=np.float32)
    np.testing.assert_allclose(view.observation(obs), [[[1, 1, 0], [1, 2, 0]]])
    np.testing.assert_allclose(view.action(np.array([0.0, -1.0])), [5.0, 0.0])  # a = 0 orders the mean demand
    np.testing.assert_allclose(view.action_space.high, [3.0, 3.0])
    result = envs.compare_to_optimum(torch.tensor([5.0, 6.0, 7.0]), torch.tensor([4.0, 5.5, 6.5]), 5.0)
    assert result["cost_estimate"] == pytest.approx(6.0 - 16.0 / 3 + 5.0)
    assert result["gap_pct"] == pytest.approx(100 * (result["cost_estimate"] / 5.0 - 1))
    with pytest.raises(ValueError, match="paired"):
        envs.compare_to_optimum(torch.ones(3), torch.ones(4), 5.0)


# ---- Stable-Baselines3 -----------------------------------------------------------------------------------------------
def test_sb3_vec_env_and_a_tiny_cached_training(tmp_path, monkeypatch):
    pytest.importorskip("stable_baselines3")
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    sb3_check_env(envs.InventoryEnv(LOST, horizon=10), warn=False)
    with pytest.raises(ValueError, match="same_step"):
        envs.sb3_vec_env(envs.InventoryVectorEnv(LOST, num_envs=2, horizon=3))
    venv = envs.sb3_vec_env(envs.InventoryVectorEnv(LOST, num_envs=2, horizon=3, autoreset_mode="same_step"),
                            envs.mean_demand_view(LOST))
    venv.seed(4)
    first = venv.reset()
    for t in range(3):
        obs, reward, done, infos = venv.step(np.zeros((2, 1)))  # agent action 0 = order the mean demand
    assert done.all() and all(i["TimeLimit.truncated"] for i in infos)
    assert all(i["terminal_observation"].shape == (1, 2) for i in infos)
    venv.seed(4)
    np.testing.assert_array_equal(venv.reset(), first)

    monkeypatch.setattr(paths, "CACHE", tmp_path / "cache")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where SB3's default logger would make a folder
    budget = envs.AgentBudget(env_steps=256, num_envs=4, horizon=16,
                              hyperparameters=dict(n_steps=32, batch_size=64, n_epochs=1))
    threads = torch.get_num_threads()
    run = envs.train_agent(LOST, budget, seed=1)
    assert torch.get_num_threads() == threads  # training on one thread leaves the setting as it was
    assert not run.cached and run.env_steps == 256 and run.curve
    again = envs.train_agent(LOST, budget, seed=1)
    assert again.cached and again.env_steps == 256
    assert not list(scratch.glob("SB3-*"))  # no empty SB3-<date> log folder left behind per training
    test = sample_scenarios(LOST, 8, 12, demand_seed=65, inventory_seed=4840)
    np.testing.assert_array_equal(evaluate(run.policy(), test), evaluate(again.policy(), test))
    with pytest.raises(ValueError, match="algorithm must be one of"):
        envs.AgentBudget(env_steps=10, algorithm="DQN")
    with pytest.raises(ValueError, match="profile must be one of"):
        envs.agent_budget("huge")


def test_package_import_does_not_need_gymnasium():
    code = (
        "import sys; sys.modules['gymnasium'] = None\n"
        "import hybridrl, hybridrl.inventory, hybridrl.train\n"
        "assert 'hybridrl.envs' not in sys.modules\n"
        "try:\n    import hybridrl.envs\nexcept ImportError as err:\n    print(err)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert 'pip install "hybridrl[gym]"' in run.stdout


# ---- the joint replenishment problem -----------------------------------------------------------------------------
from hybridrl.jrp import JointReplenishment  # noqa: E402

JRP = JointReplenishment(3, horizon=20, warmup=2)


def _jrp_actions(problem, batch, steps, seed, beyond=1.0):
    """Random hybrid actions ``[steps]`` of dicts: both choices, nonzero quantities under either (up to
    ``beyond`` × the action bound, so that > 1 exercises the clipping)."""
    rng = np.random.default_rng(seed)
    high = 4.0 * problem.mean.numpy()
    return [dict(order=rng.integers(0, 2, size=batch),
                 quantity=(rng.uniform(0.01, beyond, size=(batch, problem.items)) * high).astype(np.float32))
            for _ in range(steps)]


def test_jrp_check_env_passes():
    _check(envs.JRPEnv(JRP))
    _check(envs.JRPEnv(JointReplenishment(1, horizon=5, warmup=1, history=0), max_order=30.0))


def test_jrp_spaces():
    env = envs.JRPVectorEnv(JRP, num_envs=4)
    action = env.single_action_space
    assert isinstance(action, spaces.Dict) and set(action.spaces) == {"order", "quantity"}
    assert action["order"] == spaces.Discrete(2)
    assert action["quantity"].shape == (3,) and action["quantity"].dtype == np.float32
    np.testing.assert_allclose(action["quantity"].high, 4.0 * JRP.mean.numpy(), rtol=1e-6)  # 4 x mean demand
    assert (action["quantity"].low == 0).all()
    assert env.single_observation_space.shape == (JRP.observation_dim,)
    low = env.single_observation_space.low.reshape(3, -1)
    assert (low[:, 0] == -np.inf).all() and (low[:, 1:] == 0).all()  # on-hand may be backlogged
    assert envs.JRPEnv(JRP, max_order=[5, 6, 7]).action_space["quantity"].high.tolist() == [5.0, 6.0, 7.0]
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4, JRP.observation_dim) and obs.dtype == np.float32 and obs in env.observation_space
    for _ in range(3):
        obs, reward, *_ = env.step(env.action_space.sample())
        assert obs in env.observation_space and reward.dtype == np.float64 and reward.shape == (4,)
    for bad in (-1.0, [1.0, 2.0], np.inf):
        with pytest.raises(ValueError, match=r"max_order must be a positive finite number or one per item \(3\)"):
            envs.JRPVectorEnv(JRP, max_order=bad)
    with pytest.raises(ValueError, match="JointReplenishment"):
        envs.JRPVectorEnv(LOST)


@pytest.mark.parametrize("beyond", [1.0, 1.5])
def test_jrp_rewards_equal_the_problems_costs(beyond):
    B = 16
    env = envs.JRPVectorEnv(JRP, num_envs=B, autoreset_mode="disabled")
    actions = _jrp_actions(JRP, B, JRP.horizon, seed=1, beyond=beyond)
    out = _play(env, lambda obs, it=iter(actions): next(it), JRP.horizon, seed=3)
    episodes = env.episodes
    assert episodes.size == B
    state = episodes.state
    high = torch.as_tensor(env.single_action_space["quantity"].high)
    fixed_paid = 0
    for t, action in enumerate(actions):
        np.testing.assert_array_equal(out["obs"][t], JRP.observe(state, t, episodes).numpy())
        choice = torch.as_tensor(action["order"])
        quantity = torch.minimum(torch.as_tensor(action["quantity"]), high)
        ordered = torch.where(choice[:, None] == 1, quantity, torch.zeros_like(quantity))
        state, cost = JRP.step(state, choice, ordered, t, episodes)
        np.testing.assert_array_equal(out["reward"][t], -cost.double().numpy())
        np.testing.assert_array_equal(out["info"][t]["ordered"], ordered.numpy())
        fixed_paid += int(choice.sum())
    np.testing.assert_array_equal(out["obs"][-1], JRP.observe(state, JRP.horizon, episodes).numpy())
    rewards = np.stack(out["reward"])
    assert rewards.std() > 0 and 0 < fixed_paid < B * JRP.horizon  # both choices were played


def test_jrp_no_order_orders_nothing_whatever_the_quantities():
    F = JRP.joint_fixed_cost
    high = envs.JRPEnv(JRP).action_space["quantity"].high

    def run(order, quantity):
        return _play(envs.JRPEnv(JRP), lambda obs: dict(order=order, quantity=quantity), JRP.horizon, seed=4)

    ignored = run(0, high)  # the largest quantities, but no order
    nothing = run(0, np.zeros(3, dtype=np.float32))
    free = run(1, np.zeros(3, dtype=np.float32))  # an order of nothing still pays F
    np.testing.assert_array_equal(np.stack(ignored["obs"]), np.stack(nothing["obs"]))
    np.testing.assert_array_equal(ignored["reward"], nothing["reward"])
    assert all((i["ordered"] == 0).all() for i in ignored["info"])
    np.testing.assert_array_equal(np.stack(free["obs"]), np.stack(nothing["obs"]))
    np.testing.assert_allclose(np.array(nothing["reward"]) - np.array(free["reward"]), F, rtol=1e-6)
    # the cost of a period without an order is the items' holding and backlog cost alone
    env = envs.JRPEnv(JRP)
    env.reset(seed=4)
    state = env.episodes.state
    _, reward, *_ = env.step(dict(order=0, quantity=high))
    _, cost = JRP.step(state, torch.tensor([0]), torch.zeros(1, 3), 0, env.episodes)
    demand = env.episodes.noise[0, JRP.history].double()  # the first period starts empty: all of it backlogged
    assert reward == -float(cost[0]) == pytest.approx(-float((JRP.underage_cost.double() * demand).sum()), rel=1e-6)
    # ... and an order shows in the pipeline (last slot, in units of the mean demand)
    obs, reward, *_ = env.step(dict(order=1, quantity=high))
    np.testing.assert_allclose(obs.reshape(3, -1)[:, JRP.lead_time - 1], high / JRP.mean.numpy(), rtol=1e-6)
    assert -reward >= F


@pytest.mark.parametrize("mode", ["next_step", "same_step", "disabled"])
def test_jrp_truncated_at_the_horizon_and_never_terminated(mode):
    env = envs.JRPVectorEnv(JRP, num_envs=3, autoreset_mode=mode)
    actions = _jrp_actions(JRP, 3, JRP.horizon, seed=0)
    out = _play(env, lambda obs, it=iter(actions): next(it), JRP.horizon, seed=0)
    truncated = np.stack(out["truncated"])
    assert not np.stack(out["terminated"]).any()
    assert not truncated[:-1].any() and truncated[-1].all()
    single = _play(envs.JRPEnv(JRP), lambda obs: dict(order=1, quantity=np.full(3, 5.0, np.float32)),
                   JRP.horizon, seed=0)
    assert single["truncated"] == [False] * (JRP.horizon - 1) + [True] and not any(single["terminated"])
    if mode == "disabled":
        with pytest.raises(ResetNeeded):
            env.step(actions[0])


def test_jrp_seeding_is_deterministic():
    actions = _jrp_actions(JRP, 4, JRP.horizon, seed=2)

    def run(seed):
        out = _play(envs.JRPVectorEnv(JRP, num_envs=4), lambda obs, it=iter(actions): next(it), JRP.horizon,
                    seed=seed)
        return np.stack(out["obs"]), np.stack(out["reward"])

    torch.rand(3), np.random.rand(3)  # unrelated global random activity must not matter
    a, b, c = run(7), run(7), run(8)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1]) and not np.array_equal(a[0][0], c[0][0])
    # the single environment is sub-environment 0 of the vector environment with the same seed
    single = _play(envs.JRPEnv(JRP), lambda obs, it=iter(actions): {k: v[0] for k, v in next(it).items()},
                   JRP.horizon, seed=7)
    np.testing.assert_array_equal(np.stack(single["obs"]), a[0][:, 0])
    np.testing.assert_array_equal(np.array(single["reward"]), a[1][:, 0])


def test_jrp_new_episodes_and_out_of_step_sub_environments():
    env = envs.JRPVectorEnv(JRP, num_envs=3, autoreset_mode="next_step")
    env.reset(seed=0)
    first = env.episodes
    actions = _jrp_actions(JRP, 3, JRP.horizon + 1, seed=5)
    for action in actions:
        env.step(action)
    assert env.episodes is not first and not torch.equal(env.episodes.noise, first.noise)
    # a sub-environment restarted apart plays its own periods of its own episode
    env = envs.JRPVectorEnv(JRP, num_envs=3, autoreset_mode="disabled")
    env.reset(seed=1)
    env.step(actions[0])
    before = env.episodes
    state = env._state.clone()
    env.reset(options={"reset_mask": np.array([False, True, False])})
    data = env.episodes
    assert torch.equal(data.noise[[0, 2]], before.noise[[0, 2]]) and not torch.equal(data.noise[1], before.noise[1])
    state[1] = data.state[1]
    periods = np.array([1, 0, 1])
    for k in range(1, 4):
        obs, reward, *_ = env.step(actions[k])
        choice = torch.as_tensor(actions[k]["order"])
        quantity = torch.as_tensor(actions[k]["quantity"])
        ordered = torch.where(choice[:, None] == 1, quantity, torch.zeros_like(quantity))
        for b in range(3):
            row = slice(b, b + 1)
            next_state, cost = JRP.step(state[row], choice[row], ordered[row], int(periods[b]), data[row])
            assert reward[b] == -float(cost[0]), (k, b)
            state[b] = next_state[0]
        periods += 1
        np.testing.assert_array_equal(obs, JRP.observe(state, 0, data).numpy())


# ---- inventory networks ------------------------------------------------------------------------------------------
from gymnasium.utils import seeding  # noqa: E402

from hybridrl.network_policies import EchelonBaseStock, NetworkMLP, location_demand  # noqa: E402
from hybridrl.networks import (  # noqa: E402
    NetworkObservation,
    network_rollout,
    one_warehouse_network,
    sample_network_scenarios,
    serial_network,
    transshipment_network,
)

NETWORKS = {"serial": serial_network(), "one_warehouse_3": one_warehouse_network(3),
            "transshipment_3": transshipment_network(3)}
WIDE = 1e4  # a request bound that never binds, so that a torch policy and the environment see the same requests


def _network_predict(policy, network):
    """A torch network policy as an outside agent's NumPy ``predict`` on flattened observations ``[B, N * n]``."""
    def predict(obs):
        inventory = torch.as_tensor(obs).view(obs.shape[0], network.n_locations, network.n_slots)
        with torch.no_grad():
            return policy(NetworkObservation(inventory, network, 0)).numpy()
    return predict


@pytest.mark.parametrize("name", NETWORKS)
def test_network_check_env_passes(name):
    _check(envs.NetworkEnv(NETWORKS[name], horizon=10))


def test_network_check_env_on_a_replayed_scenario_and_through_gymnasium_make():
    net = NETWORKS["one_warehouse_3"]
    _check(envs.NetworkEnv(net, scenarios=sample_network_scenarios(net, 1, 8, demand_seed=1, inventory_seed=2)))
    made = gymnasium.make(envs.NETWORK_ENV_ID, network=net, horizon=5)
    assert isinstance(made.unwrapped, envs.NetworkEnv)
    vec = gymnasium.make_vec(envs.NETWORK_ENV_ID, num_envs=3, vectorization_mode="vector_entry_point", network=net,
                             horizon=5)
    assert isinstance(vec, envs.NetworkVectorEnv) and vec.num_envs == 3


def test_network_spaces():
    net = NETWORKS["one_warehouse_3"]  # 4 locations, 4 edges, n = 3 slots, lost sales
    env = envs.NetworkVectorEnv(net, num_envs=5, horizon=4)
    N, n, E = net.n_locations, net.n_slots, net.n_edges
    assert env.single_observation_space.shape == (N * n,) and env.observation_space.shape == (5, N * n)
    assert env.single_action_space.shape == (E,) and env.action_space.shape == (5, E)
    receiver = net.tensor("receiver")
    np.testing.assert_allclose(env.single_action_space.high, 4 * location_demand(net)[receiver].numpy(), rtol=1e-6)
    np.testing.assert_allclose(env.single_action_space.high[0], 4 * float(net.mean_demand.sum()), rtol=1e-6)
    assert (env.single_action_space.low == 0).all()
    low = env.single_observation_space.low.reshape(N, n)
    assert low[0, 0] == -np.inf and (low[1:, 0] == 0).all() and (low[:, 1:] == 0).all()  # lost-sales stores >= 0
    backlog = envs.NetworkEnv(NETWORKS["transshipment_3"]).observation_space.low.reshape(N, n)
    assert (backlog[:, 0] == -np.inf).all()
    assert envs.NetworkEnv(net, max_request=7).action_space.high.tolist() == [7.0] * E
    obs, _ = env.reset(seed=0)
    assert obs.dtype == np.float32 and obs in env.observation_space
    np.testing.assert_array_equal(obs, env.scenarios.initial_inventory.flatten(1).numpy())
    for _ in range(4):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert obs in env.observation_space and reward.dtype == np.float64 and reward.shape == (5,)
        np.testing.assert_array_equal(obs, env.inventory.flatten(1).numpy())
    assert info["cost"].shape == (5, 3) and info["location_cost"].shape == (5, N) and info["shipped"].shape == (5, E)
    # requests are clipped to the box: negative ones to 0
    env.reset(seed=0)
    _, _, _, _, info = env.step(np.full((5, E), -3.0))
    assert (info["shipped"] == 0).all()
    for bad in (-1.0, [1.0, 2.0], np.inf):
        with pytest.raises(ValueError, match=r"max_request must be a positive finite number or one per edge \(4\)"):
            envs.NetworkVectorEnv(net, max_request=bad)
    with pytest.raises(ValueError, match="hybridrl.networks.Network"):
        envs.NetworkVectorEnv(LOST)


@pytest.mark.parametrize("name", NETWORKS)
def test_network_vector_env_costs_equal_the_simulator(name):
    net = NETWORKS[name]
    B, T = 16, 20
    env = envs.NetworkVectorEnv(net, num_envs=B, horizon=T, max_request=WIDE, autoreset_mode="disabled")
    policy = EchelonBaseStock(net)
    out = _play(env, _network_predict(policy, net), T, seed=3)
    rewards = np.stack(out["reward"], 1)  # [B, T]
    with torch.no_grad():
        trajectory = network_rollout(policy, env.scenarios, record=True)
    # the same numbers as the simulator, period by period: inventories, per-store cost columns, demand ...
    np.testing.assert_allclose(np.stack(out["obs"][:-1], 1), trajectory.inventory.transpose(1, 2).flatten(2).numpy(),
                               rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(np.stack([i["cost"] for i in out["info"]], -1), trajectory.cost.numpy(),
                               rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(np.stack([i["location_cost"] for i in out["info"]], -1),
                               trajectory.location_cost.numpy(), rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(np.stack([i["demand"] for i in out["info"]], -1), env.scenarios.demand.numpy())
    # ... the reward is minus the network cost per store, so an episode's return is -T x the rollout's cost
    np.testing.assert_allclose(rewards, -trajectory.cost.mean(1).numpy(), rtol=1e-5, atol=1e-4)
    total = np.stack([i["location_cost"] for i in out["info"]], 1).sum(-1) / net.n_stores
    np.testing.assert_allclose(rewards, -total, rtol=1e-5)
    np.testing.assert_allclose(rewards.sum(1), -T * trajectory.hindsight_cost().mean(1).numpy(), rtol=1e-5)
    # ... and exactly the same through the outside-agent route
    replay = network_rollout(envs.ExternalNetworkPolicy(_network_predict(policy, net), net, max_request=WIDE),
                             env.scenarios)
    np.testing.assert_array_equal(rewards, -replay.cost.mean(1).double().numpy())
    assert rewards.std() > 0


@pytest.mark.parametrize("name, make_policy", [
    ("serial", EchelonBaseStock),
    ("one_warehouse_3", lambda net: NetworkMLP(net, hidden=(16,), init_seed=3)),
    ("transshipment_3", EchelonBaseStock),
])
def test_network_external_policy_reproduces_direct_evaluation(name, make_policy):
    net = NETWORKS[name]
    test = sample_network_scenarios(net, 12, 25, demand_seed=65, inventory_seed=4840)
    policy = make_policy(net)
    predict = _network_predict(policy, net)
    with torch.no_grad():
        direct = evaluate(policy, test, warmup=5)  # [N, S]
    external = evaluate(envs.ExternalNetworkPolicy(predict, net, max_request=WIDE), test, warmup=5)
    np.testing.assert_allclose(external.numpy(), direct.numpy(), rtol=1e-6)
    # replaying the test scenarios in the environment gives the same cost per store and period
    env = envs.NetworkVectorEnv(net, scenarios=test, max_request=WIDE, autoreset_mode="disabled")
    assert env.num_envs == 12 and env.horizon == 25
    first = np.stack(_play(env, predict, 25)["reward"], 1)
    again = np.stack(_play(env, predict, 25, seed=123)["reward"], 1)  # fixed data: seeds do not matter
    np.testing.assert_array_equal(first, again)
    np.testing.assert_allclose(-first[:, 5:].mean(1), direct.mean(1).numpy(), rtol=1e-5)
    # with the default bound, the agent meets the environment's clipping in evaluation too
    clipped = envs.ExternalNetworkPolicy(predict, net)
    bounded = envs.NetworkVectorEnv(net, scenarios=test, autoreset_mode="disabled")
    rewards = np.stack(_play(bounded, predict, 25)["reward"], 1)
    np.testing.assert_allclose(-rewards[:, 5:].mean(1), evaluate(clipped, test, warmup=5).mean(1).numpy(), rtol=1e-5)


def test_network_external_policy_checks_its_input():
    net = NETWORKS["one_warehouse_3"]
    test = sample_network_scenarios(net, 4, 6, demand_seed=1, inventory_seed=1)
    with pytest.raises(ValueError, match=r"predict\(...\) must have shape \(4, 4\)"):
        evaluate(envs.ExternalNetworkPolicy(lambda obs: np.zeros(4), net), test)
    with pytest.raises(ValueError, match="NaN"):
        evaluate(envs.ExternalNetworkPolicy(lambda obs: np.full((4, 4), np.nan), net), test)
    serial = sample_network_scenarios(NETWORKS["serial"], 4, 6, demand_seed=1, inventory_seed=1)
    with pytest.raises(ValueError, match=r"inventory of shape \(4, 3\).*\(4, 4\)"):
        evaluate(envs.ExternalNetworkPolicy(lambda obs: np.zeros((4, 4)), net), serial)
    with pytest.raises(ValueError, match="callable"):
        envs.ExternalNetworkPolicy(3, net)


def test_network_episodes_are_drawn_like_sample_network_scenarios():
    net = NETWORKS["one_warehouse_3"]
    env = envs.NetworkVectorEnv(net, num_envs=64, horizon=50)
    env.reset(seed=7)
    rng, _ = seeding.np_random(7)
    for b in range(64):  # one scenario of sample_network_scenarios per sub-environment, seeded from np_random
        demand_seed, inventory_seed = (int(s) for s in rng.integers(0, 2**31, size=2))
        assert env.seeds[b].tolist() == [demand_seed, inventory_seed]
        expected = sample_network_scenarios(net, 1, 50, demand_seed=demand_seed, inventory_seed=inventory_seed)
        np.testing.assert_array_equal(env.scenarios.demand[b].numpy(), expected.demand[0].numpy())
        np.testing.assert_array_equal(env.scenarios.initial_inventory[b].numpy(), expected.initial_inventory[0].numpy())
    demand = env.scenarios.demand.permute(1, 0, 2).flatten(1)  # [S, B * T]
    assert (demand >= 0).all()
    assert np.allclose(demand.mean(1).numpy(), net.mean_demand.numpy(), rtol=0.05)
    corr = np.corrcoef(demand.numpy())[np.triu_indices(3, 1)]
    assert (corr > 0.4).all() and (corr < 0.6).all()  # the network's correlation, 0.5
    assert (env.scenarios.initial_inventory[:, 0] == 0).all()  # the warehouse starts empty
    serial = envs.NetworkVectorEnv(NETWORKS["serial"], num_envs=4, horizon=3)
    obs, _ = serial.reset(seed=0)
    assert (obs == 0).all()  # the serial system starts empty
    assert (serial.scenarios.demand >= 0).all()
    trans = envs.NetworkVectorEnv(NETWORKS["transshipment_3"], num_envs=64, horizon=50)
    trans.reset(seed=0)
    assert (trans.scenarios.demand < 0).any()  # transshipment demand is not truncated (spec §4.5)


def test_network_same_seed_same_trajectory_and_single_env_is_sub_environment_zero():
    net = NETWORKS["transshipment_3"]
    actions = np.random.default_rng(0).uniform(0, 20, size=(12, 4, net.n_edges)).astype(np.float32)

    def run(seed):
        out = _play(envs.NetworkVectorEnv(net, num_envs=4, horizon=12), lambda obs, it=iter(actions): next(it), 12,
                    seed=seed)
        return np.stack(out["obs"]), np.stack(out["reward"])

    torch.rand(3), np.random.rand(3)  # unrelated global random activity must not matter
    a, b, c = run(7), run(7), run(8)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1]) and not np.array_equal(a[0][0], c[0][0])
    single = _play(envs.NetworkEnv(net, horizon=12), lambda obs, it=iter(actions): next(it)[0], 12, seed=7)
    np.testing.assert_array_equal(np.stack(single["obs"]), a[0][:, 0])
    np.testing.assert_array_equal(np.array(single["reward"]), a[1][:, 0])
    assert isinstance(single["reward"][0], float) and single["truncated"] == [False] * 11 + [True]
    assert not any(single["terminated"])


@pytest.mark.parametrize("mode", ["next_step", "same_step", "disabled"])
def test_network_truncated_at_the_horizon_and_autoreset(mode):
    net = NETWORKS["one_warehouse_3"]
    E = net.n_edges
    env = envs.NetworkVectorEnv(net, num_envs=3, horizon=4, autoreset_mode=mode)
    policy = _network_predict(EchelonBaseStock(net), net)
    out = _play(env, policy, 4, seed=5)
    truncated = np.stack(out["truncated"])
    assert not np.stack(out["terminated"]).any() and not truncated[:-1].any() and truncated[-1].all()
    old = env.scenarios
    if mode == "next_step":
        obs, reward, terminated, truncated, info = env.step(np.full((3, E), 19.0))  # this action is ignored
        assert env.scenarios is not old and not torch.equal(env.scenarios.demand, old.demand)
        np.testing.assert_array_equal(obs, env.scenarios.initial_inventory.flatten(1).numpy())
        assert (reward == 0).all() and not terminated.any() and not truncated.any() and info == {}
        _, reward, _, truncated, _ = env.step(policy(obs))  # the new episode goes on normally
        assert (reward < 0).all() and not truncated.any()
    elif mode == "same_step":
        info = out["info"][-1]
        assert info["_final_obs"].all() and info["_final_info"].all()
        np.testing.assert_array_equal(out["obs"][-1], env.scenarios.initial_inventory.flatten(1).numpy())
        # the same episode as under NEXT_STEP with the same seed; the last observation is in info
        nxt = envs.NetworkVectorEnv(net, num_envs=3, horizon=4, autoreset_mode="next_step")
        a = _play(nxt, policy, 4, seed=5)
        np.testing.assert_array_equal(np.stack(a["reward"]), np.stack(out["reward"]))
        np.testing.assert_array_equal(np.stack(info["final_obs"]), a["obs"][-1])
        np.testing.assert_array_equal(info["final_info"]["cost"], a["info"][-1]["cost"])
    else:
        with pytest.raises(ResetNeeded, match="reset_mask"):
            env.step(np.zeros((3, E)))
        obs, _ = env.reset(options={"reset_mask": np.array([True, False, True])})
        assert torch.equal(env.scenarios.demand[1], old.demand[1])
        assert not torch.equal(env.scenarios.demand[0], old.demand[0])
        np.testing.assert_array_equal(obs[[0, 2]], env.scenarios.initial_inventory[[0, 2]].flatten(1).numpy())
        with pytest.raises(ResetNeeded, match=r"\[1\]"):
            env.step(np.zeros((3, E)))


def test_network_out_of_step_sub_environments_read_their_own_periods():
    net = NETWORKS["one_warehouse_3"]
    env = envs.NetworkVectorEnv(net, num_envs=3, horizon=3, autoreset_mode="disabled")
    _play(env, lambda obs: np.full((3, net.n_edges), 5.0), 1, seed=0)
    env.reset(options={"reset_mask": np.array([False, True, False])})
    data = env.scenarios
    steps = [env.step(np.full((3, net.n_edges), 5.0)) for _ in range(2)]
    assert [s[3].tolist() for s in steps] == [[False, False, False], [True, False, True]]
    demand = np.stack([s[4]["demand"] for s in steps], -1)  # [B, S, 2]
    np.testing.assert_array_equal(demand[[0, 2]], data.demand[[0, 2], :, 1:3].numpy())
    np.testing.assert_array_equal(demand[1], data.demand[1, :, 0:2].numpy())


def test_network_bad_construction_raises():
    net = NETWORKS["one_warehouse_3"]
    test = sample_network_scenarios(net, 4, 10, demand_seed=1, inventory_seed=1)
    with pytest.raises(ValueError, match="exceeds the 10 periods"):
        envs.NetworkVectorEnv(net, horizon=11, scenarios=test)
    with pytest.raises(ValueError, match="num_envs=3 must equal the number of scenarios"):
        envs.NetworkVectorEnv(net, num_envs=3, scenarios=test)
    with pytest.raises(ValueError, match="another network"):
        envs.NetworkVectorEnv(NETWORKS["transshipment_3"], scenarios=test)
    with pytest.raises(ValueError, match="NetworkScenarios"):
        envs.NetworkVectorEnv(net, scenarios=sample_scenarios(LOST, 4, 10, demand_seed=1, inventory_seed=1))
    with pytest.raises(ValueError, match="one scenario"):
        envs.NetworkEnv(net, scenarios=test)
    with pytest.raises(ValueError, match="horizon must be an integer >= 1"):
        envs.NetworkVectorEnv(net, horizon=0)
    with pytest.raises(ValueError, match=r"action must have shape \(2, 4\)"):
        env = envs.NetworkVectorEnv(net, num_envs=2, horizon=3)
        env.reset(seed=0)
        env.step(np.zeros((2, 3)))
