"""rlteach.envs: the batched CartPole and Pendulum step as gymnasium's, reset themselves and randomise."""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlteach.envs import (
    CARTPOLE_NOMINAL,
    BatchedCartPole,
    BatchedPendulum,
    splitmix64,
    uniform_from_bits,
)
from tests.conftest import DEVICES

F64 = torch.float64


def _splitmix64_reference(seed: int, n: int) -> list[int]:
    """SplitMix64 in Python integers (Steele, Lea & Flood 2014), as signed 64-bit values."""
    out, state, mask = [], seed, 2**64 - 1
    for _ in range(n):
        state = (state + 0x9E3779B97F4A7C15) & mask
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        z ^= z >> 31
        out.append(z - 2**64 if z >= 2**63 else z)
    return out


def test_splitmix64_matches_the_integer_reference():
    """The int64 tensor version (wrap-around arithmetic, logical shifts) gives SplitMix64's numbers."""
    golden = 0x9E3779B97F4A7C15 - 2**64
    for seed in (0, 1, 123456789, -5):
        counters = torch.tensor([seed], dtype=torch.int64) + golden * torch.arange(1, 6)
        assert splitmix64(counters).tolist() == _splitmix64_reference(seed % 2**64, 5)


def test_uniforms_from_bits_lie_in_the_unit_interval_with_mean_one_half():
    bits = splitmix64(torch.arange(1, 20001, dtype=torch.int64) * 7919)
    u = uniform_from_bits(bits, F64)
    assert float(u.min()) >= 0.0 and float(u.max()) < 1.0
    assert abs(float(u.mean()) - 0.5) < 4 * math.sqrt(1 / 12 / u.numel())


def test_cartpole_follows_gymnasium_step_for_step_through_many_episodes():
    """300 random actions in 16 environments: gymnasium's observations, rewards and flags, every step."""
    n, rng = 16, np.random.default_rng(0)
    env = BatchedCartPole(n, dtype=F64, max_episode_steps=30)
    obs = env.reset(3)
    refs = [gym.make("CartPole-v1", max_episode_steps=30) for _ in range(n)]
    for i, ref in enumerate(refs):
        ref.reset(seed=0)
        ref.unwrapped.state = obs[i].numpy().copy()
    worst, terminations, truncations = 0.0, 0, 0
    for _ in range(300):
        action = rng.integers(0, 2, n)
        out = env.step(torch.as_tensor(action))
        for i, ref in enumerate(refs):
            o, r, term, trunc, _ = ref.step(int(action[i]))
            assert (term, trunc, r) == (bool(out.terminated[i]), bool(out.truncated[i]), float(out.reward[i]))
            worst = max(worst, float(np.abs(o - out.final_obs[i].numpy()).max()))
            if term or trunc:
                terminations, truncations = terminations + term, truncations + trunc
                ref.reset(seed=0)
                ref.unwrapped.state = out.obs[i].numpy().copy()
    assert worst < 1e-6  # gymnasium rounds its observations to float32
    assert terminations > 25 and truncations > 2


def test_pendulum_follows_gymnasium_from_every_state():
    """From the batched env's state at each step, one gymnasium step gives the same observation and reward.

    (Whole trajectories drift apart slowly: gymnasium multiplies the float32 torque in float32.)
    """
    n, rng = 8, np.random.default_rng(1)
    env = BatchedPendulum(n, dtype=F64)
    env.reset(5)
    refs = [gym.make("Pendulum-v1") for _ in range(n)]
    for ref in refs:
        ref.reset(seed=0)
    worst_obs = worst_reward = 0.0
    truncations = 0
    for _ in range(210):
        states = env.state.numpy().copy()
        action = rng.uniform(-3, 3, (n, 1)).astype(np.float32)  # beyond ±2: clipped by both
        out = env.step(torch.as_tensor(action))
        for i, ref in enumerate(refs):
            ref.unwrapped.state = states[i]
            o, r, term, trunc, _ = ref.step(action[i])
            assert not term and not bool(out.terminated[i])
            worst_obs = max(worst_obs, float(np.abs(o - out.final_obs[i].numpy()).max()))
            worst_reward = max(worst_reward, abs(r - float(out.reward[i])))
        truncations += int(out.truncated.sum())
    assert worst_obs < 1e-5 and worst_reward < 1e-5
    assert truncations == n  # every environment reached 200 steps, once


def test_truncation_comes_at_the_time_limit_and_terminated_stays_apart():
    env = BatchedPendulum(3, max_episode_steps=7)
    env.reset(0)
    flags = [env.step(torch.zeros(3, 1)) for _ in range(14)]
    truncated = torch.stack([f.truncated for f in flags])
    assert truncated.sum(0).tolist() == [2, 2, 2] and truncated[6].all() and truncated[13].all()
    assert not torch.stack([f.terminated for f in flags]).any()


def test_auto_reset_keeps_the_final_observation_for_bootstrapping():
    """Where an episode ends, final_obs is the state it ended in and obs a fresh start in ±0.05."""
    env = BatchedCartPole(64, dtype=F64)
    env.reset(11)
    ended_seen = 0
    for _ in range(30):
        before = env.state.clone()
        out = env.step(torch.ones(64, dtype=torch.int64))  # always push right: the pole falls
        ended = out.terminated | out.truncated
        expected = before.clone()
        expected[:, 0] += 0.02 * before[:, 1]  # the final observation moved on from the state before
        torch.testing.assert_close(out.final_obs[:, 0], expected[:, 0])
        assert (out.final_obs[ended][:, 2].abs() > 12 * 2 * math.pi / 360).any() or not ended.any()
        assert out.obs[ended].abs().max() <= 0.05 if ended.any() else True
        assert torch.equal(out.obs[~ended], out.final_obs[~ended])
        ended_seen += int(ended.sum())
    assert ended_seen >= 64


@pytest.mark.parametrize("sync_free", [False, True])
def test_environment_i_behaves_the_same_alone_or_beside_others(sync_free):
    """Per-environment streams: env i's starts, parameters and observation noise do not depend on how many
    run beside it, nor on whether a step skips the reset draws when nothing ended (the CPU's read-back check)."""
    randomize = {"length": (0.3, 0.7), "obs_noise": (0.01, 0.05)}
    alone, crowd = BatchedCartPole(3, dtype=F64, randomize=randomize), BatchedCartPole(200, dtype=F64, randomize=randomize)
    alone.sync_free = sync_free
    torch.testing.assert_close(alone.reset(42), crowd.reset(42)[:3], rtol=0, atol=0)
    for _ in range(120):
        a, b = alone.step(torch.ones(3, dtype=torch.int64)), crowd.step(torch.ones(200, dtype=torch.int64))
        torch.testing.assert_close(a.obs, b.obs[:3], rtol=0, atol=0)
    assert not torch.equal(crowd.reset(42)[0], crowd.reset(43)[0])


def test_start_states_are_uniform_in_the_gymnasium_box():
    obs = BatchedCartPole(20000, dtype=F64).reset(0)
    assert float(obs.abs().max()) <= 0.05
    se = 0.1 / math.sqrt(12 * obs.shape[0])
    assert float(obs.mean(0).abs().max()) < 4 * se
    theta = BatchedPendulum(20000, dtype=F64)
    theta.reset(0)
    assert float(theta.state[:, 0].abs().max()) <= math.pi and float(theta.state[:, 1].abs().max()) <= 1.0


def test_domain_randomisation_draws_each_parameter_per_environment_and_reset():
    ranges = {"length": (0.3, 0.9), "masspole": (0.05, 0.3), "gain": (0.5, 1.5), "action_delay": (0, 2)}
    env = BatchedCartPole(4000, dtype=F64, randomize=ranges)
    env.reset(1)
    for name, (low, high) in ranges.items():
        values = env.params[name]
        assert float(values.min()) >= low and float(values.max()) <= high
        assert float(values.std()) > 0.2 * (high - low)
    assert sorted(env.params["action_delay"].unique().tolist()) == [0.0, 1.0, 2.0]
    assert torch.equal(env.params["masscart"], torch.full((4000,), CARTPOLE_NOMINAL["masscart"], dtype=F64))
    first = env.params["length"].clone()
    for _ in range(40):
        env.step(torch.zeros(4000, dtype=torch.int64))
    assert not torch.equal(first, env.params["length"])  # ended environments drew new parameters


def _one_step_x_acc(env: BatchedCartPole, action: int) -> torch.Tensor:
    env.reset(0)
    env.state.zero_()
    out = env.step(torch.full((env.num_envs,), action))
    return out.final_obs[:, 1] / 0.02


def test_the_gain_scales_the_force_and_friction_opposes_the_motion():
    nominal = _one_step_x_acc(BatchedCartPole(1, dtype=F64), 1)
    doubled = _one_step_x_acc(BatchedCartPole(1, dtype=F64, randomize={"gain": (2.0, 2.0)}), 1)
    # at rest and upright: temp = F / m and ẍ = temp (1 + (m_p/m) / (4/3 − m_p/m)) = temp · 44/41
    torch.testing.assert_close(doubled, 2 * nominal)
    torch.testing.assert_close(nominal, torch.tensor([10.0 / 1.1 * 44 / 41], dtype=F64))
    env = BatchedCartPole(1, dtype=F64, randomize={"friction": (5.0, 5.0)})
    env.reset(0)
    env.state[:] = torch.tensor([0.0, 1.0, 0.0, 0.0], dtype=F64)
    out = env.step(torch.ones(1, dtype=torch.int64))
    torch.testing.assert_close(out.final_obs[:, 1], torch.tensor([1.0 + 0.02 * (10.0 - 5.0) / 1.1 * 44 / 41], dtype=F64))


def test_an_action_delay_shifts_the_actions_by_whole_steps():
    """With a delay of 2, the trajectory is the undelayed one under the actions shifted by 2 (no force first)."""
    rng = np.random.default_rng(3)
    actions = torch.as_tensor(rng.uniform(-2, 2, (30, 1, 1)))
    delayed = BatchedPendulum(1, dtype=F64, randomize={"action_delay": (2, 2)})
    plain = BatchedPendulum(1, dtype=F64)
    delayed.reset(9), plain.reset(9)
    shifted = torch.cat([torch.zeros(2, 1, 1, dtype=F64), actions[:-2]])
    for t in range(30):
        a, b = delayed.step(actions[t]), plain.step(shifted[t])
        torch.testing.assert_close(a.final_obs, b.final_obs, rtol=0, atol=0)


def test_observation_noise_has_the_stated_standard_deviation():
    env = BatchedCartPole(20000, dtype=F64, randomize={"obs_noise": (0.1, 0.1)})
    noisy = env.reset(2)
    noise = noisy - env.state
    assert abs(float(noise.std()) - 0.1) < 0.002 and abs(float(noise.mean())) < 0.002


@pytest.mark.parametrize("device", DEVICES)
def test_the_device_runs_the_same_episodes(device):
    """On any device (float64), the same seeds give the CPU's observations."""
    cpu, dev = BatchedCartPole(32, dtype=F64), BatchedCartPole(32, dtype=F64, device=device)
    torch.testing.assert_close(dev.reset(5).cpu(), cpu.reset(5))
    for t in range(50):
        action = torch.full((32,), t % 2)
        a, b = cpu.step(action), dev.step(action.to(device))
        torch.testing.assert_close(b.obs.cpu(), a.obs)
        assert b.obs.device.type == torch.device(device).type


def test_a_step_updates_its_buffers_in_place_and_hands_out_copies():
    """The state, counters, streams, pending actions and randomised parameters keep their storage through
    steps, terminations, truncations and resets (what a CUDA graph replay needs), and nothing returned aliases them."""
    env = BatchedCartPole(8, max_episode_steps=20, randomize={"length": (0.3, 0.7), "action_delay": (0.0, 2.0)})
    first = env.reset(3)
    kept, pointers = first.clone(), [b.data_ptr() for b in env.buffers()]
    params = env.params
    lengths = params["length"].clone()
    ends = 0
    for t in range(60):
        out = env.step(torch.full((8,), t % 2))
        ends += int((out.terminated | out.truncated).sum())
    assert ends > 8 and int(env.steps.max()) < 20
    assert [b.data_ptr() for b in env.buffers()] == pointers and len(pointers) == 6
    torch.testing.assert_close(first, kept, rtol=0, atol=0)  # the reset's observations did not move with the state
    torch.testing.assert_close(params["length"], lengths, rtol=0, atol=0)
    assert not torch.equal(env.params["length"], lengths)  # the environments drew new lengths at their resets
    env.reset(4)
    assert [b.data_ptr() for b in env.buffers()] == pointers


def test_bad_input_gets_a_clear_error():
    with pytest.raises(ValueError, match="num_envs"):
        BatchedCartPole(0)
    with pytest.raises(ValueError, match="unknown parameter 'mass'"):
        BatchedCartPole(2, randomize={"mass": (1.0, 2.0)})
    with pytest.raises(ValueError, match="low ≤ high"):
        BatchedCartPole(2, randomize={"length": (0.9, 0.3)})
    with pytest.raises(ValueError, match="must be positive"):
        BatchedPendulum(2, randomize={"mass": (0.0, 1.0)})
    with pytest.raises(ValueError, match="whole steps"):
        BatchedPendulum(2, randomize={"action_delay": (0.0, 1.5)})
    with pytest.raises(RuntimeError, match="reset"):
        BatchedCartPole(2).step(torch.zeros(2, dtype=torch.int64))
    env = BatchedCartPole(2)
    env.reset(0)
    with pytest.raises(ValueError, match=r"expected shape \(2,\)"):
        env.step(torch.zeros(3, dtype=torch.int64))
    with pytest.raises(ValueError, match="2 seeds"):
        env.reset([1, 2, 3])
