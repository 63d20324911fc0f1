"""rlteach.sim2real: controllers evaluated on shifted systems, first episodes only, same start states for all."""

import math

import gymnasium as gym
import pytest
import torch

from rlteach.envs import BatchedCartPole
from rlteach.lqr import cartpole_linearization, dare
from rlteach.policies import make_actor_critic
from rlteach.sim2real import evaluate_controller, greedy_controller, lqr_controller, shift_curve

F64 = torch.float64


@pytest.fixture(scope="module")
def lqr_gain() -> torch.Tensor:
    A, B = cartpole_linearization()
    return dare(A, B, torch.diag(torch.tensor([1.0, 1.0, 10.0, 1.0], dtype=F64)), torch.tensor([[0.1]], dtype=F64)).K


def test_lqr_holds_the_nominal_pole_and_loses_a_pole_five_times_longer(lqr_gain):
    """On the nominal CartPole every episode lasts 500 steps; at half-length 2.5 (5×) none lasts 30."""
    act = lqr_controller(lqr_gain)
    torch.testing.assert_close(evaluate_controller(act, "CartPole-v1", num_envs=16), torch.full((16,), 500.0))
    long_pole = evaluate_controller(act, "CartPole-v1", {"length": 2.5}, num_envs=16)
    assert float(long_pole.max()) < 30


def test_only_the_first_episode_counts_and_every_controller_sees_the_same_starts():
    """Always pushing right ends every episode early; its return is that episode's length, the env's own count."""
    right = evaluate_controller(lambda obs: torch.ones(obs.shape[0], dtype=torch.int64), "CartPole-v1", num_envs=8, seed=3)
    env = BatchedCartPole(8)
    env.reset(3)
    lengths = torch.zeros(8)
    done = torch.zeros(8, dtype=torch.bool)
    for _ in range(100):
        out = env.step(torch.ones(8, dtype=torch.int64))
        lengths += ~done
        done |= out.terminated
    torch.testing.assert_close(right, lengths)
    assert float(right.max()) < 20


def test_greedy_controller_takes_the_most_likely_action_and_the_gaussian_mean():
    env = BatchedCartPole(4)
    policy = make_actor_critic(env.single_observation_space, env.single_action_space,
                               generator=torch.Generator().manual_seed(0))
    obs = torch.randn(32, 4, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(greedy_controller(policy)(obs), policy.dist(obs)[0].argmax(1))
    gauss = make_actor_critic(gym.spaces.Box(-1, 1, (3,)), gym.spaces.Box(-2, 2, (1,)),
                              generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(greedy_controller(gauss)(obs[:, :3]), gauss.dist(obs[:, :3])[0])


def test_shift_curve_reports_the_mean_and_its_standard_error(lqr_gain):
    act = lqr_controller(lqr_gain)
    curve = shift_curve(act, "CartPole-v1", "length", [0.5, 1.5, 2.5], num_envs=32)
    for k, value in enumerate([0.5, 1.5, 2.5]):
        returns = evaluate_controller(act, "CartPole-v1", {"length": value}, num_envs=32)
        torch.testing.assert_close(curve.mean[k], returns.mean())
        torch.testing.assert_close(curve.stderr[k], returns.std() / math.sqrt(32))
    assert curve.values == [0.5, 1.5, 2.5] and float(curve.mean[0]) == 500.0 and float(curve.mean[2]) < 30


def test_pendulum_episodes_run_to_the_time_limit():
    returns = evaluate_controller(lambda obs: torch.zeros(obs.shape[0], 1), "Pendulum-v1", num_envs=8)
    assert returns.shape == (8,) and bool((returns < 0).all())
    with pytest.raises(ValueError, match="no batched version"):
        evaluate_controller(lambda obs: obs, "Acrobot-v1")
