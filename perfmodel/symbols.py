"""Every symbol the formulas use, made once, each with a description and unit.

Counts are positive integers; the context ``t`` may be zero; bytes per element are
positive rationals (int4 is 1/2). No other module creates a ``Symbol``.
"""

from __future__ import annotations

from dataclasses import dataclass

from sympy import Symbol


@dataclass(frozen=True)
class Dim:
    """A named symbol with what it means and its unit."""

    symbol: Symbol
    description: str
    unit: str


REGISTRY: dict[str, Dim] = {}


def dim(name: str, description: str, unit: str, *, integer: bool = True, zero: bool = False) -> Symbol:
    """Create and register a symbol; a second definition of the same name raises."""
    if name in REGISTRY:
        raise ValueError(f"symbol {name!r} is defined twice")
    assumptions = {"integer": True} if integer else {"rational": True}
    assumptions.update({"nonnegative": True} if zero else {"positive": True})
    symbol = Symbol(name, **assumptions)
    REGISTRY[name] = Dim(symbol, description, unit)
    return symbol


def describe(symbol: Symbol) -> Dim:
    """The registered description of ``symbol``."""
    return REGISTRY[symbol.name]


# --- the step being modelled -------------------------------------------------------
b = dim("b", "batch size", "sequences")
s = dim("s", "new tokens per sequence in this step (prompt length in prefill, 1 in decode)", "tokens")
t = dim("t", "cached context tokens per sequence before this step", "tokens", zero=True)
s_enc = dim("s_enc", "source tokens per sequence the encoder reads (encoder-decoder models)", "tokens")

# --- bytes per element ---------------------------------------------------------------
B_w = dim("B_w", "bytes per weight element", "bytes", integer=False)
B_a = dim("B_a", "bytes per activation element", "bytes", integer=False)
B_kv = dim("B_kv", "bytes per KV-cache element", "bytes", integer=False)
B_e = dim("B_e", "bytes per element of the embedding table and LM head (16-bit under weight-only quantization)",
          "bytes", integer=False)

# --- model dimensions ----------------------------------------------------------------
V = dim("V", "vocabulary size", "tokens")
d = dim("d", "hidden size (d_model)", "elements")
P = dim("P", "learned absolute positions (max_position_embeddings)", "positions")
L = dim("L", "number of layers", "layers")
n_h = dim("n_h", "query heads per layer", "heads")
n_kv = dim("n_kv", "key/value heads per layer (n_h: MHA, 1: MQA, between: GQA)", "heads")
d_h = dim("d_h", "head dimension of queries and keys", "elements")
d_v = dim("d_v", "head dimension of values", "elements")
W = dim("W", "sliding-window size (keys a query sees, itself included)", "tokens")
d_ff = dim("d_ff", "dense FFN width (intermediate size)", "elements")

# --- encoder-decoder and encoder-only models ------------------------------------------
L_enc = dim("L_enc", "encoder layers of an encoder-decoder model (L counts its decoder layers)", "layers")
n_rb = dim("n_rb", "relative-position buckets of T5's learned attention bias", "buckets")

# --- mixture of experts ----------------------------------------------------------------
E = dim("E", "routed experts per MoE layer", "experts")
k = dim("k", "routed experts each token is sent to (top-k)", "experts")
d_e = dim("d_e", "routed expert FFN width", "elements")
E_s = dim("E_s", "shared experts per MoE layer (always active)", "experts")
d_se = dim("d_se", "shared expert FFN width", "elements")

# --- multi-head latent attention (DeepSeek-V2/V3) ------------------------------------
r_q = dim("r_q", "MLA query low-rank dimension (q_lora_rank)", "elements")
r_kv = dim("r_kv", "MLA key/value latent dimension d_c (kv_lora_rank)", "elements")
d_nope = dim("d_nope", "MLA per-head query/key dimension without RoPE", "elements")
d_rope = dim("d_rope", "MLA per-head decoupled RoPE dimension d_h^R (key part shared by all heads)", "elements")

# --- the cost model: an operator's counts and the accelerator's terms ------------------
M_g = dim("M", "GEMM rows (tokens, or query rows of a batched attention GEMM)", "rows", integer=False)
N_g = dim("N", "GEMM output columns (keys per query for QK^T)", "columns", integer=False)
K_g = dim("K", "GEMM reduction length", "elements", integer=False)
G_g = dim("G", "groups of a grouped GEMM sharing its M rows (routed experts that receive tokens; 1: a plain GEMM)",
          "groups", integer=False)
F_m = dim("F", "the operator's matrix-product FLOPs", "FLOPs", integer=False, zero=True)
F_v = dim("F_v", "the operator's elementwise FLOPs", "FLOPs", integer=False, zero=True)
N_x = dim("N_x", "exponentials the operator evaluates", "exps", integer=False, zero=True)
X_w = dim("X_w", "weight bytes the operator reads", "bytes", integer=False, zero=True)
X_o = dim("X_o", "activation and KV-cache bytes the operator reads and writes", "bytes", integer=False, zero=True)
R = dim("R", "dense peak matrix rate of the GEMM dtype", "FLOP/s", integer=False)
R_a = dim("R_a", "dense peak matrix rate of fused attention's dtype (16 bit in FP8 builds unless FP8 attention)",
          "FLOP/s", integer=False)
R_v = dim("R_v", "elementwise (vector) rate", "FLOP/s", integer=False)
R_x = dim("R_x", "exponential rate of the special-function units: SMs x exp/clock/SM x clock", "exp/s", integer=False)
BW = dim("BW", "nominal memory bandwidth", "bytes/s", integer=False)
n_sm = dim("n_sm", "streaming multiprocessors (compute units)", "SMs")
T_n = dim("T_n", "GEMM tile width in N", "columns")
T_lo = dim("T_lo", "smallest GEMM tile height in M", "rows")
T_hi = dim("T_hi", "largest GEMM tile height in M", "rows")
e_g = dim("e_g", "achievable fraction of the matrix peak for large GEMMs (plateau)", "fraction", integer=False)
K_h = dim("K_h", "reduction length at which a GEMM tile reaches half its plateau rate", "elements", integer=False)
e_w = dim("e_w", "achieved fraction of bandwidth while a GEMM streams its weights", "fraction", integer=False)
e_m = dim("e_m", "achieved fraction of bandwidth of memory-bound kernels (plateau)", "fraction", integer=False)
X_h = dim("X_h", "bytes a kernel moves at half its plateau bandwidth (small transfers)", "bytes", integer=False)
e_a = dim("e_a", "achievable fraction of the matrix peak inside attention at long sequences", "fraction", integer=False)
o_x = dim("o_x", "fraction of the softmax time hidden under attention's matrix products (FA3 overlaps, FA2 does not)",
          "fraction", integer=False, zero=True)
f_b = dim("f_b", "attention backward's matrix plateau as a fraction of the forward's", "fraction", integer=False)
k_h = dim("k_h", "keys per query at which attention reaches half its plateau rate", "keys", integer=False)
c_q = dim("c_q", "vector operations to dequantize one weight element, once per M-tile (0: weights in the compute dtype)",
          "ops", integer=False, zero=True)
t_k = dim("t_k", "fixed time per kernel (launch gap, prologue, tail)", "s", integer=False)
t_g = dim("t_g", "engine time between two kernels of a step (launch latency, synchronisation, drain)", "s", integer=False)
t_l = dim("t_l", "host time to launch one kernel without CUDA graphs", "s", integer=False)
eta_t = dim("eta_t", "fraction of the kernels' compute rates (R, R_a, R_v, R_x) a multi-GPU training step sustains",
            "fraction", integer=False)

# --- collectives (issue 12): one collective call over one level of links ----------------
n_c = dim("n_c", "GPUs taking part in one collective", "GPUs")
X_c = dim("X_c", "message bytes of a collective (nccl-tests size: all-reduce buffer, gathered output, "
          "all-to-all send buffer, send/recv payload)", "bytes", integer=False)
BW_u = dim("BW_u", "scale-up link bandwidth per GPU per direction (NVLink, Infinity Fabric, PCIe)",
           "bytes/s", integer=False)
t_c = dim("t_c", "fixed time per collective call (launch, synchronisation)", "s", integer=False)
alpha_c = dim("alpha_c", "latency per algorithm step (one hop) of a collective", "s", integer=False)
e_c = dim("e_c", "achievable fraction of link bandwidth for large collective messages (plateau)", "fraction",
          integer=False)
X_ch = dim("X_ch", "collective message bytes at which the bandwidth reaches half its plateau", "bytes",
           integer=False)
p_c = dim("p_c", "steepness of a collective's bandwidth ramp with message size (1: alpha-beta)", "1",
          integer=False)
# the second level of a hierarchical collective: nodes joined by each GPU's scale-out NIC
n_n = dim("n_n", "nodes taking part in a hierarchical collective", "nodes")
n_g = dim("n_g", "GPUs per node taking part in a hierarchical collective", "GPUs")
BW_o = dim("BW_o", "scale-out NIC bandwidth per GPU per direction (InfiniBand, RoCE)", "bytes/s", integer=False)
t_o = dim("t_o", "fixed time per inter-node collective call", "s", integer=False)
alpha_o = dim("alpha_o", "latency per inter-node algorithm step (one network hop)", "s", integer=False)
e_o = dim("e_o", "achievable fraction of NIC bandwidth for large messages (plateau)", "fraction", integer=False)
X_oh = dim("X_oh", "inter-node message bytes at which the bandwidth reaches half its plateau", "bytes",
           integer=False)
p_o = dim("p_o", "steepness of the inter-node bandwidth ramp with message size", "1", integer=False)

_LAYER_COUNTS: dict[str, Symbol] = {}


def layer_count(label: str) -> Symbol:
    """The symbol ``L_<label>``: how many layers are of one kind (``L_moe``, ``L_swa``)."""
    if label not in _LAYER_COUNTS:
        _LAYER_COUNTS[label] = dim(f"L_{label}", f"number of layers of kind '{label}'", "layers")
    return _LAYER_COUNTS[label]
