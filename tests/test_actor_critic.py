import dataclasses
import math
import time

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from torch import nn

from rlteach.actor_critic import (
    CORRIDOR_OPTIMAL_P_RIGHT,
    CORRIDOR_OPTIMAL_VALUE,
    LEFT,
    RIGHT,
    A2CConfig,
    Actor,
    Critic,
    OffPolicyACConfig,
    ShortCorridor,
    a2c_loss,
    a2c_update,
    categorical_entropy,
    categorical_logp,
    collect_rollout,
    corridor_actor_features,
    corridor_p_right,
    corridor_policy_features,
    corridor_value,
    corridor_value_features,
    explained_variance,
    make_vector_env,
    off_policy_ac_losses,
    off_policy_actor_critic,
    one_step_actor_critic,
    one_step_actor_critic_update,
    reset_envs,
    sample_actions,
    softmax_eligibility,
    train_a2c,
)
from rlteach.advantages import gae
from rlteach.buffers import RolloutBuffer
from tests.conftest import DEVICES

F64 = torch.float64


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread, restored after: fastest for these tiny tensors, and the thread count the
    reference numbers were measured with (reductions, hence seeded runs, depend on it)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --------------------------------------------------------------------- categorical policies from logits


@pytest.mark.slow
@pytest.mark.parametrize("device", DEVICES)
def test_logp_and_entropy_from_logits_match_the_naive_softmax(gen, device):
    """log π(a|s) = log softmax(z)_a and H = −Σ π log π, on moderate logits (float64, 1e-12)."""
    logits = torch.randn((6, 4), generator=gen, dtype=F64).to(device)
    actions = torch.randint(4, (6,), generator=gen).to(device)
    probs = logits.exp() / logits.exp().sum(-1, keepdim=True)
    torch.testing.assert_close(categorical_logp(logits, actions), probs.gather(-1, actions[:, None]).squeeze(-1).log(),
                               rtol=0, atol=1e-12)
    torch.testing.assert_close(categorical_entropy(logits), -(probs * probs.log()).sum(-1), rtol=0, atol=1e-12)


def test_entropy_is_finite_with_impossible_actions_and_large_logits():
    """A logit of −inf contributes 0 to H (no 0·∞ = NaN); logits of ±1000 stay finite (float64, exact)."""
    logits = torch.tensor([[0.0, -math.inf], [1000.0, -1000.0], [0.0, 0.0]], dtype=F64)
    torch.testing.assert_close(categorical_entropy(logits), torch.tensor([0.0, 0.0, math.log(2.0)], dtype=F64),
                               rtol=0, atol=1e-12)
    assert torch.isfinite(categorical_logp(logits[1:], torch.tensor([1, 0]))).all()


def test_sample_actions_follow_pi_and_report_their_log_probability():
    """Frequencies of 20 000 draws match π within 4 standard errors; logp = log π(a); the generator decides."""
    logits = torch.tensor([[0.0, 1.0, -1.0]], dtype=F64).expand(20_000, 3)
    actions, logp = sample_actions(logits, torch.Generator().manual_seed(3))
    pi = torch.softmax(logits[0], -1)
    freq = torch.bincount(actions, minlength=3).to(F64) / actions.numel()
    se = (pi * (1 - pi) / actions.numel()).sqrt()
    assert bool(((freq - pi).abs() < 4 * se).all()), (freq, pi)
    torch.testing.assert_close(logp, pi.log()[actions], rtol=0, atol=1e-12)
    again, _ = sample_actions(logits, torch.Generator().manual_seed(3))
    assert torch.equal(actions, again)


def test_explained_variance_is_one_for_a_perfect_critic_and_zero_for_the_mean(gen):
    """EV(R, R) = 1, EV(mean R, R) = 0, EV(V, R) = 1 − Var[R − V]/Var[R]; NaN when Var[R] = 0 (1e-12)."""
    returns = torch.randn(50, generator=gen, dtype=F64)
    values = returns + 0.3 * torch.randn(50, generator=gen, dtype=F64)
    torch.testing.assert_close(explained_variance(returns, returns), torch.tensor(1.0, dtype=F64))
    torch.testing.assert_close(explained_variance(returns.mean().expand(50), returns), torch.tensor(0.0, dtype=F64),
                               rtol=0, atol=1e-12)
    torch.testing.assert_close(explained_variance(values, returns), 1 - (returns - values).var() / returns.var())
    assert math.isnan(float(explained_variance(values, torch.ones(50, dtype=F64))))


# --------------------------------------------------------------------- the short corridor


def test_corridor_switches_the_actions_in_the_middle_state():
    """0 --right--> 1 --right--> 0 (switched), 1 --left--> 2 --right--> goal; left at 0 hits the wall."""
    env = ShortCorridor()
    assert env.reset() == 0
    assert env.step(LEFT) == (0, -1.0, False, False)
    assert env.step(RIGHT) == (1, -1.0, False, False)
    assert env.step(RIGHT) == (0, -1.0, False, False)
    env.step(RIGHT)
    assert env.step(LEFT) == (2, -1.0, False, False)
    assert env.step(LEFT) == (1, -1.0, False, False)
    env.step(LEFT)
    assert env.step(RIGHT) == (3, -1.0, True, False)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(RIGHT)
    capped = ShortCorridor(max_episode_steps=2)
    capped.reset()
    assert capped.step(LEFT) == (0, -1.0, False, False)
    assert capped.step(LEFT) == (0, -1.0, False, True)


def test_corridor_value_is_the_closed_form_and_peaks_at_two_minus_root_two():
    """J(p) = −2(2−p)/(p(1−p)) from the Bellman equations; p* = 2 − √2, J(p*) = −(6 + 4√2) ≈ −11.66 (1e-9)."""
    for p in (0.05, 0.3, 0.5, 0.59, 0.9):
        assert corridor_value(p) == pytest.approx(-2 * (2 - p) / (p * (1 - p)), rel=1e-9)
    assert corridor_value(CORRIDOR_OPTIMAL_P_RIGHT) == pytest.approx(CORRIDOR_OPTIMAL_VALUE, rel=1e-12)
    assert CORRIDOR_OPTIMAL_VALUE == pytest.approx(-11.657, abs=1e-3)
    grid = np.linspace(0.01, 0.99, 197)  # spacing 0.005
    best = grid[np.argmax([corridor_value(float(p)) for p in grid])]
    assert best == pytest.approx(CORRIDOR_OPTIMAL_P_RIGHT, abs=0.0025)
    assert corridor_value(0.0) == -math.inf
    assert corridor_value(torch.tensor([1.0, 0.0, 1.0])) == pytest.approx(-3.0, rel=1e-12)  # sees the state: R, L, R


def test_corridor_environment_and_exact_value_agree_by_monte_carlo():
    """Mean return of 4000 episodes of π(right) = 0.4 in ShortCorridor is J(0.4) within 4 standard errors."""
    env, g, p = ShortCorridor(), torch.Generator().manual_seed(5), 0.4
    coins = iter(torch.rand(400_000, generator=g, dtype=F64).tolist())
    returns = []
    for _ in range(4000):
        env.reset()
        total, done = 0.0, False
        while not done:
            _, reward, done, _ = env.step(RIGHT if next(coins) < p else LEFT)
            total += reward
        returns.append(total)
    mean, se = np.mean(returns), np.std(returns) / math.sqrt(len(returns))
    assert abs(mean - corridor_value(p)) < 4 * se, (mean, se, corridor_value(p))


# --------------------------------------------------------------------- one-step actor-critic (fig. 13.3)


def test_softmax_eligibility_is_the_gradient_of_log_pi():
    """∇ ln π(a|s, θ) = x(s,a) − Σ_b π(b|s) x(s,b) equals autograd's gradient of log_softmax (1e-12)."""
    g = torch.Generator().manual_seed(1)
    theta = torch.randn(3, generator=g, dtype=F64, requires_grad=True)
    x = torch.randn((4, 3), generator=g, dtype=F64)
    for a in range(4):
        (grad,) = torch.autograd.grad(torch.log_softmax(x @ theta, -1)[a], theta)
        torch.testing.assert_close(softmax_eligibility(theta.detach(), x, a), grad, rtol=0, atol=1e-12)


def test_two_steps_of_fig_13_3_by_hand_including_the_decay_of_I():
    """Two steps from I = 1 with γ = 0.9: δ, w, θ as written out by hand, then I = 0.9 and 0.81 (1e-12).

    Step 1 in state 0, action right, R = −1, S' = 1; step 2 in state 1, action left, R = −1,
    S' = 2. θ = (0.2, −0.1) gives π(right) = σ(0.3); w = (−2, −1, −0.5).
    """
    gamma, a_th, a_w = 0.9, 0.1, 0.5
    theta = torch.tensor([0.2, -0.1], dtype=F64)
    w = torch.tensor([-2.0, -1.0, -0.5], dtype=F64)
    x = corridor_policy_features(0)

    # step 1, by hand: δ = −1 + 0.9·(−1) − (−2) = 0.1
    delta1 = -1 + gamma * w[1] - w[0]
    w1 = w.clone()
    w1[0] += a_w * 1.0 * delta1  # ∇v̂(S) = one-hot(0)
    p = 1 / (1 + math.exp(-0.3))  # π(right) = σ(θ_R − θ_L)
    theta1 = theta + a_th * 1.0 * delta1 * torch.tensor([1 - p, -(1 - p)], dtype=F64)  # x(s,R) − E_π x
    s1 = one_step_actor_critic_update(theta, w, x, RIGHT, corridor_value_features(0), corridor_value_features(1),
                                      -1.0, False, 1.0, gamma, a_th, a_w)
    torch.testing.assert_close(s1.delta, delta1, rtol=0, atol=1e-12)
    torch.testing.assert_close(s1.w, w1, rtol=0, atol=1e-12)
    torch.testing.assert_close(s1.theta, theta1, rtol=0, atol=1e-12)
    assert s1.discount == pytest.approx(0.9, abs=1e-15)

    # step 2 scales both updates by I = 0.9
    delta2 = -1 + gamma * w1[2] - w1[1]
    w2 = w1.clone()
    w2[1] += a_w * 0.9 * delta2
    p1 = float(torch.sigmoid(theta1[0] - theta1[1]))
    theta2 = theta1 + a_th * 0.9 * delta2 * torch.tensor([-p1, p1], dtype=F64)  # x(s,L) − E_π x = (−p, p)
    s2 = one_step_actor_critic_update(s1.theta, s1.w, x, LEFT, corridor_value_features(1),
                                      corridor_value_features(2), -1.0, False, s1.discount, gamma, a_th, a_w)
    torch.testing.assert_close(s2.delta, delta2, rtol=0, atol=1e-12)
    torch.testing.assert_close(s2.w, w2, rtol=0, atol=1e-12)
    torch.testing.assert_close(s2.theta, theta2, rtol=0, atol=1e-12)
    assert s2.discount == pytest.approx(0.81, abs=1e-15)


def test_a_terminal_next_state_is_not_bootstrapped_but_a_truncated_one_is():
    """δ = R − v̂(S) when S' is terminal, R + γ v̂(S') − v̂(S) otherwise, whatever S' features say (exact)."""
    w = torch.tensor([-2.0, -1.0, -0.5], dtype=F64)
    args = (torch.zeros(2, dtype=F64), w, corridor_policy_features(2), RIGHT, corridor_value_features(2))
    x_next = torch.tensor([0.0, 0.0, 1.0], dtype=F64)  # pretend S' has features: they must be ignored
    terminal = one_step_actor_critic_update(*args, x_next, -1.0, True, 1.0, 1.0, 0.1, 0.1)
    cut = one_step_actor_critic_update(*args, x_next, -1.0, False, 1.0, 1.0, 0.1, 0.1)
    assert float(terminal.delta) == -1.0 + 0.5
    assert float(cut.delta) == -1.0 - 0.5 + 0.5


@pytest.mark.slow
def test_one_step_actor_critic_reaches_the_optimal_corridor_policy():
    """From π(right) = 0.1, 300 episodes of fig. 13.3 (α^θ = 2⁻⁷, α^w = 2⁻³, γ = 1, seed 0) end within 0.05 of p*.

    Also |J(p) − J(p*)| < 0.15, and the critic's V(s₀) is near J(p*).
    """
    theta0 = torch.tensor([0.0, math.log(9.0)], dtype=F64)  # π(right) = σ(θ_R − θ_L) = 0.1
    result = one_step_actor_critic(ShortCorridor(max_episode_steps=1000), corridor_policy_features,
                                   corridor_value_features, theta0, torch.zeros(3, dtype=F64), 300, 1.0, 2**-7, 2**-3,
                                   torch.Generator().manual_seed(0))
    p = corridor_p_right(result.theta)
    assert corridor_p_right(result.theta_history[0]) == pytest.approx(0.1)
    assert abs(p - CORRIDOR_OPTIMAL_P_RIGHT) < 0.05, p
    assert abs(corridor_value(p) - CORRIDOR_OPTIMAL_VALUE) < 0.15
    assert abs(float(result.w[0]) - CORRIDOR_OPTIMAL_VALUE) < 3.0, result.w
    assert result.theta_history.shape == (301, 2) and result.episode_returns.shape == (300,)
    torch.testing.assert_close(result.episode_returns, -result.episode_lengths.to(F64))


# --------------------------------------------------------------------- A2C: config, networks, loss


def test_a2c_config_is_frozen_typed_and_derives_its_sizes():
    """batch_size = N·T, num_updates = ⌈total/(N·T)⌉; frozen; invalid values name the field."""
    config = A2CConfig(num_envs=4, num_steps=5, total_steps=101)
    assert (config.batch_size, config.num_updates) == (20, 6)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.lr = 1.0  # type: ignore[misc]
    for bad, match in ((dict(num_envs=0), "num_envs"), (dict(gamma=1.5), "gamma"), (dict(lr=-1.0), "lr"),
                       (dict(gae_lambda=-0.1), "gae_lambda"), (dict(max_grad_norm=0.0), "max_grad_norm"),
                       (dict(hidden_sizes=[64]), "hidden_sizes")):
        with pytest.raises((ValueError, TypeError), match=match):
            A2CConfig(**bad)


def test_networks_have_the_stated_shapes_and_leave_the_global_rng_alone():
    """Actor (B, d) → (B, K), critic (B, d) → (B,); the same generator seed gives the same weights."""
    state = torch.random.get_rng_state()
    actor = Actor(4, 3, (8, 8), torch.Generator().manual_seed(0))
    critic = Critic(4, (8,), torch.Generator().manual_seed(0))
    assert torch.equal(torch.random.get_rng_state(), state)
    obs = torch.zeros((5, 4))
    assert actor(obs).shape == (5, 3) and critic(obs).shape == (5,)
    twin = Actor(4, 3, (8, 8), torch.Generator().manual_seed(0))
    for a, b in zip(actor.parameters(), twin.parameters()):
        assert torch.equal(a, b)
    assert float(actor(torch.ones((1, 4))).detach().abs().max()) < 0.1  # gain 0.01: π starts near uniform


@pytest.mark.parametrize("device", DEVICES)
def test_a2c_loss_gradients_are_the_policy_gradient_and_the_value_regression(gen, device):
    """∇_z L = −(1/B) Â ∇_z ln π(a) − c_e ∇_z H;  ∂L/∂V = c_v (V − R̂)/B; Â and R̂ get no gradient (1e-12)."""
    B, K, vf, ent = 7, 3, 0.5, 0.01
    logits = torch.randn((B, K), generator=gen, dtype=F64).to(device).requires_grad_(True)
    values = torch.randn(B, generator=gen, dtype=F64).to(device).requires_grad_(True)
    adv = torch.randn(B, generator=gen, dtype=F64).to(device).requires_grad_(True)
    returns = torch.randn(B, generator=gen, dtype=F64).to(device).requires_grad_(True)
    actions = torch.randint(K, (B,), generator=gen).to(device)
    loss, stats = a2c_loss(logits, actions, values, adv, returns, vf, ent)
    loss.backward()
    probs = torch.softmax(logits.detach(), -1)
    onehot = torch.nn.functional.one_hot(actions, K).to(F64)
    logp = torch.log_softmax(logits.detach(), -1)
    grad_h = -probs * (logp - (probs * logp).sum(-1, keepdim=True))  # ∂H/∂z
    expected = -(adv.detach()[:, None] * (onehot - probs)) / B - ent * grad_h / B
    torch.testing.assert_close(logits.grad, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(values.grad, vf * (values - returns).detach() / B, rtol=0, atol=1e-12)
    assert adv.grad is None and returns.grad is None
    torch.testing.assert_close(stats.value_loss, 0.5 * (values - returns).detach().pow(2).mean())
    torch.testing.assert_close(stats.entropy, -(probs * logp).sum(-1).mean())
    assert stats.policy_loss.device.type == device and not stats.policy_loss.requires_grad


# --------------------------------------------------------------------- A2C: rollouts, episode ends, autoreset


class Countdown(gym.Env):
    """Observation (k, 0) after k steps of the episode; reward k; it ends after 3 steps, terminated or truncated."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, terminate: bool) -> None:
        self.terminate, self.k = terminate, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.k = 0
        return np.array([0.0, 0.0], np.float32), {}

    def step(self, action):
        self.k += 1
        end = self.k == 3
        return np.array([self.k, 0.0], np.float32), float(self.k), end and self.terminate, end and not self.terminate, {}


class TenTimesFirstFeature(nn.Module):
    """A hand-made critic, V(s) = 10·s[0]."""

    def forward(self, obs):
        return 10.0 * obs[:, 0]


class Uniform(nn.Module):
    def forward(self, obs):
        return torch.zeros((obs.shape[0], 2), dtype=obs.dtype)


def countdown_rollout(mode, T=8):
    envs = SyncVectorEnv([lambda: Countdown(terminate=True), lambda: Countdown(terminate=False)], autoreset_mode=mode)
    buffer = RolloutBuffer(T, 2, (2,))
    state = reset_envs(envs, seed=0)
    info = collect_rollout(envs, Uniform(), TenTimesFirstFeature(), state, buffer, torch.Generator().manual_seed(0))
    envs.close()
    return buffer, info


@pytest.mark.parametrize("mode", [AutoresetMode.SAME_STEP, AutoresetMode.NEXT_STEP])
def test_rollout_bootstraps_a_truncation_from_the_true_final_observation(mode):
    """At the end row V(s_{t+1}) = V(final obs) = 30, not V(reset obs) = 0; GAE(λ=0) there is r + γ·30·(1−term) − V(s).

    Env 0 terminates, env 1 is truncated, each after 3 steps. Same-step autoreset: ends at
    rows 2 and 5, every row valid. Next-step autoreset: ends at rows 2 and 6, rows 3 and 7
    are the resets (invalid). Checked exactly (float32 integers).
    """
    buffer, info = countdown_rollout(mode)
    ends = [2, 5] if mode == AutoresetMode.SAME_STEP else [2, 6]
    resets = [] if mode == AutoresetMode.SAME_STEP else [3, 7]
    expected_valid = torch.ones((8, 2), dtype=torch.bool)
    expected_valid[resets] = False
    assert torch.equal(info.valid, expected_valid)
    for t in ends:
        assert buffer.terminated[t].tolist() == [True, False] and buffer.truncated[t].tolist() == [False, True]
        assert buffer.next_values[t].tolist() == [30.0, 30.0]  # the final observation (3, 0)
        assert buffer.values[t].tolist() == [20.0, 20.0] and buffer.rewards[t].tolist() == [3.0, 3.0]
        if mode == AutoresetMode.SAME_STEP:
            assert buffer.obs[t + 1, :, 0].tolist() == [0.0, 0.0]  # acts from the reset observation at once
        else:
            assert buffer.obs[t + 1, :, 0].tolist() == [3.0, 3.0]  # the reset row "acts" from the final one
    assert int(buffer.terminated.sum() + buffer.truncated.sum()) == 2 * len(ends)
    adv = gae(buffer.rewards, buffer.values, buffer.next_values, buffer.terminated, buffer.truncated, 0.9, 0.0)
    for t in ends:
        assert adv[t].tolist() == pytest.approx([3.0 - 20.0, 3.0 + 0.9 * 30.0 - 20.0])
    valid_rows = [t for t in range(8) if t not in resets]
    assert float(buffer.rewards[valid_rows].sum()) == float(buffer.rewards.sum())  # resets pay nothing
    assert [(e.step, e.env, e.episode_return, e.length, e.terminated) for e in info.episodes] == [
        (ends[0], 0, 6.0, 3, True), (ends[0], 1, 6.0, 3, False), (ends[1], 0, 6.0, 3, True), (ends[1], 1, 6.0, 3, False)]


@pytest.mark.slow
def test_next_step_reset_rows_leave_the_a2c_update():
    """a2c_update on a next-step rollout equals a2c_loss on its valid rows alone (gradients equal, 1e-6)."""
    buffer, info = countdown_rollout(AutoresetMode.NEXT_STEP)
    config = A2CConfig(num_envs=2, num_steps=8, gamma=0.9, gae_lambda=0.8, max_grad_norm=math.inf, ent_coef=0.01)
    g = torch.Generator().manual_seed(0)
    actor, critic = Actor(2, 2, (4,), g), Critic(2, (4,), g)
    twin_actor, twin_critic = Actor(2, 2, (4,), torch.Generator().manual_seed(0)), Critic(2, (4,), g)
    twin_critic.load_state_dict(critic.state_dict())
    twin_actor.load_state_dict(actor.state_dict())
    stats = a2c_update(actor, critic, torch.optim.SGD([*actor.parameters(), *critic.parameters()], lr=0.0),
                       buffer, info.valid, config)
    adv, returns = buffer.adv, buffer.returns
    keep = info.valid.reshape(-1)
    obs = buffer.obs.reshape(-1, 2)[keep]
    loss, expected = a2c_loss(twin_actor(obs), buffer.actions.reshape(-1)[keep], twin_critic(obs),
                              adv.reshape(-1)[keep], returns.reshape(-1)[keep], config.vf_coef, config.ent_coef)
    loss.backward()
    for a, b in zip([*actor.parameters(), *critic.parameters()], [*twin_actor.parameters(), *twin_critic.parameters()]):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-6, atol=1e-6)
    for got, want in zip(stats, expected):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6, equal_nan=True)


def test_native_cartpole_vector_env_is_used_and_its_truncations_bootstrap():
    """make_vector_env picks CartPoleVectorEnv (next-step autoreset); a 5-step time limit bootstraps V(final obs)."""
    envs = make_vector_env("CartPole-v1", 2)
    assert envs.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    assert type(envs.unwrapped).__name__ == "CartPoleVectorEnv"
    envs.close()
    envs = gym.make_vec("CartPole-v1", num_envs=2, vectorization_mode="vector_entry_point", max_episode_steps=5)
    buffer = RolloutBuffer(12, 2, (4,))
    critic = Critic(4, (8,), torch.Generator().manual_seed(0))
    info = collect_rollout(envs, Uniform(), critic, reset_envs(envs, seed=0), buffer, torch.Generator().manual_seed(0))
    envs.close()
    rows, cols = buffer.truncated.nonzero(as_tuple=True)
    assert rows.tolist() and set(rows.tolist()) <= {4, 10}  # 5 steps, a reset row, 5 steps
    with torch.no_grad():
        for t, i in zip(rows.tolist(), cols.tolist()):
            if t + 1 < 12:
                final = buffer.obs[t + 1, i]  # the reset row acts from the final observation
                torch.testing.assert_close(buffer.next_values[t, i], critic(final[None])[0], rtol=1e-6, atol=1e-6)
                assert not bool(info.valid[t + 1, i])
    assert info.episodes and all(e.length == 5 if not e.terminated else e.length <= 5 for e in info.episodes)


def test_make_vector_env_refuses_continuous_actions():
    """A2C here needs Discrete actions: Pendulum-v1 raises a ValueError that names the spaces."""
    with pytest.raises(ValueError, match="Discrete"):
        make_vector_env("Pendulum-v1", 2)


# --------------------------------------------------------------------- A2C: the training loop


@pytest.mark.slow  # trains: the slow tier
def test_train_a2c_is_seeded_and_logs_what_it_reports():
    """Two runs with seed 3 give the same episodes and weights; env_steps grow; the callback sees every record."""
    config = A2CConfig(num_envs=4, num_steps=8, total_steps=640)
    seen, ticks = [], iter(range(10_000))
    first = train_a2c(config, 3, progress=False, on_episode=seen.append, clock=lambda: float(next(ticks)))
    second = train_a2c(config, 3, progress=False)
    log = first.log
    assert len(log.episodes) > 5 and seen == log.episodes
    assert [e.episode_return for e in log.episodes] == [e.episode_return for e in second.log.episodes]
    assert [e.env_steps for e in log.episodes] == [e.env_steps for e in second.log.episodes]
    for a, b in zip(first.actor.parameters(), second.actor.parameters()):
        assert torch.equal(a, b)
    steps = [e.env_steps for e in log.episodes]
    assert steps == sorted(steps) and 0 < steps[-1] <= 640
    assert [e.wall_s for e in log.episodes] == sorted(e.wall_s for e in log.episodes)
    assert all(e.episode_return == e.length for e in log.episodes)  # CartPole pays 1 per step
    assert len(log.updates) == config.num_updates == 20
    assert all(math.isfinite(u.policy_loss) and 0 < u.entropy <= math.log(2) + 1e-6 for u in log.updates)


# --------------------------------------------------------------------- off-policy actor-critic


@pytest.mark.parametrize("device", DEVICES)
def test_off_policy_losses_weight_by_truncated_ratios(gen, device):
    """∇_θ L_actor = −(1/B) Σ ρ̄ δ ∇ln π, ∇_V L_critic = −ρ̄ δ / B with ρ̄ = min(π/β, c); no bootstrap past a termination."""
    B, c, gamma = 9, 1.5, 0.9
    logp = torch.log(torch.rand(B, generator=gen, dtype=F64)).to(device).requires_grad_(True)
    logp_b = torch.log(torch.rand(B, generator=gen, dtype=F64)).to(device)
    values = torch.randn(B, generator=gen, dtype=F64).to(device).requires_grad_(True)
    next_values = torch.randn(B, generator=gen, dtype=F64).to(device)
    rewards = torch.randn(B, generator=gen, dtype=F64).to(device)
    terminated = (torch.arange(B) % 3 == 0).to(device)
    actor_loss, critic_loss, stats = off_policy_ac_losses(logp, logp_b, values, next_values, rewards, terminated,
                                                          gamma, c)
    (actor_loss + critic_loss).backward()
    rho = torch.clamp((logp - logp_b).exp(), max=c).detach()
    delta = (rewards + gamma * (~terminated).to(F64) * next_values - values).detach()
    torch.testing.assert_close(logp.grad, -rho * delta / B, rtol=0, atol=1e-12)
    torch.testing.assert_close(values.grad, -rho * delta / B, rtol=0, atol=1e-12)
    assert float(stats.mean_ratio) <= c
    torch.testing.assert_close(stats.truncated_frac, ((logp - logp_b).exp() > c).to(F64).mean())
    _, _, untruncated = off_policy_ac_losses(logp, logp_b, values, next_values, rewards, terminated, gamma, math.inf)
    torch.testing.assert_close(untruncated.mean_ratio, (logp - logp_b).exp().mean().detach())


@pytest.mark.slow
def test_off_policy_actor_critic_beats_its_behaviour_policy():
    """Learning only from β(right) = 0.7's replayed transitions, π's exact J beats β's (−12.38) and nears −3."""
    result = off_policy_actor_critic(OffPolicyACConfig(), seed=0)
    assert result.behavior_value == pytest.approx(corridor_value(0.7))
    assert result.target_value > result.behavior_value + 5.0
    assert result.target_value > -3.2, result.p_right
    assert float(result.p_right[1]) < 0.05 and min(float(result.p_right[0]), float(result.p_right[2])) > 0.95
    assert result.p_right_history.shape == (OffPolicyACConfig().num_updates + 1, 3)
    torch.testing.assert_close(result.w, torch.tensor([-3.0, -2.0, -1.0], dtype=F64), rtol=0, atol=0.2)


def test_corridor_actor_features_alias_the_states_or_not():
    """Tabular features give each state its own logits; the aliased ones give every state the same."""
    theta = torch.arange(6, dtype=F64)
    logits = corridor_actor_features(True) @ theta
    torch.testing.assert_close(logits, theta.reshape(3, 2))
    aliased = corridor_actor_features(False) @ torch.tensor([2.0, 1.0], dtype=F64)
    torch.testing.assert_close(aliased, torch.tensor([[1.0, 2.0]] * 3, dtype=F64))


# --------------------------------------------------------------------- reference results (slow)


@pytest.mark.slow
def test_a2c_solves_cartpole():
    """Reference: A2C with the default config reaches a 100-episode mean return ≥ 475 on CartPole-v1 (seed 1).

    Measured (one torch thread, 2-core CPU): see the report printed below.
    """
    started = time.perf_counter()
    result = train_a2c(A2CConfig(), 1, progress=False, target_return=475.0)
    reached = result.log.first_reaching(475.0, window=100)
    assert reached is not None, f"mean of the last 100 returns: {result.log.mean_return(100):.1f}"
    print(f"A2C CartPole-v1 seed 1: 475 reached at {reached.env_steps} env steps, "
          f"{reached.wall_s:.1f} s ({time.perf_counter() - started:.1f} s in all)")
    assert reached.env_steps <= A2CConfig().total_steps


@pytest.mark.slow
def test_one_step_actor_critic_finds_the_corridor_optimum_for_every_seed():
    """Reference: seeds 0-7, 300 episodes each from π(right) = 0.1: every final p within 0.05 of p* ≈ 0.586."""
    finals = []
    for seed in range(8):
        result = one_step_actor_critic(ShortCorridor(max_episode_steps=1000), corridor_policy_features,
                                       corridor_value_features, torch.tensor([0.0, math.log(9.0)], dtype=F64),
                                       torch.zeros(3, dtype=F64), 300, 1.0, 2**-7, 2**-3,
                                       torch.Generator().manual_seed(seed))
        finals.append(corridor_p_right(result.theta))
    assert max(abs(p - CORRIDOR_OPTIMAL_P_RIGHT) for p in finals) < 0.05, finals


@pytest.mark.slow
def test_off_policy_actor_critic_with_aliased_features_falls_below_its_behaviour_policy():
    """The documented failure: with example 13.1's aliased features and β(right) = 0.9, π ends worse than β.

    The updates weight states by β's visits; in the switched state β's data say "left", so
    π(right) → 0 and J(π) ≪ J(β) ≈ −24.4, while the tabular actor beats β on the same data.
    """
    aliased = off_policy_actor_critic(OffPolicyACConfig(behavior_p_right=0.9, tabular_actor=False), seed=0)
    tabular = off_policy_actor_critic(OffPolicyACConfig(behavior_p_right=0.9), seed=0)
    assert aliased.target_value < aliased.behavior_value - 100
    assert tabular.target_value > tabular.behavior_value + 15
