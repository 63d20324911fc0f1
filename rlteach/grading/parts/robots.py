"""Graded parts of the robots and parallel-simulation exercise (08).

Two parts that build something whole and one warm-up: the batched CartPole step (N states
advanced as one tensor operation, graded against :class:`rlteach.envs.BatchedCartPole`'s
dynamics, which equal gymnasium's ``CartPole-v1``, on batches with terminations, per-environment
parameters, float64 and float32, N = 1 and N = 65 536), the auto-reset that keeps the final
observation for bootstrapping (graded against the logic of :meth:`rlteach.envs.BatchedEnv.step`),
and the discrete Riccati iteration for LQR (graded on the gain against :func:`rlteach.lqr.dare`),
whose gain is then judged by what it does: the closed loop of the linear model is stable and
the bang-bang controller built on it keeps every pole of a batch of nonlinear CartPoles up for
a whole episode, on nominal and on shifted parameters.

The references are the library's; the variants behind the known mistakes are written here,
each one switch away from the reference.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from gymnasium.envs.classic_control.cartpole import CartPoleEnv, CartPoleVectorEnv
from torch import Tensor

from rlteach.envs import CARTPOLE_NOMINAL, BatchedCartPole, BatchedEnv
from rlteach.grading.spec import Case, Mistake, Part, Property
from rlteach.lqr import cartpole_linearization, dare, lqr_force_to_action

GROUPS = ("random", "edge")
F64 = torch.float64
TAU = BatchedCartPole.tau
X_LIMIT = BatchedCartPole.x_threshold
THETA_LIMIT = BatchedCartPole.theta_threshold
STEP_KEYS = ("gravity", "masscart", "masspole", "length", "gain", "friction")


# ------------------------------------------------------------------- 1. the CartPole step


def _step_reference(state: Tensor, action: Tensor, params: Mapping[str, Any]) -> tuple[Tensor, Tensor, Tensor]:
    """:class:`rlteach.envs.BatchedCartPole`'s dynamics on ``state`` with the parameters ``params``
    (floats or per-environment tensors): ``(next_state, reward, terminated)``."""
    env = BatchedCartPole(state.shape[0], device=state.device, dtype=state.dtype)
    env.coef = {**env.coef, **{key: params[key] for key in STEP_KEYS}}
    return env._dynamics(state, env._command(action))


def _step_variant(state: Tensor, action: Tensor, params: Mapping[str, Any], *, integrator: str = "euler",
                  judge: str = "new", trig: str = "right", pole_mass: str = "pole", force_sign: float = 1.0,
                  friction: bool = True, friction_sign: float = 1.0, gain: bool = True, half_length: bool = True,
                  last_reward: float = 1.0, theta_limit: float = THETA_LIMIT) -> tuple[Tensor, Tensor, Tensor]:
    """The CartPole step with one piece changed; ``integrator``: "euler" or "semi" (semi-implicit);
    ``judge``: terminated on the "new" or the "old" state; ``trig``: "right" or "swapped";
    ``pole_mass``: "pole" or "total" (the total mass in the pole's m_p·l); ``friction_sign`` −1
    adds +μẋ; ``theta_limit`` the angle threshold (12 for one read in degrees)."""
    x, x_dot, theta, theta_dot = state.unbind(1)
    p = {key: params[key] for key in STEP_KEYS}
    total_mass = p["masscart"] + p["masspole"]
    length = p["length"] if half_length else 2.0 * p["length"]
    polemass_length = (p["masspole"] if pole_mass == "pole" else total_mass) * length
    force = force_sign * (action.to(state.dtype) * 2.0 - 1.0) * (10.0 * (p["gain"] if gain else 1.0))
    if friction:
        force = force - friction_sign * p["friction"] * x_dot
    cos, sin = torch.cos(theta), torch.sin(theta)
    if trig == "swapped":
        cos, sin = sin, cos
    temp = (force + polemass_length * theta_dot.square() * sin) / total_mass
    theta_acc = (p["gravity"] * sin - cos * temp) / (length * (4.0 / 3.0 - p["masspole"] * cos.square() / total_mass))
    x_acc = temp - polemass_length * theta_acc * cos / total_mass
    if integrator == "euler":
        new = torch.stack([x + TAU * x_dot, x_dot + TAU * x_acc, theta + TAU * theta_dot,
                           theta_dot + TAU * theta_acc], dim=1)
    else:
        new_x_dot, new_theta_dot = x_dot + TAU * x_acc, theta_dot + TAU * theta_acc
        new = torch.stack([x + TAU * new_x_dot, new_x_dot, theta + TAU * new_theta_dot, new_theta_dot], dim=1)
    judged = new if judge == "new" else state
    terminated = (judged[:, 0].abs() > X_LIMIT) | (judged[:, 2].abs() > theta_limit)
    reward = torch.where(terminated, last_reward, 1.0).to(state.dtype)
    return new, reward, terminated


def _nominal(**changes: float) -> dict[str, float]:
    return {**CARTPOLE_NOMINAL, **changes}


def _states(g: torch.Generator, n: int, near: float = 0.0) -> Tensor:
    """``n`` CartPole states (float64): upright-ish, or with probability ``near`` within reach of a
    threshold (|x| ≈ 2.4 or |θ| ≈ 12°, moving either way), so that some steps cross it."""
    u = torch.rand(n, 4, generator=g, dtype=F64)
    state = torch.stack([2.0 * X_LIMIT * (u[:, 0] - 0.5), torch.randn(n, generator=g, dtype=F64),
                         2.0 * THETA_LIMIT * (u[:, 2] - 0.5), 1.5 * torch.randn(n, generator=g, dtype=F64)], dim=1)
    edge = torch.rand(n, generator=g) < near
    side = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0).to(F64)
    which = torch.rand(n, generator=g) < 0.5  # the cart's position or the pole's angle near its limit
    x_near = side * (X_LIMIT + 0.04 * (2.0 * u[:, 1] - 1.0))
    theta_near = side * (THETA_LIMIT + 0.02 * (2.0 * u[:, 3] - 1.0))
    state[:, 0] = torch.where(edge & which, x_near, state[:, 0])
    state[:, 2] = torch.where(edge & ~which, theta_near, state[:, 2])
    return state


def _clear(state: Tensor, margin: float) -> Tensor:
    """``state`` with the rows whose old or new position or angle lies within ``margin`` (relative)
    of a threshold pulled halfway to the centre, so that rounding cannot flip ``terminated``.

    Euler moves x and θ with the old velocities, so their new values need no dynamics (the
    cases are built in the graded kernel, where no code that computes the step may run)."""
    new_x, new_theta = state[:, 0] + TAU * state[:, 1], state[:, 2] + TAU * state[:, 3]
    close = torch.zeros(state.shape[0], dtype=torch.bool)
    for x, theta in ((state[:, 0], state[:, 2]), (new_x, new_theta)):
        close |= ((x.abs() - X_LIMIT).abs() < margin * X_LIMIT) | ((theta.abs() - THETA_LIMIT).abs() < margin * THETA_LIMIT)
    state = state.clone()
    state[close, 0] *= 0.5
    state[close, 2] *= 0.5
    return state


def _per_env(g: torch.Generator, n: int, ranges: Mapping[str, tuple[float, float]]) -> dict[str, Any]:
    """Parameters with those in ``ranges`` drawn uniformly per environment, tensors (n,) float64."""
    params: dict[str, Any] = _nominal()
    for key, (low, high) in ranges.items():
        params[key] = low + (high - low) * torch.rand(n, generator=g, dtype=F64)
    return params


def _step_case(name: str, g: torch.Generator, n: int, near: float = 0.3, params: Mapping[str, Any] | None = None,
               dtype: torch.dtype = F64, actions: str = "random") -> Case:
    params = dict(params if params is not None else _nominal())
    state = _states(g, n, near)
    action = torch.randint(2, (n,), generator=g)
    if actions == "right":
        action = torch.ones(n, dtype=torch.int64)
    state = _clear(state, 1e-9 if dtype == F64 else 1e-4)
    params = {k: v.to(dtype) if isinstance(v, Tensor) else v for k, v in params.items()}
    return Case(name, (state.to(dtype), action, params))


RANDOMIZED = {"masspole": (0.05, 0.5), "length": (0.25, 1.0), "masscart": (0.5, 2.0), "gain": (0.5, 1.5),
              "friction": (0.0, 0.5)}


def _step_cases(seed: int, group: str) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    if group == "random":
        return [_step_case("256 random states, nominal parameters (gymnasium's), float64", g, 256,
                           near=0.0),
                _step_case("1,024 states, a third of them at a threshold (terminations both ways), float64", g,
                           1024, near=0.35),
                _step_case("512 environments with their own parameters (domain randomisation), float64", g, 512,
                           params=_per_env(g, 512, RANDOMIZED)),
                _step_case("128 states near the thresholds, float32", g, 128, near=0.5, dtype=torch.float32)]
    upright = Case("every cart at rest and every pole upright (only the push acts)",
                   (torch.zeros(6, 4, dtype=F64), torch.tensor([0, 1, 0, 1, 1, 0]), _nominal()))
    side, u = (1.0 if float(torch.rand((), generator=g)) < 0.5 else -1.0), float(torch.rand((), generator=g))
    crossing = torch.tensor([[side * (X_LIMIT - 0.01 * u), side * (1.0 + u), 0.02, -0.1]], dtype=F64)
    return [Case("N = 1, a cart that crosses the edge of the track in this step",
                 (crossing, torch.tensor([int(side > 0)]), _nominal())),
            _step_case("N = 65,536, float64", g, 65_536, near=0.2),
            upright,
            _step_case("every action 1 (push right)", g, 64, near=0.3, actions="right"),
            _step_case("friction 0.3, gain 0.7 and a long heavy pole (same for every environment)", g, 256,
                       params=_nominal(friction=0.3, gain=0.7, length=0.9, masspole=0.4, masscart=1.5)),
            _step_case("per-environment parameters, float32", g, 256, near=0.3, dtype=torch.float32,
                       params=_per_env(g, 256, RANDOMIZED))]


# -------------------------------------------------------------------------- 2. the auto-reset


def _auto_reset_reference(next_obs: Tensor, terminated: Tensor, steps: Tensor, max_steps: int,
                          start_obs: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The episode-end logic of :meth:`rlteach.envs.BatchedEnv.step`: ``(obs, terminated, truncated,
    final_obs, steps)`` after one step."""
    steps = steps + 1
    truncated = steps >= max_steps
    ended = terminated | truncated
    obs = torch.where(ended.unsqueeze(1), start_obs, next_obs)
    return obs, terminated.clone(), truncated, next_obs.clone(), torch.where(ended, 0, steps)


def _auto_reset_variant(next_obs: Tensor, terminated: Tensor, steps: Tensor, max_steps: int, start_obs: Tensor, *,
                        final: str = "last", mark: str = "apart", reset_count: str = "ended", late: bool = False,
                        exclusive: bool = False, reset_on: str = "ended") -> tuple[Tensor, ...]:
    """The auto-reset with one piece changed; ``final``: "last" or "reset" (the reset observation);
    ``mark``: "apart" or "merged" (terminated set on truncation); ``reset_count``: where the counter
    restarts, "ended", "terminated" or "never"; ``late``: truncated on the old counter;
    ``exclusive``: truncated only where not terminated; ``reset_on``: "ended" or "terminated"."""
    counted = steps + 1
    truncated = (steps if late else counted) >= max_steps
    if exclusive:
        truncated = truncated & ~terminated
    ended = terminated | truncated
    reset = ended if reset_on == "ended" else terminated
    obs = torch.where(reset.unsqueeze(1), start_obs, next_obs)
    final_obs = next_obs.clone() if final == "last" else obs.clone()
    term = terminated | truncated if mark == "merged" else terminated.clone()
    restart = {"ended": ended, "terminated": terminated, "never": torch.zeros_like(ended)}[reset_count]
    return obs, term, truncated, final_obs, torch.where(restart, 0, counted)


def _auto_reset_case(name: str, g: torch.Generator, n: int, d: int = 4, max_steps: int = 500, p_term: float = 0.1,
                     p_limit: float = 0.1, dtype: torch.dtype = F64, count_dtype: torch.dtype = torch.int64,
                     terminated: Tensor | None = None, steps: Tensor | None = None) -> Case:
    """``n`` environments after a step: random observations, terminations with probability
    ``p_term``, counters uniform in [0, max_steps − 1) or, with probability ``p_limit``, at
    max_steps − 1 (this step reaches the limit)."""
    next_obs = torch.randn(n, d, generator=g, dtype=F64).to(dtype)
    start_obs = (0.05 * torch.randn(n, d, generator=g, dtype=F64)).to(dtype)
    if terminated is None:
        terminated = torch.rand(n, generator=g) < p_term
    if steps is None:
        steps = torch.randint(max(max_steps - 1, 1), (n,), generator=g)
        steps = torch.where(torch.rand(n, generator=g) < p_limit, max_steps - 1, steps)
    return Case(name, (next_obs, terminated, steps.to(count_dtype), max_steps, start_obs))


def _auto_reset_cases(seed: int, group: str) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    if group == "random":
        return [_auto_reset_case("64 CartPoles, time limit 500, some terminated, some at the limit", g, 64),
                _auto_reset_case("256 Pendulums (3-D observations), time limit 200", g, 256, d=3, max_steps=200,
                                 p_term=0.0, p_limit=0.2),
                _auto_reset_case("1,000 environments, terminations and time limits often in the same step", g,
                                 1000, max_steps=50, p_term=0.4, p_limit=0.4)]
    n = 16
    return [_auto_reset_case("nothing ended", g, n, terminated=torch.zeros(n, dtype=torch.bool),
                             steps=torch.arange(n) * 7),
            _auto_reset_case("every environment terminated and reached the limit in the same step", g, n,
                             max_steps=10, terminated=torch.ones(n, dtype=torch.bool),
                             steps=torch.full((n,), 9)),
            _auto_reset_case("time limit 1: every step truncates", g, n, max_steps=1, p_term=0.3),
            _auto_reset_case("N = 1, the time limit reached", g, 1, terminated=torch.zeros(1, dtype=torch.bool),
                             steps=torch.tensor([499])),
            _auto_reset_case("counters one short of the limit and counters at the limit's step", g, n, max_steps=5,
                             p_term=0.0, steps=torch.arange(n) % 5),
            _auto_reset_case("float32 observations and int32 counters", g, 64, max_steps=20, p_term=0.2, p_limit=0.3,
                             dtype=torch.float32, count_dtype=torch.int32)]


# ---------------------------------------------------------------------- 3. the Riccati gain


def _lqr_gain_reference(A: Tensor, B: Tensor, Q: Tensor, R: Tensor) -> Tensor:
    """The LQR gain K (u = −Kx) from :func:`rlteach.lqr.dare`."""
    return dare(A, B, Q, R).K


def _lqr_variant(A: Tensor, B: Tensor, Q: Tensor, R: Tensor, *, sign: float = 1.0, sweeps: int | None = None,
                 swap: bool = False, transpose: bool = True, start: str = "Q") -> Tensor:
    """The Riccati iteration with one piece changed: ``sweeps`` a fixed number of sweeps (None: to
    convergence, as :func:`rlteach.lqr.dare`); ``swap`` the roles of Q and R; ``transpose``
    False uses A where Aᵀ belongs; ``start``: "Q" or "I" (P's first value)."""
    # the loop below is dare's, kept apart from it so that the variants run while dare is sealed
    if swap:
        Q, R = R, Q
    At = A.T if transpose else A
    P = Q.clone() if start == "Q" else torch.eye(A.shape[0], dtype=A.dtype)
    for _ in range(sweeps or 5_000):  # a variant that does not converge stops at 5 000 sweeps (the cases need < 2 500)
        K = torch.linalg.solve(R + B.T @ P @ B, B.T @ P @ A)
        P_next = Q + At @ P @ (A - B @ K)
        P_next = 0.5 * (P_next + P_next.T)
        change = float((P_next - P).abs().max())
        P = P_next
        if not bool(torch.isfinite(P).all()):
            break
        if sweeps is None and change <= 1e-10 * max(1.0, float(P.abs().max())):
            break
    return sign * torch.linalg.solve(R + B.T @ P @ B, B.T @ P @ A)


def _spd(g: torch.Generator, n: int, floor: float = 0.1) -> Tensor:
    """A random symmetric positive definite (n, n) matrix, float64."""
    M = torch.randn(n, n, generator=g, dtype=F64)
    return M @ M.T / n + floor * torch.eye(n, dtype=F64)


def _unstable(g: torch.Generator, n: int, radius: float = 1.3) -> Tensor:
    """A random non-symmetric (n, n) matrix of spectral radius ``radius`` (unstable for radius > 1)."""
    A = torch.randn(n, n, generator=g, dtype=F64)
    return A * (radius / float(torch.linalg.eigvals(A).abs().max()))


# Seconds one case of lqr_gain may run: the reference needs at most 0.2 s on the CPU (1,985 sweeps
# with R = 100). A loop whose P turns NaN (a sign error that diverges, or a relative change
# that divides 0 by max|P| = 0 when Q = 0) never meets its stopping test; the limit makes it
# that case's failure instead of a grade cell interrupted after 60 s.
LQR_TIME_LIMIT = 10.0
CARTPOLE_Q = torch.diag(torch.tensor([1.0, 1.0, 10.0, 1.0], dtype=F64))
CARTPOLE_R = torch.tensor([[0.1]], dtype=F64)


def _lqr_cases(seed: int, group: str) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    if group == "random":
        A3 = _unstable(g, 3)
        A2 = _unstable(g, 2, 1.2)
        length = 0.3 + 0.6 * float(torch.rand((), generator=g, dtype=F64))
        return [Case("CartPole linearised at the upright, Q = diag(1, 1, 10, 1), R = 0.1",
                     (*cartpole_linearization(), CARTPOLE_Q, CARTPOLE_R)),
                Case("an unstable 3-state system with 2 inputs, random Q ≻ 0 and R ≻ 0",
                     (A3, torch.randn(3, 2, generator=g, dtype=F64), _spd(g, 3), _spd(g, 2, 0.5))),
                Case("an unstable 2-state system with 2 inputs", (A2, torch.randn(2, 2, generator=g, dtype=F64),
                                                                 _spd(g, 2), _spd(g, 2, 0.5))),
                Case(f"CartPole with half-length {length:.2f} m and friction 0.2, R = 0.01 (cheap control)",
                     (*cartpole_linearization({"length": length, "friction": 0.2}), CARTPOLE_Q, 0.1 * CARTPOLE_R))]
    A, B = cartpole_linearization()
    a, b = 0.9 + 0.6 * float(torch.rand((), generator=g, dtype=F64)), 0.5 + float(torch.rand((), generator=g, dtype=F64))
    return [Case("a scalar system (n = m = 1)", (torch.tensor([[a]], dtype=F64), torch.tensor([[b]], dtype=F64),
                                                 torch.tensor([[2.0]], dtype=F64), torch.tensor([[0.3]], dtype=F64))),
            Case("CartPole with expensive control (R = 100): thousands of sweeps to converge",
                 (A, B, torch.eye(4, dtype=F64), 100.0 * torch.eye(1, dtype=F64))),
            Case("Q = 0 on an unstable system: no state cost, so no control (K = 0)",
                 (_unstable(g, 3), torch.randn(3, 1, generator=g, dtype=F64), torch.zeros(3, 3, dtype=F64),
                  torch.eye(1, dtype=F64))),
            Case("4 states, 2 inputs with a non-diagonal R",
                 (_unstable(g, 4, 1.1), torch.randn(4, 2, generator=g, dtype=F64), _spd(g, 4), _spd(g, 2, 0.2))),
            Case("a stable 2-state system with 2 inputs and a large state cost",
                 (_unstable(g, 2, 0.8), torch.randn(2, 2, generator=g, dtype=F64), 50.0 * _spd(g, 2),
                  _spd(g, 2, 1.0)))]


# --------------------------------------------------------------- 4. LQR balances CartPole

BALANCE_ENVS, EPISODE = 64, 500


def _balance_case(name: str, seed: int, design: Mapping[str, float], real: Mapping[str, float],
                  Q: Tensor = CARTPOLE_Q, R: Tensor = CARTPOLE_R) -> Case:
    A, B = cartpole_linearization(dict(design))
    return Case(name, (A, B, Q.clone(), R.clone()), info={"real": dict(real), "seed": seed, "A": A, "B": B})


def _balance_cases(seed: int, group: str) -> list[Case]:
    base = seed % 9973
    g = torch.Generator().manual_seed(seed)
    if group == "random":
        length = round(0.35 + 0.5 * float(torch.rand((), generator=g)), 2)
        masspole = round(0.1 + 0.3 * float(torch.rand((), generator=g)), 2)
        shifted = {"length": length, "masspole": masspole}
        return [_balance_case("designed for and run on the nominal CartPole", base, {}, {}),
                _balance_case(f"designed for and run on a pole of half-length {length} m and mass {masspole} kg",
                              base + 1, shifted, shifted)]
    real = {"length": 0.75, "masscart": 1.6, "masspole": 0.2}
    return [_balance_case("designed on the nominal model, run on a longer, heavier system (the sim-to-real gap)",
                          base + 2, {}, real),
            _balance_case("a weak actuator (gain 0.5: ±5 N) and cart friction 0.3, in the model too", base + 3,
                          {"friction": 0.3}, {"gain": 0.5, "friction": 0.3},
                          R=torch.tensor([[1.0]], dtype=F64))]


def _gain_of(observed: dict, case: Case) -> Tensor:
    K = observed["result"]
    B = case.info["B"]
    shape = (B.shape[1], B.shape[0])
    if not isinstance(K, Tensor) or tuple(K.shape) != shape:
        got = tuple(K.shape) if isinstance(K, Tensor) else type(K).__name__
        raise ValueError(f"lqr_gain must return a tensor K of shape (m, n) = {shape}, got {got}")
    return K.detach().to("cpu", F64)


def _spectral_radius(M: Tensor) -> float:
    return float(torch.linalg.eigvals(M).abs().max())


def _balance_stable(observed: dict, case: Case) -> str | None:
    K = _gain_of(observed, case)
    A, B = case.info["A"], case.info["B"]
    rho = _spectral_radius(A - B @ K)
    if rho < 1.0:
        return None
    hint = ""
    if _spectral_radius(A + B @ K) < 1.0:
        hint = "; with −K it would be stable: the policy is u = −Kx, return K (not −K)"
    return (f"the closed loop x ← (A − BK)x of the linear model has spectral radius {rho:.4f} ≥ 1, so it does "
            f"not return to the upright{hint}")


def run_balance(K: Tensor, real: Mapping[str, float], seed: int, num_envs: int = BALANCE_ENVS,
                steps: int = EPISODE) -> Tensor:
    """Steps survived by each of ``num_envs`` CartPoles with parameters ``real`` (float64, reset
    with ``seed``) under bang-bang control on the sign of the force −Kx, at most ``steps``."""
    env = BatchedCartPole(num_envs, dtype=F64, randomize={k: (v, v) for k, v in real.items()},
                          max_episode_steps=steps)
    obs = env.reset(seed)
    survived = torch.full((num_envs,), steps, dtype=torch.int64)
    alive = torch.ones(num_envs, dtype=torch.bool)
    for t in range(steps):
        out = env.step(lqr_force_to_action(-(obs @ K.T).reshape(num_envs)))
        fell = alive & out.terminated
        survived = torch.where(fell, t + 1, survived)
        alive &= ~out.terminated
        obs = out.obs
    return survived


def _balance_holds(observed: dict, case: Case) -> str | None:
    K = _gain_of(observed, case)
    if not bool(torch.isfinite(K).all()):
        return "K has entries that are not finite"
    survived = run_balance(K, case.info["real"], case.info["seed"])
    fell = int((survived < EPISODE).sum())
    if fell == 0:
        return None
    return (f"pushing with the sign of −Kx, {fell} of {BALANCE_ENVS} poles fell before the {EPISODE}-step time "
            f"limit (the first after {int(survived.min())} steps); LQR's gain keeps all of them up")


SEALED_STEP = (BatchedCartPole._dynamics, CartPoleEnv.step, CartPoleVectorEnv.step)

PARTS = (
    Part("cartpole_step", _step_reference, _step_cases, GROUPS, (
        Mistake("Euler and semi-implicit Euler swapped: CartPole-v1 takes one explicit Euler step, every "
                "quantity advanced with the derivative at the old state (the position with the old velocity).",
                lambda *a: _step_variant(*a, integrator="semi")),
        Mistake("terminated judged on the old state: an episode ends when the state after the step is past a "
                "threshold.", lambda *a: _step_variant(*a, judge="old")),
        Mistake("cos/sin swapped: the pole's weight pulls with g·sin θ; the cart's push reaches the pole "
                "through cos θ.", lambda *a: _step_variant(*a, trig="swapped")),
        Mistake("total mass used for the pole: the pole's moment term is m_p·l, the pole's mass times the "
                "half-length; the total mass m_c + m_p only divides.", lambda *a: _step_variant(*a, pole_mass="total")),
        Mistake("force sign reversed: action 1 pushes the cart right (F > 0, towards +x), action 0 left.",
                lambda *a: _step_variant(*a, force_sign=-1.0)),
        Mistake("friction ignored: viscous friction adds −μẋ to the force on the cart.",
                lambda *a: _step_variant(*a, friction=False)),
        Mistake("friction sign reversed: viscous friction opposes the cart's motion, it adds −μẋ to the force "
                "(not +μẋ).", lambda *a: _step_variant(*a, friction_sign=-1.0)),
        Mistake("the actuator's gain ignored: the push is ±10·gain N.", lambda *a: _step_variant(*a, gain=False)),
        Mistake("the full length used: params['length'] is already half the pole's length (gymnasium's l).",
                lambda *a: _step_variant(*a, half_length=False)),
        Mistake("no reward on the last step: CartPole-v1 gives 1 for every step, the one that ends the episode "
                "too.", lambda *a: _step_variant(*a, last_reward=0.0)),
        Mistake("angle threshold in degrees: θ is in radians, so the pole falls past 12° = 12·2π/360 ≈ 0.2094 rad, "
                "not past θ = 12.", lambda *a: _step_variant(*a, theta_limit=12.0)),
    ), seals=SEALED_STEP, rtol=1e-9, atol=1e-12),
    Part("auto_reset", _auto_reset_reference, _auto_reset_cases, GROUPS, (
        Mistake("reset observation used for bootstrapping: final_obs is the last observation of the episode "
                "that ended (next_obs), the one a truncated step bootstraps from, not the new episode's first.",
                lambda *a: _auto_reset_variant(*a, final="reset")),
        Mistake("terminated set on truncation: the time limit truncates, it does not terminate; return the "
                "terminated flags as given.", lambda *a: _auto_reset_variant(*a, mark="merged")),
        Mistake("step counter not reset: an environment whose episode ended starts its new episode at 0 steps.",
                lambda *a: _auto_reset_variant(*a, reset_count="never")),
        Mistake("truncated one step late: count this step first; an episode is truncated by the step that "
                "brings its counter to the limit.", lambda *a: _auto_reset_variant(*a, late=True)),
        Mistake("counter reset only on termination: a truncated episode ends too, its counter restarts at 0.",
                lambda *a: _auto_reset_variant(*a, reset_count="terminated")),
        Mistake("truncated only where not terminated: as gymnasium's TimeLimit, the limit truncates whether or "
                "not the same step also terminated.", lambda *a: _auto_reset_variant(*a, exclusive=True)),
        Mistake("reset only on termination: a truncated environment is reset too (its obs is a start state).",
                lambda *a: _auto_reset_variant(*a, reset_on="terminated")),
    ), seals=(BatchedEnv.step,)),
    Part("lqr_gain", _lqr_gain_reference, _lqr_cases, GROUPS, (
        Mistake("K sign flipped: the policy is u = −Kx with K = (R + BᵀPB)⁻¹BᵀPA; return K, not −K.",
                lambda *a: _lqr_variant(*a, sign=-1.0)),
        Mistake("stopped after one sweep: repeat the Riccati update until P stops changing (every entry within "
                "10⁻¹⁰·max(1, max|P|)), then take K from the final P.", lambda *a: _lqr_variant(*a, sweeps=1)),
        Mistake("R and Q swapped: Q weighs the state (it is where P starts and what each sweep adds), R the "
                "control (inside the inverse).", lambda *a: _lqr_variant(*a, swap=True)),
        Mistake("transpose missing: one step back in time costs Aᵀ P A, with A's transpose on the left "
                "(P ← Q + AᵀP(A − BK)).", lambda *a: _lqr_variant(*a, transpose=False)),
        Mistake("started from the identity: the cost with no steps to go is xᵀQx, so P starts at Q.",
                lambda *a: _lqr_variant(*a, start="I")),
    ), seals=(dare,), rtol=1e-6, atol=1e-8, time_limit=LQR_TIME_LIMIT),
    Part("lqr_cartpole", _lqr_gain_reference, _balance_cases, GROUPS, seals=(dare,),
         properties=(Property("closed-loop stable", _balance_stable, 1.0),
                     Property("balances the pole", _balance_holds, 2.0)),
         time_limit=30.0),
)
