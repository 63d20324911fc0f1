"""Graded parts of the trust-regions-and-KL exercise (03).

Two warm-ups (the Gaussian KL in closed form, the k3 estimate with its standard error) and
four parts that build something whole: the dogleg step, conjugate gradient (graded on its
solution and on the matrix-vector products it spends), the Fisher-vector product by double
backpropagation (on a network whose Fisher could never be formed), and TRPO's
natural-gradient step made of those two.
"""

from __future__ import annotations

import itertools
import math
import weakref
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from rlteach import kl
from rlteach import natural_gradient as ng
from rlteach import trust_region as tr
from rlteach.grading.spec import Arguments, Case, Mistake, Part

GROUPS = ("random", "edge")
F64 = torch.float64


def _randn(g: torch.Generator, *shape: int, scale: float = 1.0) -> Tensor:
    return scale * torch.randn(shape, generator=g, dtype=F64)


# ------------------------------------------------------------------ 1. the Gaussian KL


def _gaussian_pair(g: torch.Generator, *shape: int, width_spread: float = 0.5) -> tuple[Tensor, ...]:
    return _randn(g, *shape), _randn(g, *shape, scale=width_spread), _randn(g, *shape), _randn(g, *shape, scale=width_spread)


def _gaussian_kl_cases(seed: int, group: str) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    if group == "random":
        return [Case("one pair of 3-D Gaussians", _gaussian_pair(g, 3)),
                Case("a batch of 5 pairs in 2-D", _gaussian_pair(g, 5, 2)),
                Case("a (4, 3, 6) batch, widths far apart", _gaussian_pair(g, 4, 3, 6, width_spread=1.5))]
    mp, lp, mq, lq = _gaussian_pair(g, 4, 3)
    return [Case("identical distributions (KL = 0)", (mp, lp, mp.clone(), lp.clone())),
            Case("equal widths, different means", (mp, lp, mq, lp.clone())),
            Case("equal means, different widths", (mp, lp, mp.clone(), lq)),
            Case("one dimension, a batch of 6", _gaussian_pair(g, 6, 1)),
            Case("widths e^5 times apart", (mp, lp + 2.5, mq, lq - 2.5)),
            Case("float32 inputs", tuple(t.float() for t in _gaussian_pair(g, 5, 2)))]


def _gaussian_textbook(mp: Tensor, sp: Tensor, mq: Tensor, sq: Tensor, half: float = 0.5) -> Tensor:
    """log(sq/sp) + (sp² + (mp − mq)²)/(2 sq²) − ½ with the widths given directly, summed over the last dim."""
    return (torch.log(sq / sp) + (sp**2 + 2 * half * (mp - mq) ** 2) / (2 * sq**2) - 0.5).sum(-1)


def _gaussian_per_coordinate(mp: Tensor, lp: Tensor, mq: Tensor, lq: Tensor) -> Tensor:
    sp, sq = lp.exp(), lq.exp()
    return torch.log(sq / sp) + (sp**2 + (mp - mq) ** 2) / (2 * sq**2) - 0.5


# ------------------------------------------------------------------ 2. the k3 estimate


def _policy_samples(g: torch.Generator, shape: tuple[int, ...], num_actions: int, move: float) -> tuple[Tensor, Tensor]:
    """(logp, logp_old): log-probabilities under the new and the old policy of actions drawn from the old one."""
    logits_old = _randn(g, *shape, num_actions, scale=1.5)
    logits = logits_old + _randn(g, *shape, num_actions, scale=move)
    probs_old = torch.softmax(logits_old, -1).reshape(-1, num_actions)
    actions = torch.multinomial(probs_old, 1, generator=g).reshape(*shape, 1)
    logp_old = torch.log_softmax(logits_old, -1).gather(-1, actions).squeeze(-1)
    logp = torch.log_softmax(logits, -1).gather(-1, actions).squeeze(-1)
    return logp, logp_old


def _approx_kl_cases(seed: int, group: str) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    if group == "random":
        return [Case("64 states, 4 actions, a small policy change", _policy_samples(g, (64,), 4, 0.2)),
                Case("a (16, 4) rollout, a larger change", _policy_samples(g, (16, 4), 6, 0.8)),
                Case("500 states, 3 actions", _policy_samples(g, (500,), 3, 0.4))]
    logp, logp_old = _policy_samples(g, (40,), 5, 0.3)
    far = logp.clone()
    far[7] = logp_old[7] + 12.0
    tiny, tiny_old = _policy_samples(g, (50,), 4, 1e-4)
    return [Case("the new policy equals the old one", (logp_old.clone(), logp_old)),
            Case("two samples", _policy_samples(g, (2,), 3, 0.5)),
            Case("log-ratios up to ±20", (logp_old + _randn(g, 40, scale=8.0).clamp(-20, 20), logp_old)),
            Case("one sample far off (log-ratio 12)", (far, logp_old)),
            Case("a (5, 8) rollout", _policy_samples(g, (5, 8), 4, 0.6)),
            Case("float32, nearly equal policies", (tiny.float(), tiny_old.float()))]


def _standard_error(samples: Tensor, correction: int = 1) -> Tensor:
    flat = samples.reshape(-1)
    return flat.std(correction=correction) / math.sqrt(flat.numel())


def _approx_kl_reference(logp: Tensor, logp_old: Tensor) -> tuple[Tensor, Tensor]:
    """The mean k3 estimate of KL(π_old‖π_θ) over every entry, and its standard error."""
    k3 = kl.kl_k3(logp - logp_old)  # (r − 1) − log r, r = π_θ/π_old
    return k3.mean(), _standard_error(k3)


def _k3_naive(log_ratio: Tensor) -> Tensor:
    return (log_ratio.exp() - 1) - log_ratio


def _with_error(samples: Tensor, correction: int = 1) -> tuple[Tensor, Tensor]:
    return samples.mean(), _standard_error(samples, correction)


# ------------------------------------------------------------------------ 3. the dogleg


def _spd(g: torch.Generator, n: int, condition: float = 10.0) -> Tensor:
    """Q diag(λ) Qᵀ with λ spread geometrically over [1, condition]."""
    Q, _ = torch.linalg.qr(_randn(g, n, n))
    eigenvalues = torch.logspace(0.0, math.log10(condition), n, dtype=F64) if n > 1 else torch.ones(1, dtype=F64)
    H = (Q * eigenvalues) @ Q.T
    return 0.5 * (H + H.T)


def _legs(g_vec: Tensor, H: Tensor) -> tuple[float, float]:
    """(‖p^U‖, ‖p^B‖): the lengths of the steepest-descent minimiser and of the Newton step."""
    p_u = -(g_vec @ g_vec) / (g_vec @ H @ g_vec) * g_vec
    p_b = -torch.linalg.solve(H, g_vec)
    return float(p_u.norm()), float(p_b.norm())


def _between(g_vec: Tensor, H: Tensor, t: float) -> float:
    """A radius a fraction t of the way from ‖p^U‖ to ‖p^B‖: the dogleg's second leg."""
    short, long = _legs(g_vec, H)
    return short + t * (long - short)


def _dogleg_cases(seed: int, group: str) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    fraction = lambda: 0.2 + 0.6 * float(torch.rand((), generator=g, dtype=F64))  # noqa: E731
    if group == "random":
        out = []
        for name, n, condition in (("2-D", 2, 20.0), ("5-D", 5, 50.0), ("3-D", 3, 10.0)):
            g_vec, H = _randn(g, n), _spd(g, n, condition)
            out.append(Case(f"{name}, a radius between the Cauchy and the Newton step", (g_vec, H, _between(g_vec, H, fraction()))))
        return out
    g_vec, H = _randn(g, 4), _spd(g, 4, 30.0)
    short, long = _legs(g_vec, H)
    g1, H1 = _randn(g, 1), 0.5 + torch.rand((1, 1), generator=g, dtype=F64)
    g_ill, H_ill = _randn(g, 3), _spd(g, 3, 1e4)
    g32, H32 = _randn(g, 3), _spd(g, 3, 10.0)
    return [Case("the Newton step lies inside the ball", (g_vec, H, 1.5 * long)),
            Case("a radius shorter than the steepest-descent minimiser (first leg)", (g_vec, H, 0.5 * short)),
            Case("a radius exactly the Newton step's length", (g_vec, H, long)),
            Case("a zero gradient", (torch.zeros(4, dtype=F64), H, 1.0)),
            Case("one dimension", (g1, H1, 0.5 * float(g1.abs().item() / H1.item()))),
            Case("H with condition number 1e4", (g_ill, H_ill, _between(g_ill, H_ill, 0.5))),
            Case("float32 inputs", (g32.float(), H32.float(), _between(g32, H32, 0.5)))]


def _dogleg_reference(g: Tensor, H: Tensor, radius: float) -> Tensor:
    """The library's dogleg step (the exercise's signature)."""
    return tr.dogleg(g, H, radius).step


def _newton(g: Tensor, H: Tensor) -> Tensor:
    return -torch.linalg.solve(H, g)


def _steepest(g: Tensor, H: Tensor) -> Tensor:
    return -(g @ g) / (g @ (H @ g)) * g


def _dogleg_variant(g: Tensor, H: Tensor, radius: float, *, root: str = "+", clip_first_leg: bool = True,
                    second_leg: bool = True) -> Tensor:
    """The dogleg with one piece changed (for the known mistakes)."""
    p_b = _newton(g, H)
    if float(p_b.norm()) <= radius:
        return p_b
    p_u = _steepest(g, H)
    if float(p_u.norm()) >= radius:
        return radius * p_u / p_u.norm() if clip_first_leg else p_u
    if not second_leg:
        return p_u
    d = p_b - p_u
    a, b, c = float(d @ d), 2 * float(p_u @ d), float(p_u @ p_u) - radius**2
    root_term = math.sqrt(max(b * b - 4 * a * c, 0.0))
    s = (-b + root_term) / (2 * a) if root == "+" else (-b - root_term) / (2 * a)
    return p_u + s * d


def _newton_on_sphere(g: Tensor, H: Tensor, radius: float) -> Tensor:
    p_b = _newton(g, H)
    return p_b if float(p_b.norm()) <= radius else radius * p_b / p_b.norm()


# ------------------------------------------------------------------ 4. conjugate gradient

_CALLS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # matvec → its call count, kept out of its reach


class CountingMatvec:
    """v ↦ Av that counts its calls (the count lives in this module, not on the object)."""

    __slots__ = ("_A", "__weakref__")

    def __init__(self, A: Tensor) -> None:
        self._A = A
        _CALLS[self] = 0

    def __call__(self, v: Tensor) -> Tensor:
        _CALLS[self] += 1
        return self._A @ v

    def __repr__(self) -> str:
        return f"<matrix-vector product with a {self._A.shape[0]}×{self._A.shape[1]} matrix>"


def calls_of(matvec: object) -> int:
    """How many times a :class:`CountingMatvec` was called."""
    return int(_CALLS[matvec])


def _with_eigenvalues(g: torch.Generator, n: int, eigenvalues: Tensor) -> Tensor:
    Q, _ = torch.linalg.qr(_randn(g, n, n))
    A = (Q * eigenvalues) @ Q.T
    return 0.5 * (A + A.T)


def _unit(g: torch.Generator, n: int) -> Tensor:
    u = _randn(g, n)
    return u / u.norm()


def _cg_case(name: str, A: Tensor, b: Tensor, max_iter: int, tol: float, dtype: torch.dtype = F64) -> Case:
    def make(device: torch.device) -> Arguments:
        return (CountingMatvec(A.to(device, dtype)), b.to(device, dtype), max_iter, tol), {}
    return Case(name, make=make)


def _cg_cases(seed: int, group: str) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    clustered = torch.tensor([1.0, 2.5, 4.0, 7.0], dtype=F64)[torch.arange(10) % 4]
    if group == "random":
        return [_cg_case("10×10 with 4 distinct eigenvalues", _with_eigenvalues(g, 10, clustered), _randn(g, 10), 10, 1e-10),
                _cg_case("20×20, condition 10, tol 1e-8", _spd(g, 20, 10.0), _randn(g, 20), 20, 1e-8),
                _cg_case("30×30, condition 100, tol 1e-6", _spd(g, 30, 100.0), _randn(g, 30), 30, 1e-6),
                _cg_case("40×40, condition 1e4, stopped after 8 iterations", _spd(g, 40, 1e4), _randn(g, 40), 8, 1e-10)]
    A = _spd(g, 12, 20.0)
    return [_cg_case("b = 0", A, torch.zeros(12, dtype=F64), 12, 1e-10),
            _cg_case("one dimension", 0.5 + torch.rand((1, 1), generator=g, dtype=F64), _randn(g, 1), 5, 1e-10),
            _cg_case("the identity matrix", torch.eye(6, dtype=F64), _randn(g, 6), 6, 1e-10),
            _cg_case("max_iter = 1", A, _randn(g, 12), 1, 1e-10),
            _cg_case("a right-hand side of norm 1e-6, tol 1e-6", A, 1e-6 * _unit(g, 12), 12, 1e-6),
            _cg_case("a right-hand side of norm 1e3, tol 1e-8", A, 1e3 * _unit(g, 12), 12, 1e-8),
            _cg_case("float32, 3 distinct eigenvalues, tol 1e-4",
                     _with_eigenvalues(g, 9, torch.tensor([1.0, 2.0, 4.0], dtype=F64)[torch.arange(9) % 3]),
                     _randn(g, 9), 9, 1e-4, torch.float32)]


def _cg_reference(matvec: Callable[[Tensor], Tensor], b: Tensor, max_iter: int, tol: float) -> Tensor:
    """The library's CG solution (the exercise's signature)."""
    return ng.conjugate_gradient(matvec, b, max_iter=max_iter, tol=tol).x


def _cg_observe(result: object, args: tuple, kwargs: dict) -> dict:
    return {"x": result, "matvecs": calls_of(args[0])}


def _cg_variant(matvec: Callable[[Tensor], Tensor], b: Tensor, max_iter: int, tol: float, *, residual_sign: float = -1.0,
                conjugate: bool = True, explicit_residual: bool = False, early_stop: bool = True,
                relative: bool = True, beta_inverted: bool = False) -> Tensor:
    """CG with one piece changed (for the known mistakes)."""
    x = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rr = float(r @ r)
    stop = tol * math.sqrt(rr) if relative else tol
    if rr == 0.0:
        return x
    for _ in range(max_iter):
        Ap = matvec(p)
        alpha = rr / float(p @ Ap)
        x = x + alpha * p
        r = b - matvec(x) if explicit_residual else r + residual_sign * alpha * Ap
        rr_next = float(r @ r)
        if early_stop and math.sqrt(rr_next) <= stop:
            break
        beta = (rr / rr_next if beta_inverted else rr_next / rr) if conjugate else 0.0
        p = r + beta * p
        rr = rr_next
    return x


# ------------------------------------------------------- 5. the Fisher-vector product


class _Policy(nn.Module):
    """Logits of a categorical policy; optionally with a parameter that the logits never use."""

    def __init__(self, body: nn.Sequential, unused: int = 0) -> None:
        super().__init__()
        if unused:
            self.temperature = nn.Parameter(torch.zeros(unused, dtype=next(body.parameters()).dtype))
        self.body = body

    def forward(self, obs: Tensor) -> Tensor:
        return self.body(obs)


def _network_values(g: torch.Generator, sizes: tuple[int, ...], scale: float) -> list[Tensor]:
    """Weights and biases of an MLP, drawn once per case (the module is rebuilt from them for every call)."""
    values = []
    for fan_in, fan_out in itertools.pairwise(sizes):
        values.append(_randn(g, fan_out, fan_in, scale=scale / math.sqrt(fan_in)))
        values.append(_randn(g, fan_out, scale=0.1))
    return values


def _build_policy(sizes: tuple[int, ...], values: list[Tensor], device: torch.device, dtype: torch.dtype,
                  unused: int = 0) -> _Policy:
    """An MLP (tanh between layers) with the given parameter values; no draw from the global generator."""
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.utils.skip_init(nn.Linear, fan_in, fan_out, device=device, dtype=dtype))
        if i < len(sizes) - 2:
            layers.append(nn.Tanh())
    body = nn.Sequential(*layers)
    with torch.no_grad():
        for param, value in zip(body.parameters(), values, strict=True):
            param.copy_(value)
    return _Policy(body, unused).to(device)


def _num_params(sizes: tuple[int, ...], unused: int = 0) -> int:
    return unused + sum(a * b + b for a, b in itertools.pairwise(sizes))


def _policy_case(name: str, g: torch.Generator, sizes: tuple[int, ...], states: int, tail: tuple = (0.1,), *,
                 scale: float = 1.5, unused: int = 0, v_scale: float = 1.0, dtype: torch.dtype = F64) -> Case:
    """(policy, obs, v, *tail) with a fresh module per call: tail is (damping,) for the Fisher-vector
    product and (max_kl, damping, cg_iters) for the natural step, whose v is the gradient."""
    values = _network_values(g, sizes, scale)
    obs = _randn(g, states, sizes[0])
    v = _randn(g, _num_params(sizes, unused), scale=v_scale)

    def make(device: torch.device) -> Arguments:
        policy = _build_policy(sizes, values, device, dtype, unused)
        return (policy, obs.to(device, dtype), v.to(device, dtype), *tail), {}
    return Case(name, make=make)


LARGE = (64, 256, 256, 6)  # 83,974 parameters: F would have 7.1e9 entries, 56 GB in float64


def _fvp_cases(seed: int, group: str) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    if group == "random":
        return [_policy_case("an MLP 4-16-3 on 32 states", g, (4, 16, 3), 32),
                _policy_case("an MLP 8-32-32-5 on 64 states", g, (8, 32, 32, 5), 64, (0.05,)),
                _policy_case("a linear policy 6-4 on 20 states", g, (6, 4), 20, (0.2,))]
    size = _num_params(LARGE)
    large = (f"an MLP {'-'.join(map(str, LARGE))} on 32 states ({size:,} parameters: F would need "
             f"{size**2 * 8 / 1e9:.0f} GB)")
    return [_policy_case("v = 0", g, (4, 16, 3), 16, v_scale=0.0),
            _policy_case("damping = 0", g, (4, 16, 3), 16, (0.0,)),
            _policy_case("a single state", g, (5, 8, 4), 1),
            _policy_case("a nearly deterministic policy (large logits)", g, (4, 16, 3), 24, scale=25.0),
            _policy_case("a parameter the logits do not use", g, (4, 8, 3), 12, unused=3),
            _policy_case(large, g, LARGE, 32, (0.1,)),
            _policy_case("float32", g, (4, 16, 3), 32, dtype=torch.float32)]


def _mean_kl(policy: nn.Module, obs: Tensor) -> Tensor:
    logits = policy(obs)
    return kl.mean_categorical_kl(logits.detach(), logits)


def _fvp_reference(policy: nn.Module, obs: Tensor, v: Tensor, damping: float) -> Tensor:
    """(F + damping·I)v at the policy's parameters: the library's double backpropagation of the mean KL."""
    return ng.fisher_vector_product(_mean_kl(policy, obs), list(policy.parameters()), v, damping)


def _flat(grads: tuple, params: Sequence[Tensor]) -> Tensor:
    return torch.cat([(torch.zeros_like(p) if gr is None else gr).reshape(-1) for gr, p in zip(grads, params, strict=True)])


def _fvp_operator(policy: nn.Module, obs: Tensor, damping: float, *, detach: bool = True, reduce: str = "mean",
                  use_damping: bool = True) -> Callable[[Tensor], Tensor]:
    """v ↦ (F + damping·I)v with one piece changed (for the known mistakes); the first gradient is built once."""
    params = list(policy.parameters())
    logits = policy(obs)
    per_state = torch.nn.functional.kl_div(torch.log_softmax(logits, -1),
                                           torch.log_softmax(logits.detach() if detach else logits, -1),
                                           reduction="none", log_target=True).sum(-1)  # KL(π_old‖π_θ) per state
    total = per_state.sum() if reduce == "sum" else per_state.mean()
    first = _flat(torch.autograd.grad(total, params, create_graph=True, allow_unused=True), params)

    def fvp(v: Tensor) -> Tensor:
        hv = (_flat(torch.autograd.grad(first @ v, params, retain_graph=True, allow_unused=True), params)
              if first.requires_grad else torch.zeros_like(v))
        return hv + damping * v if use_damping else hv
    return fvp


def _fvp_variant(policy: nn.Module, obs: Tensor, v: Tensor, damping: float, **change: object) -> Tensor:
    return _fvp_operator(policy, obs, damping, **change)(v)  # type: ignore[arg-type]


# ------------------------------------------------------------- 6. the natural-gradient step


NATURAL_CG_TOL = 1e-10


def _step_cases(seed: int, group: str) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    if group == "random":
        return [_policy_case("an MLP 4-16-3 on 32 states, max_kl 0.01, 10 CG iterations", g, (4, 16, 3), 32,
                             (0.01, 0.1, 10)),
                _policy_case("an MLP 6-24-4 on 48 states, max_kl 0.05, 5 CG iterations", g, (6, 24, 4), 48,
                             (0.05, 0.05, 5)),
                _policy_case("a linear policy 5-3 on 40 states, CG to convergence", g, (5, 3), 40, (0.02, 0.1, 18))]
    return [_policy_case("a zero gradient", g, (4, 8, 3), 16, (0.01, 0.1, 10), v_scale=0.0),
            _policy_case("one CG iteration", g, (4, 8, 3), 16, (0.01, 0.1, 1)),
            _policy_case("a tiny KL budget (1e-6)", g, (4, 8, 3), 16, (1e-6, 0.1, 10)),
            _policy_case("heavy damping (10)", g, (4, 8, 3), 16, (0.01, 10.0, 10)),
            _policy_case("a single state", g, (5, 8, 4), 1, (0.02, 0.1, 10)),
            _policy_case("a parameter the logits do not use", g, (4, 8, 3), 12, (0.01, 0.1, 10), unused=2)]


def _step_reference(policy: nn.Module, obs: Tensor, grad: Tensor, max_kl: float, damping: float,
                    cg_iters: int) -> Tensor:
    """TRPO's step: CG on the library's Fisher-vector products, scaled to ½sᵀ(F + damping·I)s = max_kl."""
    fvp = ng.HessianVectorProduct(_mean_kl(policy, obs), list(policy.parameters()), damping)
    return ng.natural_gradient_step(grad, fvp, max_kl, cg_iters=cg_iters, cg_tol=NATURAL_CG_TOL).step


def _step_variant(policy: nn.Module, obs: Tensor, grad: Tensor, max_kl: float, damping: float, cg_iters: int, *,
                  half: float = 0.5, use_damping: bool = True, scale: str = "fisher", natural: bool = True) -> Tensor:
    fvp = _fvp_operator(policy, obs, damping, use_damping=use_damping)
    if float(grad.norm()) == 0.0:
        return torch.zeros_like(grad)
    x = _cg_variant(fvp, grad, cg_iters, NATURAL_CG_TOL) if natural else grad
    if scale == "none":
        return x
    if scale == "euclidean":
        return math.sqrt(2 * max_kl) / float(x.norm()) * x
    return math.sqrt(max_kl / (half * float(x @ fvp(x)))) * x  # ½·(s·Fs) = δ when half = ½


PARTS = (
    Part("gaussian_kl", kl.gaussian_kl, _gaussian_kl_cases, GROUPS, (
        Mistake("KL direction reversed: you computed KL(q‖p). The expectation is under p, the first argument: "
                "the mean difference is measured in units of q's width.",
                lambda mp, lp, mq, lq: _gaussian_textbook(mq, lq.exp(), mp, lp.exp())),
        Mistake("missing ½: the mean term is (μ_p − μ_q)²/(2σ_q²).",
                lambda mp, lp, mq, lq: _gaussian_textbook(mp, lp.exp(), mq, lq.exp(), half=1.0)),
        Mistake("you used the standard deviations where the variances belong: log p(x) has (x − μ)²/(2σ²).",
                lambda mp, lp, mq, lq: (lq - lp + (lp.exp() + (mp - mq) ** 2) / (2 * lq.exp()) - 0.5).sum(-1)),
        Mistake("the log term is upside down: E_p[log p − log q] contributes log(σ_q/σ_p).",
                lambda mp, lp, mq, lq: (lp - lq + ((2 * lp).exp() + (mp - mq) ** 2) / (2 * (2 * lq).exp())
                                        - 0.5).sum(-1)),
        Mistake("not summed over the last dimension: the coordinates of a diagonal Gaussian are independent, "
                "so their KLs add up to one number per pair.", _gaussian_per_coordinate),
    )),
    Part("approx_kl", _approx_kl_reference, _approx_kl_cases, GROUPS, (
        Mistake("that is k1 = −log r: unbiased, but it has a large variance and goes negative. k3 adds the "
                "control variate r − 1, whose mean under the old policy is 0.",
                lambda lp, lo: _with_error(lo - lp)),
        Mistake("KL direction reversed: the actions come from the old policy, so r = π_θ/π_old, "
                "log r = logp − logp_old.", lambda lp, lo: _with_error(_k3_naive(lo - lp))),
        Mistake("that is k2 = ½(log r)²: low variance but biased. Use k3.",
                lambda lp, lo: _with_error(0.5 * (lp - lo) ** 2)),
        Mistake("the standard error is the sample standard deviation divided by √n (you returned the standard "
                "deviation itself).", lambda lp, lo: (_k3_naive(lp - lo).mean(), _k3_naive(lp - lo).reshape(-1).std())),
        Mistake("use the sample standard deviation (divide by n − 1) in the standard error.",
                lambda lp, lo: _with_error(_k3_naive(lp - lo), correction=0)),
    ), seals=(kl.kl_k3, kl.expm1_minus)),
    Part("dogleg", _dogleg_reference, _dogleg_cases, GROUPS, (
        Mistake("you returned the Newton step −H⁻¹g although it lies outside the ball.",
                lambda g, H, radius: _newton(g, H)),
        Mistake("you stopped at the steepest-descent minimiser p^U: when it lies inside the ball, the dogleg goes "
                "on from p^U toward the Newton step until it meets the sphere.",
                lambda g, H, radius: _dogleg_variant(g, H, radius, second_leg=False)),
        Mistake("wrong root: on the second leg p^U + s(p^B − p^U) meets the sphere at the root s in [0, 1], "
                "not at the negative one.", lambda g, H, radius: _dogleg_variant(g, H, radius, root="-")),
        Mistake("you scaled the Newton step back to the sphere: ρ·p^B/‖p^B‖ is not on the dogleg path.",
                _newton_on_sphere),
        Mistake("on the first leg p^U lies outside the ball: cut it back to the sphere, ρ·p^U/‖p^U‖.",
                lambda g, H, radius: _dogleg_variant(g, H, radius, clip_first_leg=False)),
    ), seals=(tr.dogleg, tr.dogleg_path, tr.cauchy_point, tr._boundary_tau), rtol=1e-6, atol=1e-9),
    Part("conjugate_gradient", _cg_reference, _cg_cases, GROUPS, (
        Mistake("CG residual sign: the residual r = b − Ax goes down by α·Ap, r ← r − αAp.",
                lambda m, b, k, tol: _cg_variant(m, b, k, tol, residual_sign=1.0)),
        Mistake("no conjugation: with p ← r every iteration this is steepest descent, which needs many more "
                "iterations. The new direction is r + βp with β = ‖r_new‖²/‖r_old‖².",
                lambda m, b, k, tol: _cg_variant(m, b, k, tol, conjugate=False)),
        Mistake("β is upside down: β = ‖r_new‖²/‖r_old‖².",
                lambda m, b, k, tol: _cg_variant(m, b, k, tol, beta_inverted=True)),
        Mistake("two matrix-vector products per iteration: you recomputed r = b − Ax. The recurrence "
                "r ← r − αAp reuses the product Ap that the step needed anyway.",
                lambda m, b, k, tol: _cg_variant(m, b, k, tol, explicit_residual=True)),
        Mistake("no early stop: stop as soon as ‖r‖ ≤ tol·‖b‖, and spend no product after that.",
                lambda m, b, k, tol: _cg_variant(m, b, k, tol, early_stop=False)),
        Mistake("the stopping test is relative: ‖r‖ ≤ tol·‖b‖, not ‖r‖ ≤ tol.",
                lambda m, b, k, tol: _cg_variant(m, b, k, tol, relative=False)),
    ), seals=(ng.conjugate_gradient, ng.natural_gradient_step, tr.steihaug_cg), observe=_cg_observe,
        time_limit=20.0, rtol=1e-6, atol=1e-9),
    Part("fisher_vector_product", _fvp_reference, _fvp_cases, GROUPS, (
        Mistake("damping forgotten: return (F + damping·I)v, not Fv.",
                lambda p, o, v, d: _fvp_variant(p, o, v, d, use_damping=False)),
        Mistake("the old distribution is not detached: KL(π_θ‖π_θ) is 0 for every θ, and so is its Hessian. "
                "Detach the old logits (they are data), then differentiate.",
                lambda p, o, v, d: _fvp_variant(p, o, v, d, detach=False)),
        Mistake("you summed the KL over the states: the constraint is the mean KL, so F is the mean over states.",
                lambda p, o, v, d: _fvp_variant(p, o, v, d, reduce="sum")),
    ), seals=(ng.fisher_vector_product, ng.hessian_vector_product, ng.HessianVectorProduct.__init__,
              ng.HessianVectorProduct.__call__, kl.categorical_fisher), time_limit=20.0),
    Part("natural_gradient_step", _step_reference, _step_cases, GROUPS, (
        Mistake("missing ½: scale the step so that ½·sᵀ(F + damping·I)s = max_kl; yours has sᵀFs = max_kl.",
                lambda p, o, g, kl_max, d, k: _step_variant(p, o, g, kl_max, d, k, half=1.0)),
        Mistake("damping forgotten: solve and scale with F + damping·I.",
                lambda p, o, g, kl_max, d, k: _step_variant(p, o, g, kl_max, d, k, use_damping=False)),
        Mistake("the step is not scaled: after CG, x ≈ F⁻¹g must be stretched to the edge of the KL ellipsoid.",
                lambda p, o, g, kl_max, d, k: _step_variant(p, o, g, kl_max, d, k, scale="none")),
        Mistake("Euclidean scaling: ‖s‖ = √(2·max_kl) is a ball in parameter space; the constraint is the "
                "ellipsoid ½·sᵀFs ≤ max_kl.", lambda p, o, g, kl_max, d, k: _step_variant(p, o, g, kl_max, d, k, scale="euclidean")),
        Mistake("that is the plain gradient direction scaled to the ellipsoid; the natural gradient is F⁻¹g (by CG).",
                lambda p, o, g, kl_max, d, k: _step_variant(p, o, g, kl_max, d, k, natural=False)),
    ), seals=(ng.natural_gradient_step, ng.conjugate_gradient, tr.steihaug_cg, ng.fisher_vector_product,
              ng.hessian_vector_product, ng.HessianVectorProduct.__init__, ng.HessianVectorProduct.__call__,
              kl.categorical_fisher), time_limit=20.0),
)
