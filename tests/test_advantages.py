import itertools

import pytest
import torch

from rlteach.advantages import (
    bias_variance,
    discounted_returns,
    gae,
    policy_values,
    random_walk,
    reward_to_go,
    rollout_values,
    sample_rollouts,
    td_errors,
    td_n_advantages,
    td_n_targets,
)
from tests.conftest import DEVICES

F64 = torch.float64


def random_rollout(gen, T=12, N=4, p_end=0.15, device="cpu", dtype=F64):
    """Random (T, N) rollout with episode ends in the middle, and consistent values.

    Inside an episode next_values[t] = values[t+1]; at a truncation it is the value of a
    final observation (random); at a termination it is garbage that must be ignored.
    Env 0 terminates at t=3, env 1 is truncated at t=5, env 2 has both flags at t=7.
    """
    rewards = torch.randn((T, N), generator=gen, dtype=F64)
    values = torch.randn((T, N), generator=gen, dtype=F64)
    terminated = torch.rand((T, N), generator=gen) < p_end
    truncated = (torch.rand((T, N), generator=gen) < p_end) & ~terminated
    terminated[3, 0], truncated[3, 0] = True, False
    terminated[5, 1], truncated[5, 1] = False, True
    terminated[7, 2], truncated[7, 2] = True, True
    following = torch.cat([values[1:], torch.randn((1, N), generator=gen, dtype=F64)])
    final = 100.0 * torch.randn((T, N), generator=gen, dtype=F64)
    next_values = torch.where(terminated | truncated, final, following)
    out = (rewards, values, next_values, terminated, truncated)
    return tuple(t.to(device=device, dtype=dtype if t.is_floating_point() else t.dtype) for t in out)


def td_n_reference(rewards, next_values, terminated, truncated, gamma, n):
    """Plain Python: for each (t, env) walk forward until the n-th step, an episode end or T-1."""
    T, N = rewards.shape
    out = torch.zeros((T, N), dtype=F64)
    for i in range(N):
        for t in range(T):
            g, k = 0.0, 0
            while True:
                s = t + k
                g += gamma**k * float(rewards[s, i])
                if terminated[s, i]:
                    break
                if truncated[s, i] or k == n - 1 or s == T - 1:
                    g += gamma ** (k + 1) * float(next_values[s, i])
                    break
                k += 1
            out[t, i] = g
    return out


# --------------------------------------------------------------------- analytic references


@pytest.mark.parametrize("device", DEVICES)
def test_gae_with_lambda_zero_is_the_td_error(gen, device):
    """GAE(γ, 0)_t = δ_t = r_t + γ(1 − term_t) V(s_{t+1}) − V(s_t)."""
    r, v, nv, term, trunc = random_rollout(gen, device=device)
    torch.testing.assert_close(gae(r, v, nv, term, trunc, 0.9, 0.0), td_errors(r, v, nv, term, 0.9), rtol=0, atol=1e-12)
    expected = r + 0.9 * (~term).to(F64) * nv - v
    torch.testing.assert_close(td_errors(r, v, nv, term, 0.9), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
def test_gae_with_lambda_one_is_the_monte_carlo_advantage(gen, device):
    """GAE(γ, 1)_t = G_t − V(s_t), with G bootstrapped at truncations and at the rollout's end."""
    r, v, nv, term, trunc = random_rollout(gen, device=device)
    mc = discounted_returns(r, nv, term, trunc, 0.95) - v
    torch.testing.assert_close(gae(r, v, nv, term, trunc, 0.95, 1.0), mc, rtol=0, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("gae_lambda", [0.0, 0.3, 0.9, 1.0])
def test_gae_is_the_lambda_weighted_mixture_of_td_n_advantages(gen, device, gae_lambda):
    """Â^GAE = Σ_{n=1}^{T-1} (1−λ)λ^{n−1} Â^(n) + λ^{T−1} Â^(T): past the episode's or the
    rollout's end every Â^(n) equals the longest available one, which collects the tail λ^{m−1}."""
    r, v, nv, term, trunc = random_rollout(gen, T=10, N=5, device=device)
    T = r.shape[0]
    mixture = torch.zeros_like(r)
    for n in range(1, T + 1):
        weight = (1 - gae_lambda) * gae_lambda ** (n - 1) if n < T else gae_lambda ** (T - 1)
        mixture += weight * td_n_advantages(r, v, nv, term, trunc, 0.9, n)
    torch.testing.assert_close(gae(r, v, nv, term, trunc, 0.9, gae_lambda), mixture, rtol=0, atol=1e-10)


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_td_n_targets_match_a_plain_loop_over_every_step(gen, n):
    """G^(n)_t = Σ_{k<m} γ^k r_{t+k} + γ^m (1 − term) V(s_{t+m}), m cut at episode ends and T−1."""
    r, _, nv, term, trunc = random_rollout(gen, T=9, N=4)
    expected = td_n_reference(r, nv, term, trunc, 0.8, n)
    torch.testing.assert_close(td_n_targets(r, nv, term, trunc, 0.8, n), expected, rtol=0, atol=1e-12)


def test_td_n_reduces_to_the_td_error_and_to_the_monte_carlo_advantage(gen):
    """Â^(1) = δ; Â^(n) for every n ≥ T is return − value, the same for all such n."""
    r, v, nv, term, trunc = random_rollout(gen, T=8)
    torch.testing.assert_close(td_n_advantages(r, v, nv, term, trunc, 0.9, 1), td_errors(r, v, nv, term, 0.9),
                               rtol=0, atol=1e-12)
    mc = discounted_returns(r, nv, term, trunc, 0.9) - v
    for n in (8, 9, 50):
        torch.testing.assert_close(td_n_advantages(r, v, nv, term, trunc, 0.9, n), mc, rtol=0, atol=1e-12)


def test_reward_to_go_is_the_return_without_bootstrapping(gen):
    """reward_to_go = discounted_returns with V(s') = 0 wherever a bootstrap would happen."""
    r, _, nv, term, trunc = random_rollout(gen)
    torch.testing.assert_close(reward_to_go(r, term, trunc, 0.9), discounted_returns(r, torch.zeros_like(nv), term, trunc, 0.9),
                               rtol=0, atol=1e-12)


# --------------------------------------------------------------------- hand-computed cases


def hand_rollout():
    """T = 4, three environments, γ = λ = 0.5 (so γλ = 0.25).

    env 0: terminated at t=1 (next_values[1] = 100 is garbage and must be ignored).
    env 1: truncated at t=2; next_values[2] = 10 is V(final observation).
    env 2: terminated and truncated at t=3, the last step (termination wins: no bootstrap).
    """
    rewards = torch.tensor([[1, 2, 3, 4], [1, 1, 1, 1], [0, 0, 0, 1]], dtype=F64).T
    values = torch.tensor([[2, 4, 8, 2], [4, 2, 4, 8], [2, 2, 2, 2]], dtype=F64).T
    next_values = torch.tensor([[4, 100, 2, 6], [2, 4, 10, 4], [2, 2, 2, 50]], dtype=F64).T
    terminated = torch.tensor([[0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]], dtype=torch.bool).T
    truncated = torch.tensor([[0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=torch.bool).T
    return rewards, values, next_values, terminated, truncated


def test_hand_computed_td_errors_and_gae():
    """δ and GAE by hand, with a termination, a truncation and both flags at once."""
    r, v, nv, term, trunc = hand_rollout()
    # env 0: δ = [1 + .5·4 − 2, 2 + 0 − 4, 3 + .5·2 − 8, 4 + .5·6 − 2] = [1, −2, −4, 5]
    # env 1: δ = [1 + .5·2 − 4, 1 + .5·4 − 2, 1 + .5·10 − 4, 1 + .5·4 − 8] = [−2, 1, 2, −5]
    # env 2: δ = [0 + .5·2 − 2, −1, −1, 1 + 0 − 2] = [−1, −1, −1, −1]
    deltas = torch.tensor([[1, -2, -4, 5], [-2, 1, 2, -5], [-1, -1, -1, -1]], dtype=F64).T
    torch.testing.assert_close(td_errors(r, v, nv, term, 0.5), deltas, rtol=0, atol=1e-12)
    # env 0: Â3 = 5, Â2 = −4 + .25·5 = −2.75, Â1 = −2 (terminated), Â0 = 1 + .25·(−2) = 0.5
    # env 1: Â3 = −5, Â2 = 2 (truncated), Â1 = 1 + .25·2 = 1.5, Â0 = −2 + .25·1.5 = −1.625
    # env 2: Â3 = −1, Â2 = −1 − .25 = −1.25, Â1 = −1 − .25·1.25 = −1.3125, Â0 = −1 − .25·1.3125 = −1.328125
    expected = torch.tensor([[0.5, -2, -2.75, 5], [-1.625, 1.5, 2, -5], [-1.328125, -1.3125, -1.25, -1]], dtype=F64).T
    torch.testing.assert_close(gae(r, v, nv, term, trunc, 0.5, 0.5), expected, rtol=0, atol=1e-12)


def test_hand_computed_returns_and_reward_to_go():
    """Bootstrapped returns and plain reward-to-go by hand (γ = 0.5)."""
    r, _, nv, term, trunc = hand_rollout()
    # env 0: G3 = 4 + .5·6 = 7, G2 = 3 + .5·7 = 6.5, G1 = 2 (terminated), G0 = 1 + .5·2 = 2
    # env 1: G3 = 1 + .5·4 = 3, G2 = 1 + .5·10 = 6 (truncated), G1 = 1 + .5·6 = 4, G0 = 1 + .5·4 = 3
    # env 2: G3 = 1 (terminated), G2 = .5, G1 = .25, G0 = .125
    returns = torch.tensor([[2, 2, 6.5, 7], [3, 4, 6, 3], [0.125, 0.25, 0.5, 1]], dtype=F64).T
    torch.testing.assert_close(discounted_returns(r, nv, term, trunc, 0.5), returns, rtol=0, atol=1e-12)
    # no bootstrap anywhere: env 0: [1 + .5·2, 2, 3 + .5·4, 4] = [2, 2, 5, 4]
    # env 1: [1 + .5 + .25, 1 + .5, 1, 1] = [1.75, 1.5, 1, 1]; env 2 as above
    to_go = torch.tensor([[2, 2, 5, 4], [1.75, 1.5, 1, 1], [0.125, 0.25, 0.5, 1]], dtype=F64).T
    torch.testing.assert_close(reward_to_go(r, term, trunc, 0.5), to_go, rtol=0, atol=1e-12)


def test_hand_computed_two_step_targets_and_advantages():
    """G^(2) and Â^(2) by hand (γ = 0.5)."""
    r, v, nv, term, trunc = hand_rollout()
    # env 0: t0: 1 + .5·2 (terminated at 1, no bootstrap) = 2; t1: 2; t2: 3 + .5·4 + .25·6 = 6.5; t3: 4 + .5·6 = 7
    # env 1: t0: 1 + .5·1 + .25·4 = 2.5; t1: 1 + .5·1 + .25·10 = 4; t2: 1 + .5·10 = 6; t3: 1 + .5·4 = 3
    # env 2: t0: 0 + 0 + .25·2 = .5; t1: .25·2 = .5; t2: 0 + .5·1 (terminated at 3) = .5; t3: 1
    targets = torch.tensor([[2, 2, 6.5, 7], [2.5, 4, 6, 3], [0.5, 0.5, 0.5, 1]], dtype=F64).T
    torch.testing.assert_close(td_n_targets(r, nv, term, trunc, 0.5, 2), targets, rtol=0, atol=1e-12)
    # minus values: env 0: [0, −2, −1.5, 5]; env 1: [−1.5, 2, 2, −5]; env 2: [−1.5, −1.5, −1.5, −1]
    expected = torch.tensor([[0, -2, -1.5, 5], [-1.5, 2, 2, -5], [-1.5, -1.5, -1.5, -1]], dtype=F64).T
    torch.testing.assert_close(td_n_advantages(r, v, nv, term, trunc, 0.5, 2), expected, rtol=0, atol=1e-12)


# --------------------------------------------------------------------- episode boundaries


def all_estimates(r, v, nv, term, trunc, gamma=0.9, gae_lambda=0.8):
    return {
        "gae": gae(r, v, nv, term, trunc, gamma, gae_lambda),
        "returns": discounted_returns(r, nv, term, trunc, gamma),
        "reward_to_go": reward_to_go(r, term, trunc, gamma),
        "td_3": td_n_advantages(r, v, nv, term, trunc, gamma, 3),
        "td_errors": td_errors(r, v, nv, term, gamma),
    }


@pytest.mark.parametrize("env, end", [(0, 3), (1, 5), (2, 7)])
def test_nothing_crosses_an_episode_boundary(gen, env, end):
    """Changing rewards and values after an end (termination, truncation, both) leaves every
    estimate at or before it unchanged."""
    r, v, nv, term, trunc = random_rollout(gen)
    before = all_estimates(r, v, nv, term, trunc)
    r2, v2, nv2 = r.clone(), v.clone(), nv.clone()
    r2[end + 1:, env] += 5.0
    v2[end + 1:, env] -= 3.0
    nv2[end + 1:, env] += 7.0
    after = all_estimates(r2, v2, nv2, term, trunc)
    for name in before:
        torch.testing.assert_close(after[name][: end + 1, env], before[name][: end + 1, env], rtol=0, atol=0, msg=name)
        assert not torch.allclose(after[name][end + 1:, env], before[name][end + 1:, env]), name


def test_truncation_bootstraps_from_next_values_at_that_step(gen):
    """Raising next_values at the truncated step (t=5, env 1) by Δ raises Â_t by γΔ and, inside the
    episode, Â_{t−k} by γ(γλ)^k Δ; returns before it by γ^{k+1} Δ."""
    r, v, nv, term, trunc = random_rollout(gen)
    term[:5, 1] = False
    trunc[:5, 1] = False  # steps 0..5 of env 1 form one episode
    nv[:5, 1] = v[1:6, 1]
    gamma, lam, delta = 0.9, 0.8, 2.0
    nv2 = nv.clone()
    nv2[5, 1] += delta
    k = torch.arange(5, -1, -1, dtype=F64)  # distance from t=5 for t = 0..5
    change = gae(r, v, nv2, term, trunc, gamma, lam) - gae(r, v, nv, term, trunc, gamma, lam)
    torch.testing.assert_close(change[:6, 1], gamma * (gamma * lam) ** k * delta, rtol=0, atol=1e-12)
    change = discounted_returns(r, nv2, term, trunc, gamma) - discounted_returns(r, nv, term, trunc, gamma)
    torch.testing.assert_close(change[:6, 1], gamma ** (k + 1) * delta, rtol=0, atol=1e-12)
    assert torch.count_nonzero(change[6:]) == 0


def test_termination_does_not_bootstrap(gen):
    """next_values at a terminated step (t=3 env 0, t=7 env 2 with both flags) changes nothing."""
    r, v, nv, term, trunc = random_rollout(gen)
    before = all_estimates(r, v, nv, term, trunc)
    nv2 = nv.clone()
    nv2[term] += 1000.0
    after = all_estimates(r, v, nv2, term, trunc)
    for name in before:
        torch.testing.assert_close(after[name], before[name], rtol=0, atol=0, msg=name)


def test_the_rollout_end_bootstraps_unless_it_ended(gen):
    """next_values[T−1] enters GAE at T−1 with weight γ, unless the last step terminated."""
    r, v, nv, term, trunc = random_rollout(gen)
    term[-1] = torch.tensor([False, True, False, True])
    trunc[-1] = torch.tensor([False, False, True, True])
    nv2 = nv.clone()
    nv2[-1] += 1.0
    change = gae(r, v, nv2, term, trunc, 0.9, 0.7)[-1] - gae(r, v, nv, term, trunc, 0.9, 0.7)[-1]
    torch.testing.assert_close(change, torch.tensor([0.9, 0.0, 0.9, 0.0], dtype=F64), rtol=0, atol=1e-12)


def test_treating_truncation_as_termination_changes_the_estimate(gen):
    """The flags are not interchangeable: merging truncated into terminated drops the bootstrap."""
    r, v, nv, term, trunc = random_rollout(gen)
    right = gae(r, v, nv, term, trunc, 0.9, 0.9)
    merged = gae(r, v, nv, term | trunc, torch.zeros_like(trunc), 0.9, 0.9)
    torch.testing.assert_close(right[5, 1] - merged[5, 1], 0.9 * nv[5, 1], rtol=0, atol=1e-12)


# --------------------------------------------------------------------- dtypes, devices, input checks


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_outputs_follow_the_inputs_device_and_dtype(gen, device, dtype):
    r, v, nv, term, trunc = random_rollout(gen, device=device, dtype=dtype)
    for name, out in all_estimates(r, v, nv, term, trunc).items():
        assert out.device.type == device and out.dtype == dtype and out.shape == r.shape, name
    cpu = all_estimates(*(t.cpu() for t in (r, v, nv, term, trunc)))
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    for name, out in all_estimates(r, v, nv, term, trunc).items():
        torch.testing.assert_close(out.cpu(), cpu[name], rtol=tol, atol=tol, msg=name)


def test_an_empty_rollout_gives_empty_estimates():
    empty = torch.zeros((0, 3), dtype=F64)
    flags = torch.zeros((0, 3), dtype=torch.bool)
    for name, out in all_estimates(empty, empty, empty, flags, flags).items():
        assert out.shape == (0, 3), name


def test_numpy_inputs_are_accepted(gen):
    r, v, nv, term, trunc = random_rollout(gen)
    expected = gae(r, v, nv, term, trunc, 0.9, 0.9)
    torch.testing.assert_close(gae(r.numpy(), v.numpy(), nv.numpy(), term.numpy(), trunc.numpy(), 0.9, 0.9), expected)


def bad_calls():
    z, b = torch.zeros((4, 2)), torch.zeros((4, 2), dtype=torch.bool)
    nan = torch.zeros((4, 2))
    nan[2, 1] = float("nan")
    return [
        (lambda: gae(z, z, z, z, b, 0.9, 0.9), TypeError, "terminated: expected booleans"),
        (lambda: gae(z, z, z, b, z.long(), 0.9, 0.9), TypeError, "truncated: expected booleans"),
        (lambda: gae(z, torch.zeros((4, 3)), z, b, b, 0.9, 0.9), ValueError, "mismatched shapes"),
        (lambda: gae(z[0], z[0], z[0], b[0], b[0], 0.9, 0.9), ValueError, r"shape \(T, N\)"),
        (lambda: gae(z, z, z, b, b, 1.5, 0.9), ValueError, "gamma=1.5"),
        (lambda: gae(z, z, z, b, b, 0.9, -0.1), ValueError, "gae_lambda=-0.1"),
        (lambda: gae(z, z, z, b, b, 0.9, float("nan")), ValueError, "gae_lambda"),
        (lambda: gae(nan, z, z, b, b, 0.9, 0.9), ValueError, r"rewards contains NaN \(first at index \(2, 1\)\)"),
        (lambda: td_n_advantages(z, z, z, b, b, 0.9, 0), ValueError, "n=0"),
        (lambda: td_n_targets(z, z, b, b, 0.9, 2.0), TypeError, "n: expected an integer"),
        (lambda: discounted_returns(z, z, b, b, -1.0), ValueError, "gamma"),
        (lambda: reward_to_go(z, b, b, "0.9"), TypeError, "gamma"),
        (lambda: td_errors(z, z, z, b, True), TypeError, "gamma"),
    ]


@pytest.mark.parametrize("call, error, match", bad_calls())
def test_bad_input_gets_a_clear_error(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_inputs_on_different_devices_are_refused():
    z, b = torch.zeros((4, 2)), torch.zeros((4, 2), dtype=torch.bool)
    with pytest.raises(ValueError, match="different devices"):
        gae(z, z.cuda(), z, b, b, 0.9, 0.9)


# --------------------------------------------------------------------- the exact MDP


def uniform(num_states):
    return torch.full((num_states, 2), 0.5, dtype=F64)


def test_random_walk_values_are_those_of_sutton_and_barto():
    """5-state walk, reward 1 on the right exit, γ = 1, uniform policy: V(s) = (s+1)/6 (S&B ex. 6.2)."""
    mdp = random_walk(5, reward_left=0.0, reward_right=1.0)
    exact = policy_values(mdp, uniform(5), 1.0)
    torch.testing.assert_close(exact.values, torch.arange(1, 6, dtype=F64) / 6, rtol=0, atol=1e-12)
    torch.testing.assert_close(exact.q_values[:, 1], torch.arange(2, 7, dtype=F64) / 6, rtol=0, atol=1e-12)


def test_exact_values_satisfy_the_bellman_equations():
    """V = Σ_a π Q, Q = r + γ P V, and the advantage has zero mean under π."""
    mdp = random_walk(6, step_reward=-0.1)
    policy = torch.tensor([[0.3, 0.7]] * 6, dtype=F64)
    exact = policy_values(mdp, policy, 0.9)
    torch.testing.assert_close((policy * exact.q_values).sum(-1), exact.values, rtol=0, atol=1e-12)
    bellman = mdp.rewards + 0.9 * torch.einsum("sat,t->sa", mdp.transitions, exact.values)
    torch.testing.assert_close(exact.q_values, bellman, rtol=0, atol=1e-12)
    torch.testing.assert_close((policy * exact.adv).sum(-1), torch.zeros(6, dtype=F64), rtol=0, atol=1e-12)


def test_a_policy_that_never_ends_an_episode_has_no_undiscounted_value():
    policy = uniform(4)
    policy[0] = torch.tensor([0.0, 1.0])
    policy[1] = torch.tensor([1.0, 0.0])  # bounces between states 0 and 1 forever
    mdp = random_walk(4, start_state=0)
    with pytest.raises(ValueError, match="singular"):
        policy_values(mdp, policy, 1.0)
    assert torch.isfinite(policy_values(mdp, policy, 0.9).values).all()


def test_rollouts_are_seeded_and_follow_gymnasium_semantics():
    """Same seed, same rollout; s_{t+1} continues the episode unless it ended; a truncation happens
    exactly at max_episode_steps and keeps the final state; a termination leaves for state S."""
    mdp, policy, S, limit = random_walk(5), torch.tensor([[0.4, 0.6]] * 5, dtype=F64), 5, 4
    a = sample_rollouts(mdp, policy, 40, 64, limit, torch.Generator().manual_seed(3))
    b = sample_rollouts(mdp, policy, 40, 64, limit, torch.Generator().manual_seed(3))
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    ended = a.terminated | a.truncated
    assert a.terminated.any() and a.truncated.any() and not (a.terminated & a.truncated).any()
    assert torch.equal(a.states[1:][~ended[:-1]], a.next_states[:-1][~ended[:-1]])
    assert bool((a.next_states[a.terminated] == S).all()) and bool((a.next_states[~a.terminated] < S).all())
    torch.testing.assert_close(a.rewards, mdp.rewards[a.states, a.actions], rtol=0, atol=0)
    torch.testing.assert_close(a.logp, policy.log()[a.states, a.actions], rtol=0, atol=0)
    elapsed = torch.zeros(64, dtype=torch.int64)
    for t in range(40):
        elapsed += 1
        assert torch.equal(a.truncated[t], ~a.terminated[t] & (elapsed == limit))
        elapsed[ended[t]] = 0


def test_with_the_true_values_every_estimator_is_unbiased_even_across_time_limits():
    """With V̂ = V^π, E[Â_t | s, a] = A(s, a) for TD(n) and GAE, time limits included (truncations
    bootstrap from V(final state)): every (s, a) mean within 4 standard errors. Treating the
    truncations as terminations is off by many standard errors. One step per env (t = 5), so the
    samples are independent."""
    mdp, policy, gamma = random_walk(5), uniform(5), 0.9
    exact = policy_values(mdp, policy, gamma)
    ro = sample_rollouts(mdp, policy, 12, 20_000, 3, torch.Generator().manual_seed(5))
    v, nv = rollout_values(ro, exact.values)
    t, pair = 5, ro.states[5] * 2 + ro.actions[5]

    def worst_z(estimate):
        z = []
        for p in range(10):
            sample = estimate[t][pair == p]
            stderr = max(sample.std().item() / sample.numel() ** 0.5, 1e-12)  # 0 where Â is deterministic
            z.append(abs(sample.mean().item() - exact.adv.flatten()[p].item()) / stderr)
        return max(z)

    for estimate in (gae(ro.rewards, v, nv, ro.terminated, ro.truncated, gamma, 0.9),
                     td_n_advantages(ro.rewards, v, nv, ro.terminated, ro.truncated, gamma, 3)):
        assert worst_z(estimate) < 4
    merged = gae(ro.rewards, v, nv, ro.terminated | ro.truncated, torch.zeros_like(ro.truncated), gamma, 0.9)
    assert worst_z(merged) > 10


def wrong_value_estimates(state_values, ro, gamma):
    v, nv = rollout_values(ro, state_values)
    args = (ro.rewards, v, nv, ro.terminated, ro.truncated, gamma)
    by_n = [td_n_advantages(*args, n) for n in (1, 2, 4, 8)]
    by_lambda = [gae(*args, lam) for lam in (0.0, 0.5, 0.8, 0.95)]
    return by_n, by_lambda


@pytest.mark.slow
@pytest.mark.parametrize("which", ["zero", "perturbed"])
def test_bias_falls_and_variance_rises_with_n_and_with_lambda(which):
    """With a wrong V̂ (zero, or V^π plus noise), the policy-gradient bias of Â^(n) and of GAE(λ)
    falls as n and λ grow, and their variance rises (Schulman et al. 2016, sec. 3): checked over
    n = 1, 2, 4, 8 and λ = 0, 0.5, 0.8, 0.95 on 64 × 2000 seeded steps with time limits."""
    mdp, policy, gamma = random_walk(5), uniform(5), 0.9
    exact = policy_values(mdp, policy, gamma)
    ro = sample_rollouts(mdp, policy, 64, 2000, 20, torch.Generator().manual_seed(11))
    noise = 0.5 * torch.randn(5, generator=torch.Generator().manual_seed(12), dtype=F64)
    state_values = torch.zeros(5, dtype=F64) if which == "zero" else exact.values + noise
    for estimates in wrong_value_estimates(state_values, ro, gamma):
        stats = [bias_variance(a, ro, exact, policy) for a in estimates]
        biases, variances = [s.bias for s in stats], [s.variance for s in stats]
        assert all(x > 1.3 * y for x, y in itertools.pairwise(biases)), biases
        assert all(x < y for x, y in itertools.pairwise(variances)), variances
        assert biases[0] > 0.2 and variances[0] < 1e-10  # one step: deterministic moves, biased V̂


def test_a_baseline_error_is_raw_bias_but_no_policy_gradient_bias():
    """With V̂ = V^π, bias is at the sampling-noise level. Shifting only the baseline of Â^(n),
    V̂(s_t) = V(s_t) + ε(s_t), gives Â^(n) − ε(s_t): raw bias = RMS of ε over visits, while the
    action-centred bias is unchanged (E_a[∇ln π] ε(s) = 0), and so is the variance."""
    mdp, policy, gamma = random_walk(5), uniform(5), 0.9
    exact = policy_values(mdp, policy, gamma)
    ro = sample_rollouts(mdp, policy, 32, 1000, None, torch.Generator().manual_seed(13))
    v, nv = rollout_values(ro, exact.values)
    true_stats = bias_variance(td_n_advantages(ro.rewards, v, nv, ro.terminated, ro.truncated, gamma, 3), ro, exact, policy)
    assert true_stats.bias < 0.01 and true_stats.raw_bias < 0.01
    eps = torch.tensor([0.3, -0.2, 0.5, 0.0, -0.4], dtype=F64)
    shifted_adv = td_n_advantages(ro.rewards, v + eps[ro.states], nv, ro.terminated, ro.truncated, gamma, 3)
    shifted = bias_variance(shifted_adv, ro, exact, policy)
    visits = torch.bincount(ro.states.flatten(), minlength=5).to(F64)
    rms_eps = ((visits * eps**2).sum() / visits.sum()).sqrt().item()
    assert shifted.raw_bias == pytest.approx(rms_eps, abs=0.01)
    assert shifted.bias == pytest.approx(true_stats.bias, abs=1e-9)
    assert shifted.variance == pytest.approx(true_stats.variance, rel=1e-9)


def test_bias_variance_needs_every_action_of_a_visited_state():
    mdp, policy = random_walk(3), uniform(3)
    exact = policy_values(mdp, policy, 0.9)
    ro = sample_rollouts(mdp, policy, 1, 1, None, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="sample more"):
        bias_variance(torch.zeros((1, 1), dtype=F64), ro, exact, policy)

