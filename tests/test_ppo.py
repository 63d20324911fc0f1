"""PPO (rlteach.ppo) and its policy networks (rlteach.policies): every implementation detail
is a switch of PPOConfig, and each switch has a test that pins a number or an identity."""

import dataclasses
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from rlteach.advantages import gae
from rlteach.envs import BatchedCartPole, BatchedPendulum
from rlteach.kl import categorical_kl, gaussian_kl, kl_k3
from rlteach.policies import (
    CategoricalActorCritic,
    GaussianActorCritic,
    gaussian_entropy,
    gaussian_logp,
    make_actor_critic,
    mlp,
    mlp_forward,
)
from rlteach.ppo import (
    PENDULUM,
    Batch,
    BatchedEnvState,
    CapturedStep,
    FusedAdam,
    PPOConfig,
    RewardScaler,
    Rollout,
    RunningMeanStd,
    backward,
    clip_grad_norm,
    clip_objective,
    collect_batched_rollout,
    collect_rollout,
    cpi_objective,
    flatten_rollout,
    linear_schedule,
    make_envs,
    make_optimizer,
    normalize_advantages,
    policy_loss,
    ppo_update,
    reset_batched_env,
    reset_ppo_envs,
    rollout_advantages,
    start_on_policy,
    train_ppo,
    value_loss,
)
from rlteach.train import ALGORITHMS, _parser, _resolve
from tests.conftest import DEVICES

F64 = torch.float64


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread, restored after: the thread count the seeded reference numbers were measured with."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def small_policy(obs_dim=4, num_actions=2, seed=0, **kw):
    return CategoricalActorCritic(obs_dim, num_actions, (16, 16), generator=torch.Generator().manual_seed(seed), **kw)


def random_batch(gen, size=64, obs_dim=4, num_actions=2):
    obs = torch.randn(size, obs_dim, generator=gen)
    actions = torch.randint(num_actions, (size,), generator=gen)
    logp = torch.log(torch.full((size,), 1.0 / num_actions)) + 0.05 * torch.randn(size, generator=gen)
    values = torch.randn(size, generator=gen)
    adv = torch.randn(size, generator=gen)
    return Batch(obs, actions, logp, values, adv, values + adv)


# --------------------------------------------------------------------- the surrogates


@pytest.mark.parametrize("device", DEVICES)
def test_clipped_surrogate_has_zero_gradient_outside_the_clip(device):
    """∂/∂r of min(rA, clip(r)A) is 0 for r > 1+ε with A > 0 and r < 1−ε with A < 0, and A inside the clip."""
    ratio = torch.tensor([1.5, 0.5, 1.1, 0.9, 0.5, 1.5], dtype=F64, device=device, requires_grad=True)
    adv = torch.tensor([2.0, -3.0, 2.0, -3.0, 2.0, -3.0], dtype=F64, device=device)
    clip_objective(ratio, adv, 0.2).sum().backward()
    # beyond the clip in the helpful direction: flat; inside: A; beyond it in the harmful direction: A (not clipped)
    torch.testing.assert_close(ratio.grad, torch.tensor([0.0, 0.0, 2.0, -3.0, 2.0, -3.0], dtype=F64, device=device))


def test_clipped_surrogate_is_a_pessimistic_bound_equal_inside_the_clip(gen):
    """L^CLIP ≤ L^CPI sample by sample, with equality for r ∈ [1−ε, 1+ε]."""
    ratio = torch.exp(0.5 * torch.randn(10_000, generator=gen, dtype=F64))
    adv = torch.randn(10_000, generator=gen, dtype=F64)
    clip, cpi = clip_objective(ratio, adv, 0.2), cpi_objective(ratio, adv)
    assert float((clip - cpi).max()) <= 0.0
    inside = (ratio - 1).abs() <= 0.2
    assert 0 < int(inside.sum()) < 10_000
    torch.testing.assert_close(clip[inside], cpi[inside], rtol=0, atol=0)
    assert float((cpi - clip)[~inside].max()) > 0.1  # and strictly below somewhere outside


def test_at_ratio_one_the_clipped_and_unclipped_losses_have_the_same_gradient(gen):
    """At θ = θ_old (r = 1), ∇L^CLIP = ∇L^CPI = E[Â ∇log π]: clipping only acts after the first step."""
    policy = small_policy()
    batch = random_batch(gen)
    with torch.no_grad():
        logp_old = policy.logp(policy.dist(batch.obs), batch.actions)
    grads = []
    for clip in (True, False):
        policy.zero_grad()
        loss, stats = policy_loss(policy.logp(policy.dist(batch.obs), batch.actions), logp_old, batch.adv, 0.2, clip)
        loss.backward()
        grads.append(torch.cat([p.grad.reshape(-1) for p in policy.actor.parameters()]))
        assert float(stats.approx_kl) == 0.0 and float(stats.clip_frac) == 0.0
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-6, atol=1e-9)
    assert float(grads[0].norm()) > 1e-3


def test_policy_loss_is_minus_the_surrogate_with_k3_kl_and_the_clip_fraction():
    """loss = −mean(min(rA, clip(r)A)) (or −mean(rA)); approx_kl = mean((r−1) − log r); clip_frac = share |r−1| > ε."""
    logp_old = torch.zeros(4, dtype=F64)
    logp = torch.log(torch.tensor([1.5, 0.5, 1.1, 1.0], dtype=F64))
    adv = torch.tensor([1.0, -1.0, 2.0, 3.0], dtype=F64)
    loss, stats = policy_loss(logp, logp_old, adv, 0.2)
    assert float(loss) == pytest.approx(-(1.2 * 1 + 0.8 * -1 + 1.1 * 2 + 3.0) / 4)  # r = 0.5, Â < 0: the clipped 0.8Â is lower
    cpi_loss, _ = policy_loss(logp, logp_old, adv, 0.2, clip_surrogate=False)
    assert float(cpi_loss) == pytest.approx(-(1.5 - 0.5 + 2.2 + 3.0) / 4)
    r = torch.tensor([1.5, 0.5, 1.1, 1.0], dtype=F64)
    assert float(stats.approx_kl) == pytest.approx(float(((r - 1) - r.log()).mean()), rel=1e-12)
    assert float(stats.approx_kl) == pytest.approx(float(kl_k3(r.log()).mean()), rel=1e-12)  # the library's k3
    assert float(stats.clip_frac) == 0.5


# --------------------------------------------------------------------- the value loss and the advantages


def test_value_loss_unclipped_and_clipped():
    """½ mean (V − R)²; clipped: ½ mean max((V − R)², (V_old + clip(V − V_old, ±ε) − R)²), with no gradient where clipped."""
    values = torch.tensor([1.0, 3.0, 0.0], dtype=F64, requires_grad=True)
    values_old = torch.tensor([0.0, 0.0, 0.0], dtype=F64)
    returns = torch.tensor([2.0, 3.0, 1.0], dtype=F64)
    assert float(value_loss(values, values_old, returns).detach()) == pytest.approx(0.5 * (1 + 0 + 1) / 3)
    clipped = value_loss(values, values_old, returns, clip_eps=0.5)
    # sample 0: max(1, (0.5 − 2)²) = 2.25; sample 1: max(0, (0.5 − 3)²) = 6.25; sample 2: max(1, 1) = 1
    assert float(clipped.detach()) == pytest.approx(0.5 * (2.25 + 6.25 + 1.0) / 3)
    clipped.backward()
    torch.testing.assert_close(values.grad, torch.tensor([0.0, 0.0, -1.0 / 3], dtype=F64))


def test_advantages_are_normalised_over_the_batch_of_valid_samples(gen):
    """flatten_rollout standardises Â over the valid samples of the whole rollout: mean 0, std 1."""
    T, N = 6, 3
    rollout = Rollout(torch.randn(T, N, 4, generator=gen), torch.randint(2, (T, N), generator=gen),
                      torch.zeros(T, N), torch.zeros(T, N), torch.zeros(T, N), torch.zeros(T, N),
                      torch.zeros(T, N, dtype=torch.bool), torch.zeros(T, N, dtype=torch.bool),
                      torch.rand(T, N, generator=gen) > 0.3)
    adv = 5.0 + 3.0 * torch.randn(T, N, generator=gen)
    batch = flatten_rollout(rollout, adv, adv, normalize_adv=True)
    assert batch.adv.shape[0] == int(rollout.valid.sum())
    assert float(batch.adv.mean()) == pytest.approx(0.0, abs=1e-6)
    assert float(batch.adv.std()) == pytest.approx(1.0, abs=1e-6)
    raw = flatten_rollout(rollout, adv, adv, normalize_adv=False)
    torch.testing.assert_close(raw.adv, adv[rollout.valid])
    torch.testing.assert_close(normalize_advantages(torch.tensor([2.5])), torch.tensor([0.0]))


def test_plain_returns_instead_of_gae_give_the_lambda_one_advantage(gen):
    """use_gae=False: Â = G − V with bootstrapped discounted returns, which is GAE with λ = 1."""
    T, N = 12, 3
    rewards = torch.randn(T, N, generator=gen, dtype=F64)
    chain = torch.randn(T + 1, N, generator=gen, dtype=F64)  # V(s_0), ..., V(s_T) along each env's stream
    terminated = torch.rand(T, N, generator=gen) < 0.15
    truncated = (torch.rand(T, N, generator=gen) < 0.15) & ~terminated
    values = chain[:-1]
    final = torch.randn(T, N, generator=gen, dtype=F64)  # V of the true final observation where an episode ended
    next_values = torch.where(terminated | truncated, final, chain[1:])  # consistent: next_values[t] = values[t+1] inside
    rollout = Rollout(torch.zeros(T, N, 1), torch.zeros(T, N), torch.zeros(T, N), values, next_values, rewards,
                      terminated, truncated, torch.ones(T, N, dtype=torch.bool))
    adv, returns = rollout_advantages(rollout, 0.9, 0.5, use_gae=False)
    torch.testing.assert_close(adv, gae(rewards, values, next_values, terminated, truncated, 0.9, 1.0))
    torch.testing.assert_close(returns, adv + values)
    adv_gae, returns_gae = rollout_advantages(rollout, 0.9, 0.5, use_gae=True)
    torch.testing.assert_close(adv_gae, gae(rewards, values, next_values, terminated, truncated, 0.9, 0.5))
    assert float((adv_gae - adv).abs().max()) > 0.1


# --------------------------------------------------------------------- the update


def test_kl_early_stopping_stops_at_the_first_minibatch_past_the_target(gen):
    """With a tiny target_kl the first step (r = 1, KL = 0) is taken and the second minibatch stops the update."""
    batch = random_batch(gen, size=64)
    config = PPOConfig(update_epochs=4, num_minibatches=4, num_envs=8, num_steps=8)
    policy = small_policy()
    with torch.no_grad():
        batch = batch._replace(logp=policy.logp(policy.dist(batch.obs), batch.actions))  # collected by this policy
    full = ppo_update(policy, make_optimizer(policy, config), batch, config, torch.Generator().manual_seed(1), 0.2)
    assert (full.grad_steps, full.epochs, full.stopped_early) == (16, 4, False)
    policy = small_policy()
    stop = dataclasses.replace(config, target_kl=1e-6)  # above float32 rounding at r = 1
    stopped = ppo_update(policy, make_optimizer(policy, stop), batch, stop, torch.Generator().manual_seed(1), 0.2)
    assert (stopped.grad_steps, stopped.epochs, stopped.stopped_early) == (1, 1, True)
    assert stopped.approx_kl > 1e-6


def test_global_gradient_clipping_bounds_the_norm_of_the_step():
    """With SGD (lr 1) the step is minus the gradient: its global norm is max_grad_norm after clipping."""
    batch = random_batch(torch.Generator().manual_seed(3))
    norms = {}
    for max_norm in (1e-3, math.inf):
        policy = small_policy()
        before = torch.cat([p.detach().reshape(-1).clone() for p in policy.parameters()])
        config = PPOConfig(update_epochs=1, num_envs=8, num_steps=8, max_grad_norm=max_norm)
        ppo_update(policy, torch.optim.SGD(policy.parameters(), lr=1.0), batch, config, torch.Generator(), 0.2)
        norms[max_norm] = float((torch.cat([p.detach().reshape(-1) for p in policy.parameters()]) - before).norm())
    assert norms[1e-3] == pytest.approx(1e-3, rel=1e-4)
    assert norms[math.inf] > 0.1


def test_clip_grad_norm_matches_torch_and_leaves_small_gradients_alone(gen):
    """The global norm and the scaled gradients of torch.nn.utils.clip_grad_norm_; below the cap nothing changes."""
    for max_norm in (0.1, 1e3):
        a, b = small_policy(), small_policy()
        for p, q in zip(a.parameters(), b.parameters(), strict=True):
            p.grad = torch.randn(p.shape, generator=gen)
            q.grad = p.grad.clone()
        norm = clip_grad_norm(list(a.parameters()), max_norm)
        expected = nn.utils.clip_grad_norm_(list(b.parameters()), max_norm)
        torch.testing.assert_close(norm, expected)
        for p, q in zip(a.parameters(), b.parameters(), strict=True):
            torch.testing.assert_close(p.grad, q.grad)
    assert float(torch.cat([p.grad.reshape(-1) for p in a.parameters()]).norm()) == pytest.approx(float(norm))


def test_backward_gives_the_gradients_of_loss_backward_bit_for_bit(gen):
    """backward(loss) leaves in every .grad exactly what loss.backward() leaves (the same engine call)."""
    a, b = small_policy(), small_policy()
    obs = torch.randn(32, 4, generator=gen)
    for policy, run in ((a, backward), (b, lambda loss: loss.backward())):
        loss = policy.dist(obs)[0].logsumexp(-1).mean() + policy.value(obs).pow(2).mean()
        run(loss)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert p.grad is not None and torch.equal(p.grad, q.grad)


def test_collect_rollout_leaves_an_observation_that_autograd_can_use():
    """The rollout runs in inference mode; the carried observation and the rollout's tensors are normal tensors."""
    config = PPOConfig(num_envs=2, num_steps=5)
    envs = make_envs(config.env_id, config.num_envs)
    policy = small_policy()
    state = reset_ppo_envs(envs, config, seed=0)
    rollout, _ = collect_rollout(envs, policy, state, config.num_steps, torch.Generator().manual_seed(0))
    envs.close()
    assert not state.obs.is_inference() and not any(column.is_inference() for column in rollout)
    policy.value(state.obs).sum().backward()  # would raise for an inference tensor


def test_entropy_bonus_raises_the_entropy_when_the_advantages_vanish():
    """Â = 0 and no critic loss: the actor moves only through −c_e H; with c_e = 0 it does not move."""
    batch = random_batch(torch.Generator().manual_seed(4))._replace(adv=torch.zeros(64))
    entropies = {}
    for ent_coef in (0.0, 0.1):
        policy = small_policy()
        with torch.no_grad():
            policy.actor[-1].weight.mul_(300.0)  # a peaked policy, entropy well below log 2
        before = float(policy.entropy(policy.dist(batch.obs)).mean().detach())
        config = PPOConfig(update_epochs=5, num_envs=8, num_steps=8, ent_coef=ent_coef, vf_coef=0.0,
                           normalize_adv=False, lr=1e-2)
        ppo_update(policy, make_optimizer(policy, config), batch, config, torch.Generator().manual_seed(0), 0.2)
        entropies[ent_coef] = float(policy.entropy(policy.dist(batch.obs)).mean().detach()) - before
    assert entropies[0.0] == 0.0
    assert entropies[0.1] > 0.01


def test_minibatches_are_shuffled_from_the_generator_only_when_asked(gen):
    """shuffle_minibatches draws one permutation per epoch from the generator; without it nothing is drawn."""
    batch = random_batch(gen)
    results = {}
    for shuffle in (True, False):
        config = PPOConfig(update_epochs=3, num_minibatches=4, num_envs=8, num_steps=8, shuffle_minibatches=shuffle)
        generator = torch.Generator().manual_seed(7)
        state = generator.get_state()
        policy = small_policy()
        ppo_update(policy, make_optimizer(policy, config), batch, config, generator, 0.2)
        results[shuffle] = (torch.equal(generator.get_state(), state), torch.cat([p.detach().reshape(-1) for p in policy.parameters()]))
    assert results[True][0] is False and results[False][0] is True
    assert float((results[True][1] - results[False][1]).abs().max()) > 1e-6


def test_fused_adam_matches_torch_adam_bit_for_bit():
    """FusedAdam = torch.optim.Adam(fused=True) to the last bit, with an annealed lr and steps where
    a parameter has no gradient (it keeps its moments and step count); make_optimizer returns it on the CPU."""
    a = small_policy()
    b = small_policy()
    ours, theirs = FusedAdam(a.parameters(), lr=1e-3, eps=1e-5), torch.optim.Adam(b.parameters(), lr=1e-3, eps=1e-5,
                                                                                  fused=True)
    x = torch.randn(32, 4, generator=torch.Generator().manual_seed(0))
    for k in range(30):
        for net, optimizer in ((a, ours), (b, theirs)):
            optimizer.param_groups[0]["lr"] = 1e-3 * (1 - k / 30)
            optimizer.zero_grad(set_to_none=True)
            loss = net.value(x).sin().sum() if k % 7 == 3 else net.dist(x)[0].pow(2).sum() + net.value(x).sum()
            loss.backward()
            optimizer.step()
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    assert isinstance(make_optimizer(a, PPOConfig()), FusedAdam)


def test_adam_uses_the_configured_eps_and_the_lr_anneals_linearly_to_zero():
    """make_optimizer passes adam_eps; linear_schedule is x₀(1 − k/U), 0 at k = U; train_ppo's step sizes follow it."""
    policy = small_policy()
    assert make_optimizer(policy, PPOConfig(adam_eps=1e-7)).param_groups[0]["eps"] == 1e-7
    assert linear_schedule(1e-3, 0, 4) == 1e-3 and linear_schedule(1e-3, 4, 4) == 0.0
    assert linear_schedule(1e-3, 3, 4) == pytest.approx(2.5e-4)
    config = PPOConfig(num_envs=4, num_steps=8, total_steps=128, update_epochs=1, lr=1e-3)
    result = train_ppo(config, 0, progress=False)
    lrs = [u.lr for u in result.updates]
    assert len(lrs) == config.num_updates == 4
    np.testing.assert_allclose(lrs, [1e-3, 7.5e-4, 5e-4, 2.5e-4], rtol=1e-12)
    np.testing.assert_allclose([u.clip_eps for u in result.updates], [0.2, 0.15, 0.1, 0.05], rtol=1e-12)
    constant = train_ppo(dataclasses.replace(config, anneal_lr=False, anneal_clip_eps=False), 0, progress=False)
    assert {u.lr for u in constant.updates} == {1e-3} and {u.clip_eps for u in constant.updates} == {0.2}


# --------------------------------------------------------------------- the networks


def test_orthogonal_initialisation_has_the_stated_gains_and_zero_biases():
    """W Wᵀ = g² I (for fan_out ≤ fan_in, else WᵀW): √2 in hidden layers, 0.01 for the policy head, 1 for the value head."""
    policy = CategoricalActorCritic(4, 2, (64, 64), generator=torch.Generator().manual_seed(0))
    for net, head_gain in ((policy.actor, 0.01), (policy.critic, 1.0)):
        linears = [m for m in net if isinstance(m, nn.Linear)]
        for i, layer in enumerate(linears):
            W = layer.weight.detach().double()
            gram = W @ W.T if W.shape[0] <= W.shape[1] else W.T @ W
            gain = head_gain if i == len(linears) - 1 else math.sqrt(2.0)
            torch.testing.assert_close(gram, gain**2 * torch.eye(gram.shape[0], dtype=F64), rtol=0, atol=1e-5)
            assert float(layer.bias.detach().abs().max()) == 0.0
    default = CategoricalActorCritic(4, 2, (64, 64), generator=torch.Generator().manual_seed(0), orthogonal_init=False)
    first = default.actor[0]
    assert 0.0 < float(first.bias.detach().abs().max()) <= 0.5 and float(first.weight.detach().abs().max()) <= 0.5  # U(±1/√4)
    W = default.actor[2].weight.detach().double()
    assert float((W @ W.T - 2 * torch.eye(64, dtype=F64)).abs().max()) > 0.5  # not orthogonal


def test_networks_are_seeded_by_their_generator_and_leave_the_global_one_alone():
    state = torch.random.get_rng_state()
    a, b = small_policy(seed=3), small_policy(seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    x = torch.randn(5, 4, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(mlp_forward(a.actor, x), a.actor(x), rtol=0, atol=0)


def test_categorical_policy_logp_entropy_kl_and_sampling(gen):
    """logp = log_softmax gathered; the entropy and KL are the closed forms; draws follow π within 4 standard errors."""
    policy = small_policy(num_actions=3)
    with torch.no_grad():
        policy.actor[-1].weight.mul_(100.0)
        obs = torch.randn(1, 4, generator=gen).expand(20_000, 4)
        dist = policy.dist(obs)
        probs = torch.softmax(dist[0][0], -1)
        actions, logp = policy.sample(dist, torch.Generator().manual_seed(0))
    freq = torch.bincount(actions, minlength=3).double() / 20_000
    se = torch.sqrt(probs.double() * (1 - probs.double()) / 20_000)
    assert float(((freq - probs.double()).abs() / se).max()) < 4.0
    torch.testing.assert_close(logp, torch.log_softmax(dist[0], -1).gather(-1, actions[:, None]).squeeze(-1))
    torch.testing.assert_close(policy.logp(dist, actions), logp)
    torch.testing.assert_close(policy.entropy(dist)[0], -(probs * probs.log()).sum())
    other = (dist[0] + torch.randn(dist[0].shape, generator=gen),)
    torch.testing.assert_close(policy.kl(dist, other), categorical_kl(dist[0], other[0]))


def test_gaussian_logp_and_entropy_match_torch_distributions(gen):
    mean, log_std, actions = (torch.randn(7, 3, generator=gen, dtype=F64) for _ in range(3))
    reference = torch.distributions.Normal(mean, log_std.exp())
    torch.testing.assert_close(gaussian_logp(mean, log_std, actions), reference.log_prob(actions).sum(-1))
    torch.testing.assert_close(gaussian_entropy(log_std), reference.entropy().sum(-1))


def test_state_independent_log_std_is_one_free_vector(gen):
    """The default Gaussian policy has log σ of shape (d,), the same in every state; the other variant depends on s."""
    obs = torch.randn(5, 3, generator=gen)
    free = GaussianActorCritic(3, 2, (16,), generator=torch.Generator().manual_seed(0), log_std_init=-0.5)
    mean, log_std = free.dist(obs)
    assert free.log_std is not None and free.log_std.shape == (2,)
    torch.testing.assert_close(log_std, torch.full((5, 2), -0.5))
    assert any(p is free.log_std for p in free.parameters())
    per_state = GaussianActorCritic(3, 2, (16,), generator=torch.Generator().manual_seed(0), state_dependent_std=True)
    _, log_std_s = per_state.dist(obs)
    assert per_state.log_std is None and float(log_std_s.detach().std(0).max()) > 0
    actions, logp = free.sample((mean, log_std), torch.Generator().manual_seed(0))
    torch.testing.assert_close(logp, gaussian_logp(mean, log_std, actions))
    torch.testing.assert_close(free.kl((mean, log_std), (mean + 1, log_std)), gaussian_kl(mean, log_std, mean + 1, log_std))


def test_make_actor_critic_picks_the_head_from_the_action_space():
    gen = torch.Generator().manual_seed(0)
    box = gym.spaces.Box(-1, 1, (3,))
    assert isinstance(make_actor_critic(box, gym.spaces.Discrete(4), generator=gen), CategoricalActorCritic)
    assert isinstance(make_actor_critic(box, gym.spaces.Box(-2, 2, (2,)), generator=gen), GaussianActorCritic)
    with pytest.raises(ValueError, match="action space"):
        make_actor_critic(box, gym.spaces.MultiBinary(3), generator=gen)
    assert len(mlp(3, (8,), 2, out_gain=1.0, generator=gen)) == 3


# --------------------------------------------------------------------- normalisation


def test_running_mean_std_matches_numpy_over_the_concatenated_batches(rng):
    rms = RunningMeanStd((3,))
    batches = [rng.normal(loc=5.0, scale=[1.0, 2.0, 3.0], size=(n, 3)) for n in (1, 7, 50, 2)]
    for b in batches:
        rms.update(b)
    everything = np.concatenate(batches)
    np.testing.assert_allclose(rms.mean, everything.mean(0), rtol=1e-12)
    np.testing.assert_allclose(rms.var, everything.var(0), rtol=1e-12)
    assert rms.count == 60
    z = rms.normalize(np.array([[5.0, 5.0, 1e6]]), clip=10.0)
    assert z.dtype == np.float32 and z[0, 2] == 10.0


def test_reward_scaler_divides_by_the_std_of_the_discounted_return():
    """Per env G ← γG + r (reset at ends); the reward is divided by √(Var[G] + 1e-8) over all G seen so far."""
    scaler = RewardScaler(2, gamma=0.5, clip=100.0)
    ones, valid = np.ones(2, dtype=bool), np.ones(2, dtype=bool)
    scaler(np.array([1.0, 2.0]), ~ones, valid)  # G = (1, 2)
    out = scaler(np.array([2.0, 4.0]), np.array([True, False]), valid)  # G = (2.5, 5), then env 0 resets
    seen = np.array([1.0, 2.0, 2.5, 5.0])
    np.testing.assert_allclose(out, np.array([2.0, 4.0]) / np.sqrt(seen.var() + 1e-8))
    np.testing.assert_allclose(scaler.returns, [0.0, 5.0])


def test_rollouts_on_a_vector_env_normalise_observations_and_clip_actions():
    """Pendulum: N envs × T steps; observations standardised and clipped; actions stored as drawn, sent clipped."""
    config = dataclasses.replace(PENDULUM, num_envs=3, num_steps=40, log_std_init=2.0, clip_obs=1.5)
    envs = make_envs(config.env_id, config.num_envs)
    sent = []
    step = envs.step
    envs.step = lambda actions: (sent.append(np.array(actions)), step(actions))[1]
    policy = make_actor_critic(envs.single_observation_space, envs.single_action_space, (16,),
                               generator=torch.Generator().manual_seed(0), log_std_init=2.0)
    state = reset_ppo_envs(envs, config, seed=0)
    rollout, _ = collect_rollout(envs, policy, state, config.num_steps, torch.Generator().manual_seed(0), True)
    envs.close()
    assert rollout.obs.shape == (40, 3, 3) and rollout.actions.shape == (40, 3, 1) and rollout.logp.shape == (40, 3)
    assert float(rollout.obs.abs().max()) == 1.5  # clipped at ±clip_obs
    assert state.obs_rms is not None and state.obs_rms.count == 3 * 41
    assert float(rollout.actions.abs().max()) > 2.0  # σ = e² draws beyond Pendulum's bound of 2 ...
    assert float(np.abs(np.stack(sent)).max()) == 2.0  # ... but the environments get them clipped
    assert bool(rollout.valid.all())  # same-step autoreset: every step is a transition


# --------------------------------------------------------------------- the loop


def test_config_checks_and_derived_sizes():
    config = PPOConfig(num_envs=8, num_steps=32, num_minibatches=3, total_steps=1000)
    assert (config.batch_size, config.minibatch_size, config.num_updates) == (256, 86, 4)
    with pytest.raises(ValueError, match="target_kl"):
        PPOConfig(target_kl=0.0)
    with pytest.raises(ValueError, match="max_grad_norm"):
        PPOConfig(max_grad_norm=0.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.lr = 1.0  # type: ignore[misc]


@pytest.mark.slow  # trains: the slow tier
def test_training_is_seeded():
    """Same seed, same episodes and parameters; another seed, other episodes."""
    config = PPOConfig(num_envs=4, num_steps=16, total_steps=1024, update_epochs=2)
    a, b, c = (train_ppo(config, seed, progress=False) for seed in (5, 5, 6))
    assert a.log.returns == b.log.returns and len(a.log.returns) > 10
    for p, q in zip(a.policy.parameters(), b.policy.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    assert a.log.returns != c.log.returns


@pytest.mark.slow  # trains: the slow tier
def test_a_short_seeded_cartpole_run_learns():
    """4096 steps of the default config (16 updates), seed 1, one thread: the numbers measured when it was written.

    The last 20 episodes average 45.4 steps against 23.05 for the first 20, and the critic
    explains most of the returns' variance by the last update.
    """
    result = train_ppo(dataclasses.replace(PPOConfig(), total_steps=4096), 1, progress=False)
    returns = result.log.returns
    assert len(returns) == 136
    assert np.mean(returns[:20]) == pytest.approx(23.05, abs=1e-9)
    assert np.mean(returns[-20:]) == pytest.approx(45.4, abs=1e-9)
    assert result.updates[-1].explained_variance == pytest.approx(0.9122, abs=1e-3)
    assert result.log.episodes[-1].env_steps <= 4096


def test_rlteach_train_registers_ppo_with_a_pendulum_preset():
    algorithm = ALGORITHMS["ppo"]
    assert algorithm.envs == ("CartPole-v1", "Pendulum-v1")
    parser = _parser()
    _, cartpole, _ = _resolve(parser, parser.parse_args(["ppo", "CartPole-v1", "--steps", "512"]))
    _, pendulum, _ = _resolve(parser, parser.parse_args(["ppo", "Pendulum-v1"]))
    assert cartpole == dataclasses.replace(PPOConfig(), total_steps=512)
    assert pendulum == PENDULUM and pendulum.normalize_obs and pendulum.gamma == 0.9


# --------------------------------------------------------------------- the batched environments


def test_the_batched_backend_is_checked_by_the_config():
    assert PPOConfig(env_backend="batched", randomize=(("length", 0.4, 0.6),)).env_backend == "batched"
    with pytest.raises(ValueError, match="'gymnasium' or 'batched'"):
        PPOConfig(env_backend="isaac")
    with pytest.raises(ValueError, match="no batched version"):
        PPOConfig(env_id="Acrobot-v1", env_backend="batched")
    with pytest.raises(ValueError, match="normalize_obs=False"):
        dataclasses.replace(PENDULUM, env_backend="batched")
    with pytest.raises(ValueError, match="needs env_backend='batched'"):
        PPOConfig(randomize=(("length", 0.4, 0.6),))
    parser = _parser()
    _, config, _ = _resolve(parser, parser.parse_args(["ppo", "CartPole-v1", "--env-backend", "batched"]))
    assert config == PPOConfig(env_backend="batched")


@pytest.mark.parametrize("device", DEVICES)
def test_a_batched_rollout_stays_on_the_device_and_bootstraps_from_the_final_observation(device):
    """Every row is a transition; next_values is V(final_obs); episodes' returns are their lengths (reward 1)."""
    env = BatchedCartPole(16, device=device)
    policy = make_actor_critic(env.single_observation_space, env.single_action_space,
                               generator=torch.Generator().manual_seed(0)).to(device)
    state = reset_batched_env(env, 3)
    assert isinstance(state, BatchedEnvState)
    generator = torch.Generator(device=device).manual_seed(0)
    rollout, episodes = collect_batched_rollout(env, policy, state, 64, generator)
    assert rollout.obs.shape == (64, 16, 4) and rollout.valid.all()
    assert all(t.device.type == torch.device(device).type for t in rollout)
    ended = rollout.terminated | rollout.truncated
    assert len(episodes) == int(ended.sum()) > 16
    assert all(e.episode_return == e.length for e in episodes)
    # where nothing ended the next row starts from the state the last one reached
    with torch.no_grad():
        torch.testing.assert_close(rollout.next_values[:-1][~ended[:-1]], policy.value(rollout.obs[1:][~ended[:-1]]))
        torch.testing.assert_close(rollout.values, policy.value(rollout.obs.reshape(-1, 4)).reshape(64, 16))
    assert not state.obs.is_inference() and float(state.episode_length.max()) < 64


@pytest.mark.slow  # trains: the slow tier
def test_a_short_seeded_batched_cartpole_run_learns():
    """4096 steps of the default config on the batched CartPole, seed 1, one thread: numbers measured when written.

    The last 20 episodes average 79.25 steps against 20.55 for the first 20; the same seed gives the same run.
    """
    config = dataclasses.replace(PPOConfig(env_backend="batched"), total_steps=4096)
    a, b = (train_ppo(config, 1, progress=False) for _ in range(2))
    assert a.log.returns == b.log.returns and len(a.log.returns) == 94
    assert np.mean(a.log.returns[:20]) == pytest.approx(20.55, abs=1e-9)
    assert np.mean(a.log.returns[-20:]) == pytest.approx(79.25, abs=1e-9)


def test_ppo_trains_on_a_randomised_batched_pendulum():
    """Domain randomisation reaches the environments: each of the N pendulums has its own length."""
    config = PPOConfig(env_id="Pendulum-v1", env_backend="batched", num_envs=8, num_steps=16, total_steps=256,
                       update_epochs=1, randomize=(("length", 0.5, 1.5),))
    result = train_ppo(config, 0, progress=False)
    assert len(result.updates) == 2 and result.obs_rms is None
    setup = start_on_policy(config, 0, "cpu", reset_ppo_envs)
    assert isinstance(setup.envs, BatchedPendulum)
    assert float(setup.envs.params["length"].std()) > 0.1
    assert float(setup.envs.params["mass"].std()) == 0.0  # only the listed parameter is drawn


def _two_copies(make_env, seed: int, device: str):
    """Two identical environments (the second never reads back to the host), a policy, and their states."""
    envs = [make_env(device) for _ in range(2)]
    envs[1].sync_free = True
    policy = make_actor_critic(envs[0].single_observation_space, envs[0].single_action_space,
                               generator=torch.Generator().manual_seed(seed)).to(device)
    return envs, policy, [reset_batched_env(env, seed) for env in envs]


CAPTURED_ENVS = {
    "cartpole": lambda device: BatchedCartPole(16, device=device, max_episode_steps=25,
                                               randomize={"length": (0.3, 0.7), "action_delay": (0.0, 2.0)}),
    "pendulum": lambda device: BatchedPendulum(16, device=device, max_episode_steps=15,
                                               randomize={"mass": (0.5, 1.5), "obs_noise": (0.0, 0.05)}),
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("task", CAPTURED_ENVS)
def test_the_captured_step_collects_the_eager_rollout(device, task):
    """Two rollouts through CapturedStep (a CUDA graph on CUDA, its eager body on the CPU) equal
    collect_batched_rollout's, bit for bit, across terminations, truncations, randomised resets and an
    in-place change of the policy's parameters between them (an optimizer step)."""
    (eager_env, captured_env), policy, (eager, captured) = _two_copies(CAPTURED_ENVS[task], 7, device)
    step = CapturedStep(captured_env, policy, captured)
    assert (step.graph is not None) == (torch.device(device).type == "cuda")
    generators = [torch.Generator(device=device).manual_seed(11) for _ in range(2)]
    for rollout_index in range(2):
        a, a_episodes = collect_batched_rollout(eager_env, policy, eager, 40, generators[0])
        b, b_episodes = collect_batched_rollout(captured_env, policy, captured, 40, generators[1], step)
        for name, x, y in zip(Rollout._fields, a, b, strict=True):
            assert torch.equal(x, y), (rollout_index, name)
        assert a_episodes == b_episodes and len(a_episodes) > 16
        assert bool(a.truncated.any()) and (task == "pendulum" or bool(a.terminated.any()))
        for x, y in zip(eager_env.buffers(), captured_env.buffers(), strict=True):
            assert torch.equal(x, y)
        assert torch.equal(eager.obs, captured.obs) and torch.equal(eager.episode_return, captured.episode_return)
        with torch.no_grad():
            for p in policy.parameters():
                p.mul_(1.5)  # what the next rollout must see


@pytest.mark.slow  # imports torch._dynamo (seconds)
def test_the_captured_step_never_reads_a_tensor_back_to_the_host():
    """TorchDynamo traces the step into one graph (fullgraph=True fails at any data-dependent branch or
    read-back, the operations a CUDA graph cannot hold); the traced step gives the eager body's numbers.
    With the CPU's read-back check switched on, the same trace fails: the test can tell."""
    (env_a, env_b), policy, (state_a, state_b) = _two_copies(CAPTURED_ENVS["cartpole"], 2, "cpu")
    env_a.sync_free = True
    step_a, step_b = CapturedStep(env_a, policy, state_a), CapturedStep(env_b, policy, state_b)
    traced = torch.compile(step_a._step, backend="eager", fullgraph=True)
    for _ in range(30):
        with torch.inference_mode():
            outputs = traced()
            expected = step_b._step()
        for x, y in zip(outputs, expected, strict=True):
            assert torch.equal(x, y)
    env_a.sync_free = False
    with pytest.raises(Exception, match="data-dependent"):
        torch.compile(env_a.step, backend="eager", fullgraph=True)(torch.zeros(16, dtype=torch.int64))


def test_cuda_graphs_are_refused_where_they_cannot_run():
    with pytest.raises(ValueError, match="set env_backend='batched'"):
        PPOConfig(cuda_graph=True)
    with pytest.raises(ValueError, match="CUDA device"):
        train_ppo(PPOConfig(env_backend="batched", cuda_graph=True, total_steps=256), 0, device="cpu", progress=False)
    env = BatchedCartPole(4)
    policy = make_actor_critic(env.single_observation_space, env.single_action_space,
                               generator=torch.Generator().manual_seed(0))
    state = reset_batched_env(env, 0)
    with pytest.raises(ValueError, match="sync_free is False"):
        CapturedStep(env, policy, state)
    env.sync_free = True
    with pytest.raises(ValueError, match="needs environments on a CUDA device"):
        CapturedStep(env, policy, state, cuda_graph=True)
    parser = _parser()
    with pytest.raises(SystemExit):
        _resolve(parser, parser.parse_args(["ppo", "CartPole-v1", "--env-backend", "batched", "--device", "cpu",
                                            "--cuda-graph"]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_ppo_with_a_cuda_graph_trains_as_the_eager_ppo():
    """The same seed gives the same episodes and the same parameters with and without the graph (CUDA)."""
    config = PPOConfig(env_backend="batched", num_envs=64, total_steps=64 * 32 * 4)
    eager = train_ppo(config, 3, device="cuda", progress=False)
    graphed = train_ppo(dataclasses.replace(config, cuda_graph=True), 3, device="cuda", progress=False)
    assert eager.log.returns == graphed.log.returns and len(eager.log.returns) > 64
    for x, y in zip(eager.policy.parameters(), graphed.policy.parameters(), strict=True):
        assert torch.equal(x, y)


# --------------------------------------------------------------------- training to a threshold (slow)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1])
def test_cartpole_reaches_a_100_episode_mean_of_475(seed):
    """The default config reaches a 100-episode mean return of 475 within about SB3's sample count.

    Measured (one thread): 62,139 steps with seed 1 and 63,868 with seed 2; Stable-Baselines3
    with the zoo's hyperparameters needed a median of 65.4k over seeds 1-10 on the same machine
    (benchmarks/peers.py). The bound leaves room for another BLAS's rounding.
    """
    result = train_ppo(PPOConfig(), seed, progress=False, target_return=475.0)
    hit = result.log.first_reaching(475.0)
    assert hit is not None and hit.env_steps <= 70_000


@pytest.mark.slow
def test_pendulum_reaches_a_100_episode_mean_above_minus_250():
    """The Pendulum-v1 preset (Gaussian policy, state-independent log σ, observation and reward
    normalisation, clipped actions) passes a 100-episode mean of −250.

    Measured (seed 1, one thread): first at 63,200 steps; the full 200k-step run ended with a
    100-episode mean of −191.
    """
    result = train_ppo(PENDULUM, 1, progress=False, target_return=-250.0)
    hit = result.log.first_reaching(-250.0)
    assert hit is not None and hit.env_steps <= 80_000
    assert result.obs_rms is not None and result.obs_rms.count > 60_000
