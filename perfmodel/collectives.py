"""Collective communication time: one sympy expression per collective and algorithm.

One level of links (all GPUs behind one NVSwitch, one PCIe tree, or one NIC rail):

    T = t_c + alpha_c * steps(n) + bus_bytes(n, X) / (BW_u * eff(X)),
    eff(X) = e_c * X**p_c / (X**p_c + X_ch**p_c)

``eff`` reaches half its plateau ``e_c`` at ``X_ch``; ``p_c = 1`` is the plain alpha-beta
model (the ramp then only adds a constant), the fitted ``p_c`` of 0.5-0.7 is the slower
ramp of NCCL's protocol and chunking changes. ``X`` is the nccl-tests message size (all-reduce buffer, gathered output, all-to-all send
buffer); ``bus_bytes`` is what each GPU sends (and receives) per direction, so
``bus_bytes / X`` is nccl-tests' bus-bandwidth factor for ring algorithms. A hierarchical
collective across nodes is a sum of single-level expressions: the intra-node level with
``n_c -> n_g`` and the inter-node level with ``n_c -> n_n`` and the NIC's symbols
(``BW_o, t_o, alpha_o, e_o, X_oh``).
"""

from __future__ import annotations

from dataclasses import dataclass

from sympy import Expr, Integer, ceiling, log

from perfmodel import symbols as S
from perfmodel.errors import PerfmodelError

n, X = S.n_c, S.X_c


@dataclass(frozen=True)
class Algorithm:
    """How one collective is carried out: latency steps and bytes per GPU per direction."""

    collective: str
    name: str
    steps: Expr
    bus_bytes: Expr
    derivation: str


_ALGORITHMS = (
    Algorithm("all_reduce", "ring", 2 * (n - 1), 2 * (n - 1) / n * X,
              "reduce-scatter then all-gather around a ring: n-1 steps each, X/n bytes per step"),
    Algorithm("all_reduce", "tree", 2 * ceiling(log(n, 2)), 2 * X,
              "NCCL double binary tree: reduce up then broadcast down, log2(n) hops each; every GPU "
              "sends X per phase (interior in one tree for X/2, leaf in the other for X/2)"),
    Algorithm("all_reduce", "nvls", Integer(2), (n + 1) / n * X,
              "NVLink SHARP: multimem ld_reduce of the GPU's 1/n shard (the switch reads X/n from every "
              "GPU: X out per GPU) then a multimem store of the shard (X/n out): X(n+1)/n"),
    Algorithm("all_reduce", "custom", Integer(2), 2 * (n - 1) / n * X,
              "TensorRT-LLM custom all-reduce, two-shot: peer-to-peer reduce-scatter and all-gather "
              "through shared buffers, two barrier steps"),
    Algorithm("all_gather", "ring", n - 1, (n - 1) / n * X,
              "ring: n-1 steps, each forwards one X/n piece"),
    Algorithm("reduce_scatter", "ring", n - 1, (n - 1) / n * X,
              "ring: n-1 steps, each reduces and forwards one X/n piece"),
    Algorithm("all_to_all", "pairwise", n - 1, (n - 1) / n * X,
              "pairwise exchange: n-1 peers, X/n bytes to each"),
    Algorithm("send_recv", "direct", Integer(1), X, "one hop, the whole message"),
)
ALGORITHMS: dict[tuple[str, str], Algorithm] = {(a.collective, a.name): a for a in _ALGORITHMS}
COLLECTIVES = tuple(dict.fromkeys(a.collective for a in _ALGORITHMS))

#: single-level symbols -> the inter-node level's (scale-out NIC) symbols
INTER_NODE = {S.BW_u: S.BW_o, S.t_c: S.t_o, S.alpha_c: S.alpha_o, S.e_c: S.e_o, S.X_ch: S.X_oh, S.p_c: S.p_o}


def algorithm(collective: str, name: str) -> Algorithm:
    """The algorithm ``name`` of ``collective``; PerfmodelError naming the known ones."""
    try:
        return ALGORITHMS[(collective, name)]
    except KeyError:
        known = ", ".join(f"{c}/{a}" for c, a in ALGORITHMS)
        raise PerfmodelError(f"collective: no algorithm {collective}/{name} (known: {known})") from None


def efficiency() -> Expr:
    """Achieved fraction of link bandwidth at message size X: ramps to e_c, half at X_ch."""
    return S.e_c * X**S.p_c / (X**S.p_c + S.X_ch**S.p_c)


def time(collective: str, name: str) -> Expr:
    """Seconds for one collective over one level of links (the formula in the module docstring)."""
    alg = algorithm(collective, name)
    return S.t_c + S.alpha_c * alg.steps + alg.bus_bytes / (S.BW_u * efficiency())


def bus_factor(collective: str) -> Expr:
    """nccl-tests' busbw / algbw: 2(n-1)/n for all-reduce, (n-1)/n for the others, 1 for send/recv."""
    return {"all_reduce": 2 * (n - 1) / n, "send_recv": Integer(1)}.get(collective, (n - 1) / n)


def _level(expr: Expr, gpus, message, inter: bool) -> Expr:
    mapping = dict(INTER_NODE) if inter else {}
    mapping.update({n: gpus, X: message})
    return expr.subs(mapping, simultaneous=True)


def hierarchical_time(collective: str, intra: str = "ring", inter: str = "ring") -> Expr:
    """Seconds for a two-level collective over n_n nodes of n_g GPUs, X the whole message.

    Each GPU's NIC is one rail: the inter-node level moves the GPU's 1/n_g share.
    all-reduce = intra reduce-scatter + inter all-reduce of X/n_g + intra all-gather;
    all-gather = inter all-gather of X/n_g + intra all-gather of X (reduce-scatter mirrors it);
    all-to-all = intra exchange of the node-local X/n_n + inter exchange of X across nodes;
    send/recv crosses one NIC.
    """
    g, nodes = S.n_g, S.n_n
    if collective == "all_reduce":
        return (_level(time("reduce_scatter", "ring"), g, X, False)
                + _level(time("all_reduce", inter), nodes, X / g, True)
                + _level(time("all_gather", "ring"), g, X, False))
    if collective in ("all_gather", "reduce_scatter"):
        return _level(time(collective, inter), nodes, X / g, True) + _level(time(collective, intra), g, X, False)
    if collective == "all_to_all":
        return _level(time(collective, intra), g, X / nodes, False) + _level(time(collective, inter), nodes, X, True)
    if collective == "send_recv":
        return _level(time(collective, "direct"), 2, X, True)
    raise PerfmodelError(f"collective: unknown collective {collective!r} (known: {', '.join(COLLECTIVES)})")


FIT_PARAMETERS = ("t_c", "alpha_c", "e_c", "X_ch", "p_c")


@dataclass(frozen=True)
class Fabric:
    """One accelerator's links and collective parameters, carried by its ``Accelerator``
    (``perfmodel.hardware.collective_fit.fabric_for`` builds it from the stored fit).

    ``parameters[(collective, algorithm)][gpus]``: ``{t_c, alpha_c, e_c, X_ch, p_c}``, with
    ``gpus = 0`` for a fit over all GPU counts; ``inter_node``: the same five for the
    scale-out level (``t_o, alpha_o, e_o, X_oh, p_o`` in that order); ``sources`` says
    where each came from."""

    scale_up_bytes_per_s: float
    domain_gpus: int
    scale_out_bytes_per_s: float | None
    parameters: dict
    inter_node: tuple[float, float, float, float, float] | None
    sources: dict

    def algorithms(self, collective: str, gpus: int, custom: bool = False) -> dict:
        """{algorithm: parameter dict} fitted for ``collective`` on ``gpus`` GPUs; the
        all-reduce is NCCL's choice (ring or NVLink SHARP), or also the engines' custom
        one-/two-shot kernel when ``custom``."""
        out = {}
        for (coll, alg), by_gpus in self.parameters.items():
            if coll != collective or (alg == "custom" and not custom):
                continue
            theta = by_gpus.get(gpus, by_gpus.get(0))
            if theta is not None:
                out[alg] = theta
        if not out:
            raise PerfmodelError(f"collective: no fitted {collective} on {gpus} GPUs of this part")
        return out

    def seconds(self, collective: str, n_g: int, n_n: int, message_bytes: float, *, custom: bool = False) -> float:
        """One collective over ``n_n`` nodes of ``n_g`` GPUs (one level when either is 1)."""
        if n_g * n_n == 1 or message_bytes <= 0:
            return 0.0
        if n_n == 1:
            if n_g > self.domain_gpus:
                raise PerfmodelError(f"collective: {n_g} GPUs exceed the {self.domain_gpus}-GPU scale-up domain")
            return min(_single(collective, alg)(*(theta[p] for p in FIT_PARAMETERS), n_g, message_bytes,
                                                self.scale_up_bytes_per_s)
                       for alg, theta in self.algorithms(collective, n_g, custom).items())
        if self.scale_out_bytes_per_s is None or self.inter_node is None:
            raise PerfmodelError("collective: this part has no scale-out NIC in hardware/data/links.csv")
        intra = self.algorithms("all_gather" if collective == "send_recv" else collective, max(n_g, 2))
        theta = next(iter(intra.values())) if collective != "all_reduce" else self.algorithms("reduce_scatter", max(n_g, 2))["ring"]
        args = [*(theta[p] for p in FIT_PARAMETERS), *self.inter_node, n_g, n_n, message_bytes,
                self.scale_up_bytes_per_s, self.scale_out_bytes_per_s]
        return float(_hierarchical(collective, n_g == 1)(*args))


_ARGS = (S.t_c, S.alpha_c, S.e_c, S.X_ch, S.p_c)
_INTER_ARGS = (S.t_o, S.alpha_o, S.e_o, S.X_oh, S.p_o)


def _lambdify(expr, args):
    from sympy import lambdify

    return lambdify(args, expr, modules="math")


_CACHE: dict = {}


def _single(collective: str, alg: str):
    key = ("single", collective, alg)
    if key not in _CACHE:
        _CACHE[key] = _lambdify(time(collective, alg), (*_ARGS, n, X, S.BW_u))
    return _CACHE[key]


def _hierarchical(collective: str, one_per_node: bool):
    """Two levels (:func:`hierarchical_time`); with one GPU of the group per node, the
    inter-node level alone (each GPU's own NIC)."""
    key = ("hier", collective, one_per_node)
    if key not in _CACHE:
        if one_per_node:
            alg = "direct" if collective == "send_recv" else "pairwise" if collective == "all_to_all" else "ring"
            expr = _level(time(collective, alg), S.n_n, X, True)
        else:
            alg = "pairwise" if collective == "all_to_all" else "ring"
            expr = hierarchical_time(collective, alg, alg)
        _CACHE[key] = _lambdify(expr, (*_ARGS, *_INTER_ARGS, S.n_g, S.n_n, X, S.BW_u, S.BW_o))
    return _CACHE[key]
