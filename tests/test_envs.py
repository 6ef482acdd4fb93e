"""The Gymnasium environments: the API checker, the same numbers as the simulator, seeding, autoreset, errors."""

import subprocess
import sys
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

    monkeypatch.setattr(paths, "CACHE", tmp_path)
    budget = envs.AgentBudget(env_steps=256, num_envs=4, horizon=16,
                              hyperparameters=dict(n_steps=32, batch_size=64, n_epochs=1))
    threads = torch.get_num_threads()
    run = envs.train_agent(LOST, budget, seed=1)
    assert torch.get_num_threads() == threads  # training on one thread leaves the setting as it was
    assert not run.cached and run.env_steps == 256 and run.curve
    again = envs.train_agent(LOST, budget, seed=1)
    assert again.cached and again.env_steps == 256
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
