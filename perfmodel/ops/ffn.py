"""Feed-forward blocks: dense (plain or gated) and mixture-of-experts.

MoE FLOPs count the top-k experts each token runs. MoE weight bytes count the
experts a step actually touches: with ``b·s`` tokens each routed uniformly to ``k``
of ``E`` experts, the expected number of distinct experts read is
``E·(1 − (1 − k/E)^(b·s))`` — about ``k`` at batch 1 in decode, all ``E`` in prefill.
"""

from __future__ import annotations

from sympy import Expr, Mul

from perfmodel import symbols as S
from perfmodel.architecture import FFN, MoE
from perfmodel.ops.base import ELEMENTWISE_FLOPS, ZERO, Block, Site, elementwise, linear, tokens


def mlp(
    site: Site,
    prefix: str,
    width: Expr,
    *,
    gated: bool,
    activation: str,
    bias: bool = False,
    fused: bool = False,
    block: str = "ffn",
    save_input: bool = True,
) -> Block:
    """``down(act(gate(x)) · up(x))`` if gated, else ``down(act(up(x)))``.

    ``save_input``: False when another op reading the same ``x`` (the MoE router) keeps it.
    """
    if gated and fused:
        out = linear(site, f"{prefix}.gate_up_proj", S.d, 2 * width, block, bias=bias, save_input=save_input)
    elif gated:
        out = linear(site, f"{prefix}.gate_proj", S.d, width, block, bias=bias, save_input=save_input) + linear(
            site, f"{prefix}.up_proj", S.d, width, block, bias=bias, save_input=False
        )
    else:
        out = linear(site, f"{prefix}.up_proj", S.d, width, block, bias=bias, save_input=save_input)
    elements = tokens() * width
    act_cost = ELEMENTWISE_FLOPS[activation] + (ELEMENTWISE_FLOPS["add"] if gated else 0)
    inputs = 2 if gated else 1
    act = elementwise(site, f"{prefix}.act", elements, act_cost, inputs=inputs, saved=inputs * elements * S.B_a)
    return out + Block((), (act,)) + linear(site, f"{prefix}.down_proj", width, S.d, block, bias=bias)


def dense_block(site: Site, ffn: FFN) -> Block:
    return mlp(
        site,
        "ffn",
        S.d_ff,
        gated=ffn.gated,
        activation=ffn.activation,
        bias=ffn.bias,
        fused=ffn.fused_gate_up,
    )


def experts_touched() -> Expr:
    """Expected distinct routed experts read by ``b·s`` uniformly routed tokens."""
    return S.E * (1 - (1 - S.k / S.E) ** (S.b * S.s))


def _experts_linear(site: Site, name: str, n_in: Expr, n_out: Expr, bias: bool) -> Block:
    """One projection of the routed experts, stacked ``[E, n_out, n_in]`` (and ``[E, n_out]``
    biases): ``b·s·k`` rows run it as a grouped GEMM, one group per expert the step touches
    (``b·s·k`` over the experts touched rows each, uniform routing); its weights are read for
    those experts."""
    routed = tokens() * S.k
    shapes = {"weight": (n_out, n_in), "bias": (n_out,)} if bias else {"weight": (n_out, n_in)}
    tensors = tuple(site.tensor(f"{name}.{part}", (S.E, *shape), "moe", routed=True) for part, shape in shapes.items())
    per_expert = sum((Mul(*shape) for shape in shapes.values()), ZERO)
    op = site.op(
        name,
        matmul_flops=2 * routed * n_in * n_out,
        vector_flops=routed * n_out * ELEMENTWISE_FLOPS["add"] if bias else ZERO,
        weight_bytes=experts_touched() * per_expert * S.B_w,
        act_read_bytes=routed * n_in * S.B_a,
        act_write_bytes=routed * n_out * S.B_a,
        saved_bytes=routed * n_in * S.B_a,
        gemm=(routed, n_out, n_in, experts_touched()),
    )
    return Block(tensors, (op,))


def moe_block(site: Site, moe: MoE) -> Block:
    """Router, the top-k routed experts, their weighted combination, shared experts."""
    routed = tokens() * S.k
    up_width = 2 * S.d_e if moe.gated else S.d_e
    up_name = "moe.experts.gate_up_proj" if moe.gated else "moe.experts.up_proj"
    up = _experts_linear(site, up_name, S.d, up_width, moe.expert_bias)
    inputs = 2 if moe.gated else 1
    act = elementwise(
        site,
        "moe.experts.act",
        routed * S.d_e,
        ELEMENTWISE_FLOPS[moe.activation] + (ELEMENTWISE_FLOPS["add"] if moe.gated else 0),
        inputs=inputs,
        saved=inputs * routed * S.d_e * S.B_a,
    )
    down = _experts_linear(site, "moe.experts.down_proj", S.d_e, S.d, moe.expert_bias)
    combine = site.op(
        "moe.combine",
        vector_flops=2 * routed * S.d,
        act_read_bytes=routed * S.d * S.B_a,
        act_write_bytes=tokens() * S.d * S.B_a,
    )
    block = linear(site, "moe.router", S.d, S.E, "moe", bias=moe.router_bias)
    block += Block((), (elementwise(site, "moe.topk", tokens() * S.E, ELEMENTWISE_FLOPS["softmax"]),))
    block += up + Block((), (act,)) + down + Block((), (combine,))
    if moe.n_shared_experts:
        block += mlp(
            site,
            "moe.shared",
            S.E_s * S.d_se,
            gated=moe.gated,
            activation=moe.activation,
            bias=moe.shared_expert_bias,
            block="moe",
            save_input=False,
        )
        if moe.shared_expert_gate:
            block += linear(site, "moe.shared_gate", S.d, 1, "moe", save_input=False)
            block += Block((), (elementwise(site, "moe.shared_gate.mul", tokens() * S.d, ELEMENTWISE_FLOPS["add"], inputs=2),))
    return block
