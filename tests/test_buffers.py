import numpy as np
import pytest
import torch

from rlteach.advantages import gae
from rlteach.buffers import ReplayBuffer, RolloutBuffer
from tests.conftest import DEVICES

F64 = torch.float64


def transitions(start, count, obs_dim=3, device="cpu"):
    """``count`` transitions numbered start, start+1, …: every field encodes the number i."""
    i = torch.arange(start, start + count, dtype=F64, device=device)
    return dict(
        obs=i[:, None].repeat(1, obs_dim),
        actions=(i % 4).long(),
        rewards=i,
        next_obs=(i + 0.5)[:, None].repeat(1, obs_dim),
        terminated=(i.long() % 3) == 0,
        truncated=(i.long() % 5) == 0,
        logp_behavior=-i / 100,
    )


def single(fields, k):
    return {name: t[k] for name, t in fields.items()}


def add_one(buffer, t):
    buffer.add(t["obs"], t["actions"], t["rewards"], t["next_obs"], t["terminated"], t["truncated"], t["logp_behavior"])


def add_many(buffer, t):
    buffer.add_batch(t["obs"], t["actions"], t["rewards"], t["next_obs"], t["terminated"], t["truncated"],
                     t["logp_behavior"])


def stored_numbers(buffer):
    """The transition number held in each filled slot, read from the rewards."""
    return buffer.rewards[: len(buffer)].to(torch.int64).tolist()


# --------------------------------------------------------------------- replay: the ring


@pytest.mark.parametrize("k", [1, 3, 7])
def test_the_ring_keeps_exactly_the_last_capacity_transitions(k):
    """After capacity + k single adds the oldest k are gone; transition i lives in slot i mod C."""
    capacity = 7
    buffer = ReplayBuffer(capacity, obs_shape=(3,), dtype=F64, obs_dtype=F64)
    fields = transitions(0, capacity + k)
    for i in range(capacity + k):
        add_one(buffer, single(fields, i))
    assert len(buffer) == capacity
    expected = [0] * capacity
    for i in range(k, capacity + k):
        expected[i % capacity] = i
    assert stored_numbers(buffer) == expected
    for name in ("obs", "actions", "next_obs", "terminated", "truncated", "logp_behavior"):
        slots = torch.tensor(expected)
        assert torch.equal(getattr(buffer, name), fields[name][slots].to(getattr(buffer, name).dtype)), name


def test_a_batch_that_wraps_around_lands_like_single_adds():
    """Capacity 8, 6 stored, a batch of 5: numbers 6, 7 go to slots 6, 7 and 8, 9, 10 wrap to 0, 1, 2."""
    batched, one_by_one = (ReplayBuffer(8, obs_shape=(3,), obs_dtype=F64, dtype=F64) for _ in range(2))
    add_many(batched, transitions(0, 6))
    add_many(batched, transitions(6, 5))
    fields = transitions(0, 11)
    for i in range(11):
        add_one(one_by_one, single(fields, i))
    assert stored_numbers(batched) == [8, 9, 10, 3, 4, 5, 6, 7]
    for name in ReplayBuffer.FIELDS:
        assert torch.equal(getattr(batched, name), getattr(one_by_one, name)), name
    assert len(batched) == 8
    add_one(batched, single(transitions(11, 1), 0))  # the next add overwrites the oldest, number 3
    assert stored_numbers(batched) == [8, 9, 10, 11, 4, 5, 6, 7]


def test_a_batch_larger_than_the_capacity_keeps_its_last_transitions():
    """Adding 13 to a ring of 5 holding 2: the last 5 (numbers 10…14) remain, in slots (i mod 5)."""
    buffer = ReplayBuffer(5, obs_shape=(3,), obs_dtype=F64, dtype=F64)
    add_many(buffer, transitions(0, 2))
    add_many(buffer, transitions(2, 13))
    assert len(buffer) == 5
    assert stored_numbers(buffer) == [10, 11, 12, 13, 14]
    add_many(buffer, transitions(15, 0))  # an empty batch changes nothing
    assert stored_numbers(buffer) == [10, 11, 12, 13, 14]


def test_sampling_before_the_ring_is_full_uses_only_filled_slots(gen):
    buffer = ReplayBuffer(100, obs_shape=(3,), obs_dtype=F64, dtype=F64)
    add_many(buffer, transitions(0, 4))
    for replacement in (False, True):
        batch = buffer.sample(4, gen, replacement=replacement)
        assert bool((batch.indices < 4).all())
    assert sorted(buffer.sample(4, gen).rewards.long().tolist()) == [0, 1, 2, 3]


def test_clear_empties_the_buffer(gen):
    buffer = ReplayBuffer(4, obs_shape=(3,))
    add_many(buffer, transitions(0, 6))
    buffer.clear()
    assert len(buffer) == 0
    with pytest.raises(ValueError, match="empty"):
        buffer.sample(1, gen)


# --------------------------------------------------------------------- replay: sampling


@pytest.mark.parametrize("replacement", [False, True])
def test_sampling_is_uniform_over_the_filled_slots(gen, replacement):
    """A ring of n = 10 slots that has wrapped (16 added): over R = 5 000 minibatches of b = 3 each
    slot's count is within 4 standard errors of R b/n. Without replacement a slot is in a
    minibatch with probability b/n (count ~ Binomial(R, b/n)); with it, each of the R b draws
    hits it with probability 1/n (count ~ Binomial(R b, 1/n))."""
    buffer = ReplayBuffer(10, obs_shape=(3,), obs_dtype=F64, dtype=F64)
    add_many(buffer, transitions(0, 16))
    repeats, b, n = 5_000, 3, 10
    counts = torch.zeros(n, dtype=F64)
    for _ in range(repeats):
        counts += torch.bincount(buffer.sample(b, gen, replacement=replacement).indices, minlength=n)
    p = b / n
    stderr = (repeats * p * (1 - p)) ** 0.5 if not replacement else (repeats * b * (1 / n) * (1 - 1 / n)) ** 0.5
    assert bool(((counts - repeats * p).abs() < 4 * stderr).all()), counts


def test_a_sample_returns_matching_fields_and_distinct_transitions_without_replacement(gen):
    buffer = ReplayBuffer(50, obs_shape=(3,), obs_dtype=F64, dtype=F64)
    add_many(buffer, transitions(0, 70))
    batch = buffer.sample(20, gen)
    assert batch.indices.unique().numel() == 20
    number = batch.rewards
    torch.testing.assert_close(batch.obs, number[:, None].repeat(1, 3), rtol=0, atol=0)
    torch.testing.assert_close(batch.next_obs, (number + 0.5)[:, None].repeat(1, 3), rtol=0, atol=0)
    torch.testing.assert_close(batch.logp_behavior, -number / 100, rtol=0, atol=1e-15)
    assert torch.equal(batch.actions, number.long() % 4)
    assert torch.equal(batch.terminated, number.long() % 3 == 0)
    assert torch.equal(batch.truncated, number.long() % 5 == 0)
    assert torch.equal(batch.rewards, buffer.rewards[batch.indices])


def test_sampling_is_reproducible_from_a_local_generator():
    buffer = ReplayBuffer(30, obs_shape=(3,))
    add_many(buffer, transitions(0, 30))
    a = buffer.sample(8, torch.Generator().manual_seed(4))
    b = buffer.sample(8, torch.Generator().manual_seed(4))
    assert all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("device", DEVICES)
def test_the_declared_dtypes_and_device_are_kept(gen, device):
    """uint8 observations, float32 actions (continuous), float64 rewards: inputs of other dtypes
    are converted on add, and samples come back in the declared dtypes on the declared device."""
    buffer = ReplayBuffer(6, obs_shape=(2, 2), action_shape=(3,), obs_dtype=torch.uint8, action_dtype=torch.float32,
                          dtype=F64, device=device)
    obs = np.arange(4, dtype=np.int64).reshape(2, 2)
    buffer.add(obs, np.array([0.5, -1.0, 2.0]), 1.5, obs + 1, False, True, -0.25)
    buffer.add_batch(torch.ones((3, 2, 2), dtype=torch.int32), torch.zeros((3, 3), dtype=F64),
                     torch.ones(3, dtype=torch.float32), torch.ones((3, 2, 2), dtype=torch.int32),
                     torch.tensor([True, False, False]), torch.zeros(3, dtype=torch.bool), torch.zeros(3))
    batch = buffer.sample(4, gen)
    expected = {"obs": torch.uint8, "actions": torch.float32, "rewards": F64, "next_obs": torch.uint8,
                "terminated": torch.bool, "truncated": torch.bool, "logp_behavior": F64, "indices": torch.int64}
    for name, dtype in expected.items():
        t = getattr(batch, name)
        assert t.dtype == dtype and t.device.type == device, name
    assert batch.obs.shape == (4, 2, 2) and batch.actions.shape == (4, 3)
    assert buffer.obs[0].tolist() == [[0, 1], [2, 3]] and buffer.rewards[0].item() == 1.5


def test_stored_transitions_are_detached_copies():
    """Adding a tensor that requires grad stores a copy outside the graph; later edits of the
    caller's tensor do not reach the buffer."""
    buffer = ReplayBuffer(2, obs_shape=(3,))
    obs = torch.ones(3, requires_grad=True)
    logp = torch.tensor(-1.0, requires_grad=True)
    buffer.add(obs, 1, 0.0, obs, False, False, logp)
    assert not buffer.obs.requires_grad and not buffer.logp_behavior.requires_grad
    source = torch.zeros(3)
    buffer.add(source, 1, 0.0, source, False, False, 0.0)
    source += 5
    assert buffer.obs[1].tolist() == [0.0, 0.0, 0.0]


def replay_errors(gen):
    buffer = ReplayBuffer(4, obs_shape=(3,))
    full = ReplayBuffer(4, obs_shape=(3,))
    add_many(full, transitions(0, 2))
    z3 = torch.zeros(3)
    return [
        (lambda: buffer.sample(1, gen), ValueError, "empty replay buffer"),
        (lambda: full.sample(3, gen), ValueError, "batch_size=3 exceeds the 2 transitions stored"),
        (lambda: full.sample(0, gen), ValueError, "batch_size=0"),
        (lambda: buffer.add(torch.zeros(4), 0, 0.0, z3, False, False, 0.0), ValueError, r"obs: expected shape \(3,\)"),
        (lambda: buffer.add(z3, 0, 0.0, torch.zeros(2, 3), False, False, 0.0), ValueError, "next_obs: expected shape"),
        (lambda: buffer.add(z3, 0, torch.zeros(2), z3, False, False, 0.0), ValueError, r"rewards: expected shape \(\)"),
        (lambda: buffer.add(z3, 0.7, 0.0, z3, False, False, 0.0), TypeError, "actions: floating-point input"),
        (lambda: buffer.add(z3, 0, 0.0, z3, 0, False, 0.0), TypeError, "terminated: expected booleans"),
        (lambda: buffer.add(z3, 0, 0.0, z3, False, 1.0, 0.0), TypeError, "truncated: expected booleans"),
        (lambda: buffer.add(z3, 0, 0.0, z3, False, False, "x"), TypeError, "logp_behavior"),
        (lambda: buffer.add_batch(torch.zeros(2, 3), torch.zeros(2).long(), torch.zeros(3), torch.zeros(2, 3),
                                  torch.zeros(2, dtype=torch.bool), torch.zeros(2, dtype=torch.bool), torch.zeros(2)),
         ValueError, r"obs: expected shape \(3, 3\)"),
        (lambda: buffer.add_batch(z3, 0, 0.0, z3, False, False, 0.0), ValueError, r"expected shape \(B,\)"),
        (lambda: ReplayBuffer(0, obs_shape=(3,)), ValueError, "capacity=0"),
        (lambda: ReplayBuffer(4, obs_shape=(3,), dtype=torch.int64), TypeError, "floating dtype"),
        (lambda: ReplayBuffer(4, obs_shape=(-1,)), TypeError, "obs_shape"),
    ]


@pytest.mark.parametrize("case", range(15))
def test_replay_bad_input_gets_a_clear_error(gen, case):
    call, error, match = replay_errors(gen)[case]
    with pytest.raises(error, match=match):
        call()


def test_a_failed_add_stores_nothing():
    buffer = ReplayBuffer(4, obs_shape=(3,))
    with pytest.raises(TypeError):
        buffer.add(torch.zeros(3), 0, 0.0, torch.zeros(3), 0, False, 0.0)
    assert len(buffer) == 0


# --------------------------------------------------------------------- rollout buffer


def fill(buffer, gen, device="cpu"):
    """Fill a rollout buffer step by step; return what was added, stacked (T, N, ...)."""
    T, N = buffer.num_steps, buffer.num_envs
    data = {
        "obs": torch.randn((T, N, *buffer.obs_shape), generator=gen),
        "actions": torch.randint(0, 3, (T, N), generator=gen),
        "logp": -torch.rand((T, N), generator=gen),
        "rewards": torch.randn((T, N), generator=gen),
        "values": torch.randn((T, N), generator=gen),
        "next_values": torch.randn((T, N), generator=gen),
        "terminated": torch.rand((T, N), generator=gen) < 0.1,
        "truncated": torch.rand((T, N), generator=gen) < 0.1,
    }
    data = {name: t.to(device) for name, t in data.items()}
    for t in range(T):
        buffer.add(**{name: x[t] for name, x in data.items()})
    return data


@pytest.mark.parametrize("device", DEVICES)
def test_rollout_buffer_computes_gae_and_lambda_returns(gen, device):
    """adv = gae(stored rollout) and returns = adv + values, in the declared dtype and device."""
    buffer = RolloutBuffer(6, 4, obs_shape=(2,), dtype=F64, device=device)
    data = fill(buffer, gen, device)
    assert buffer.full and len(buffer) == 24
    adv, returns = buffer.compute_advantages(0.9, 0.8)
    expected = gae(data["rewards"].double(), data["values"].double(), data["next_values"].double(),
                   data["terminated"], data["truncated"], 0.9, 0.8)
    torch.testing.assert_close(adv, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(returns, expected + data["values"].double(), rtol=0, atol=1e-12)
    assert adv.dtype == F64 and adv.device.type == device
    assert torch.equal(buffer.terminated, data["terminated"]) and torch.equal(buffer.obs, data["obs"])


@pytest.mark.parametrize("device", DEVICES)
def test_minibatches_cover_the_flattened_batch_once_per_epoch(gen, device):
    """One epoch: minibatches of 7 from T·N = 24 samples (sizes 7, 7, 7, 3), each (t, env) exactly once,
    fields aligned; a second epoch is a different permutation."""
    buffer = RolloutBuffer(6, 4, obs_shape=(2,), device=device)
    fill(buffer, gen, device)
    adv, _ = buffer.compute_advantages(0.99, 0.95)
    flat_logp = buffer.logp.reshape(-1)
    epochs = []
    for _ in range(2):
        batches = list(buffer.minibatches(7, gen))
        assert [len(b.adv) for b in batches] == [7, 7, 7, 3]
        order = torch.cat([torch.nonzero(b.logp[:, None] == flat_logp[None, :])[:, 1] for b in batches])
        assert sorted(order.tolist()) == list(range(24))
        for b in batches:
            index = torch.nonzero(b.logp[:, None] == flat_logp[None, :])[:, 1]
            assert torch.equal(b.obs, buffer.obs.reshape(24, 2)[index])
            assert torch.equal(b.actions, buffer.actions.reshape(24)[index])
            assert torch.equal(b.returns, (adv + buffer.values).reshape(24)[index])
            assert b.adv.device.type == device
        epochs.append(order)
    assert not torch.equal(epochs[0], epochs[1])


def test_minibatches_are_reproducible_from_a_local_generator(gen):
    buffer = RolloutBuffer(5, 3, obs_shape=(2,))
    fill(buffer, gen)
    buffer.compute_advantages(0.9, 0.9)
    a = list(buffer.minibatches(4, torch.Generator().manual_seed(1)))
    b = list(buffer.minibatches(4, torch.Generator().manual_seed(1)))
    assert all(torch.equal(x, y) for p, q in zip(a, b) for x, y in zip(p, q))


def test_reset_starts_a_new_rollout(gen):
    buffer = RolloutBuffer(3, 2, obs_shape=(2,))
    fill(buffer, gen)
    buffer.compute_advantages(0.9, 0.9)
    buffer.reset()
    assert len(buffer) == 0 and buffer.adv is None
    with pytest.raises(RuntimeError, match="compute_advantages"):
        next(buffer.minibatches(2, gen))
    data = fill(buffer, gen)
    assert torch.equal(buffer.rewards, data["rewards"])


def test_values_from_a_critic_are_stored_detached(gen):
    buffer = RolloutBuffer(1, 2, obs_shape=(2,))
    values = torch.zeros(2, requires_grad=True)
    buffer.add(torch.zeros(2, 2), torch.zeros(2).long(), torch.zeros(2), torch.ones(2), values * 2, values,
               torch.zeros(2, dtype=torch.bool), torch.zeros(2, dtype=torch.bool))
    adv, returns = buffer.compute_advantages(0.9, 0.9)
    assert not buffer.values.requires_grad and not adv.requires_grad and not returns.requires_grad


def rollout_errors(gen):
    buffer = RolloutBuffer(2, 3, obs_shape=(4,))
    z, b = torch.zeros(3), torch.zeros(3, dtype=torch.bool)
    full = RolloutBuffer(1, 3, obs_shape=(4,))
    full.add(torch.zeros(3, 4), z.long(), z, z, z, z, b, b)
    return [
        (lambda: buffer.add(torch.zeros(3, 5), z.long(), z, z, z, z, b, b), ValueError, r"obs: expected shape \(3, 4\)"),
        (lambda: buffer.add(torch.zeros(3, 4), z.long(), z, torch.zeros(2), z, z, b, b), ValueError, "rewards: expected shape"),
        (lambda: buffer.add(torch.zeros(3, 4), z, z, z, z, z, b, b), TypeError, "actions: floating-point"),
        (lambda: buffer.add(torch.zeros(3, 4), z.long(), z, z, z, z, z, b), TypeError, "terminated: expected booleans"),
        (lambda: full.add(torch.zeros(3, 4), z.long(), z, z, z, z, b, b), RuntimeError, "full"),
        (lambda: buffer.compute_advantages(0.9, 0.9), RuntimeError, "holds 0 of 2 steps"),
        (lambda: full.compute_advantages(0.9, 1.5), ValueError, "gae_lambda=1.5"),
        (lambda: next(full.minibatches(2, gen)), RuntimeError, "compute_advantages"),
        (lambda: RolloutBuffer(0, 3, obs_shape=(4,)), ValueError, "num_steps=0"),
    ]


@pytest.mark.parametrize("case", range(9))
def test_rollout_bad_input_gets_a_clear_error(gen, case):
    call, error, match = rollout_errors(gen)[case]
    with pytest.raises(error, match=match):
        call()
