"""The perfmodel command line: each command parses, calls the library, renders.

Library errors become one ``error:`` line on stderr and exit status 2. Nothing here
imports torch except ``validate`` and ``hardware measure``.
"""

from __future__ import annotations

import functools
import sys
from contextvars import ContextVar
from pathlib import Path

import click

from perfmodel.errors import PerfmodelError, warn
from perfmodel.units import DTYPES, parse_count

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
SIZE_HELP = "plain integer or k/m suffix, 1k = 1024 (128k = 131072)"


class Count(click.ParamType):
    """A token or batch count: ``4096``, ``32k`` (= 32768) or ``1m``."""

    name = "count"

    def __init__(self, minimum: int = 1):
        self.minimum = minimum

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        try:
            flag = next((o for o in param.opts if o.startswith("--")), f"--{param.name}") if param else "count"
            return parse_count(value, flag, self.minimum)
        except PerfmodelError as exc:
            self.fail(str(exc), param, ctx)


#: True while ``batch`` runs one of its rows: the command hands its frame back unprinted
CAPTURE = ContextVar("perfmodel_capture", default=False)
#: --output extension -> the format written when --format is not given
FORMAT_OF_SUFFIX = {".csv": "csv", ".json": "json", ".md": "markdown", ".markdown": "markdown", ".tex": "latex", ".txt": "table"}
#: parameters naming files a command reads; --output and --plot must not overwrite them
INPUT_PARAMS = {"model": "--model", "models": "--model", "gpu": "--gpu", "measured": "--measured", "fit_path": "--fit", "input_file": "--input"}
PLOT_SUFFIXES = (".png", ".svg", ".pdf")


EFFICIENCY = click.FloatRange(0, 1, min_open=True)


def output_options(fn=None, *, flag: str = "--output"):
    """``--format`` and ``--output``, shared by every command that prints a table
    (``flag``: another name for ``--output`` where that one means something else);
    files are checked before any work and written atomically."""

    def decorate(fn):
        @click.option("--format", "fmt", type=click.Choice(["table", "csv", "json", "markdown", "latex"]), help="output format (default: from the output file's extension, .csv .json .md .tex, else table)")
        @click.option(flag, "output", type=click.Path(dir_okay=False, path_type=Path), help="write to FILE instead of stdout (atomically: an existing FILE is replaced only once the whole table is written)")
        @click.option("--columns", help="only these columns, comma-separated, in this order (any format)")
        @click.option("--wide", is_flag=True, help="the table with every column and full cells (default on a terminal: fitted to 120 columns)")
        @functools.wraps(fn)
        def wrapper(*args, fmt, output, columns, wide, **kwargs):
            check_files(click.get_current_context().params, flag)
            frame = fn(*args, **kwargs)
            if columns:
                from perfmodel.export import select

                frame = select(frame, columns)
            if CAPTURE.get():
                from perfmodel.rows import Rows

                return frame.frame() if isinstance(frame, Rows) else frame
            fmt = fmt or (FORMAT_OF_SUFFIX.get(output.suffix.lower(), "table") if output else "table")
            emit(frame, fmt, output, compact=not wide and not columns and output is None)

        return wrapper

    return decorate(fn) if fn is not None else decorate


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.is_dir():
            a = a / "config.json"
        if a.exists() and b.exists():
            return a.samefile(b)
        return a.resolve() == b.resolve()
    except OSError:
        return False


def check_files(params: dict, flag: str = "--output") -> None:
    """Before any work: the output file (``flag``) and --plot go to existing folders,
    --plot has a chart extension, and neither overwrites an input file nor each other."""
    from perfmodel.files import check_writable

    output, plot, save, refit = (params.get(k) for k in ("output", "plot", "save", "refit"))
    inputs = [(name, Path(v)) for name in INPUT_PARAMS for v in _as_tuple(params.get(name)) if isinstance(v, (str, Path)) and str(v).strip()]
    if plot is not None and plot.suffix.lower() not in PLOT_SUFFIXES:
        raise PerfmodelError(f"plot {str(plot)!r}: name must end in {', '.join(PLOT_SUFFIXES)}")
    if save is not None and save.suffix.lower() not in (".json", ".yaml", ".yml"):
        raise PerfmodelError(f"accelerator file {str(save)!r}: name must end in .json, .yaml or .yml")
    for option, target in ((flag, output), ("--plot", plot), ("--save", save), ("--refit", refit)):
        if target is None:
            continue
        check_writable(target, option)
        for name, path in inputs:
            if _same_file(path, target):
                raise PerfmodelError(f"{option} {str(target)!r} is the {INPUT_PARAMS[name]} file; choose another name")
    if output is not None and plot is not None and _same_file(output, plot):
        raise PerfmodelError(f"--plot {str(plot)!r} is the {flag} file; choose another name")


def _as_tuple(value) -> tuple:
    return value if isinstance(value, tuple) else (value,)


def emit(frame, fmt: str, output: Path | None, compact: bool = False) -> None:
    from perfmodel.export import compact as fitted, render

    text = fitted(frame) if compact and fmt == "table" else render(frame, fmt)
    if compact and fmt == "table" and "summary" in frame.attrs:
        text = f"summary ({len(frame)} rows; --by KEYS for other groups)\n{fitted(frame.attrs['summary'])}\n\n{text}"
    if output is None:
        click.echo(text)
    else:
        from perfmodel.files import write_text

        write_text(output, text + "\n")


def parse_sets(pairs: tuple[str, ...]) -> dict:
    from perfmodel.hf_config import parse_value

    out = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise PerfmodelError(f"--set {pair!r}: expected KEY=VALUE")
        out[key.strip()] = parse_value(text)
    return out


def model_option(fn):
    @click.option("--model", "model", required=True, help="preset name (see `perfmodel models`) or path to a config.json")
    @click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="override a config field before validation (repeatable)")
    @functools.wraps(fn)
    def wrapper(*args, model, sets, **kwargs):
        from perfmodel.presets import load_model

        return fn(*args, arch=load_model(model, parse_sets(sets)), **kwargs)

    return wrapper


def dtype_options(fn):
    for name, what in (("kv-dtype", "KV cache"), ("act-dtype", "activations and matmul compute"), ("weight-dtype", "weights")):
        fn = click.option(f"--{name}", type=click.Choice(DTYPES), default="bf16", show_default=True, help=f"dtype of {what}")(fn)
    return fn


SOURCE_HELP = f"encoder-decoder models (T5, BART): source tokens the encoder reads ({SIZE_HELP}; default 512, or the learned positions)"


def step_options(fn):
    fn = click.option("--source-len", type=Count(), help=SOURCE_HELP)(fn)
    fn = click.option("--context", type=Count(0), help=f"cached tokens per sequence before this step ({SIZE_HELP}; default 2048 for decode, 0 otherwise)")(fn)
    fn = click.option("--seq", type=Count(), help=f"new tokens per sequence ({SIZE_HELP}; default 2048 for prefill/train, 1 for decode)")(fn)
    fn = click.option("--batch", type=Count(), default=1, show_default=True, help=f"sequences ({SIZE_HELP})")(fn)
    return fn


def impl_options(fn):
    fn = click.option("--dropout/--no-dropout", default=False, help="training keeps dropout masks (GPT-3 style)")(fn)
    fn = click.option("--optimizer", type=click.Choice(["mixed", "megatron-bf16", "megatron-fp16", "fp32"]), default="mixed", show_default=True, help="training recipe: bytes per parameter for gradients and optimizer states")(fn)
    fn = click.option("--recompute", type=click.Choice(["none", "selective", "full"]), default="none", show_default=True, help="activation recomputation in training")(fn)
    fn = click.option("--mla", type=click.Choice(["auto", "absorbed", "expand", "naive"]), default="auto", show_default=True, help="MLA form: absorbed or expand (latent cache), naive (expanded K/V cached); auto = absorbed for decode, expand otherwise")(fn)
    fn = click.option("--causal-count", type=click.Choice(["exact", "half"]), default="exact", show_default=True, help="causal pairs: exact s(s+1)/2, or the FlashAttention papers' s²/2")(fn)
    fn = click.option("--mask", type=click.Choice(["causal", "none"]), default="causal", show_default=True, help="none: every query sees every key (what FlopCounterMode counts)")(fn)
    fn = click.option("--attention-impl", type=click.Choice(["fused", "naive"]), default="fused", show_default=True, help="fused (FlashAttention) or naive (scores written to memory)")(fn)
    return fn


def gpu_option(required: bool):
    def decorate(fn):
        fn = click.option("--bandwidth-efficiency", type=EFFICIENCY, help="achievable fraction of memory bandwidth, in (0, 1] (default: the catalog's)")(fn)
        fn = click.option("--compute-efficiency", type=EFFICIENCY, help="achievable fraction of the compute peak, in (0, 1] (default: the catalog's)")(fn)
        return click.option("--gpu", required=required, help="catalog name or alias (`perfmodel hardware list`) or a JSON/YAML accelerator file")(fn)

    return decorate


def parallel_options(fn):
    """--tp --pp --dp --ep --cp --gpus: the parallel layout (all 1: one GPU)."""
    for name, what in (("gpus", "total GPUs (default: tp*pp*cp*dp; checked against it)"),
                       ("cp", "context-parallel size"), ("ep", "expert-parallel size (divides dp*cp)"),
                       ("dp", "data-parallel replicas (inference: the batch is split over them)"),
                       ("pp", "pipeline stages"), ("tp", "tensor-parallel size")):
        fn = click.option(f"--{name}", type=click.IntRange(1), default=None if name == "gpus" else 1,
                          show_default=name != "gpus", help=what)(fn)
    return fn


def pipeline_split_options(fn):
    """Megatron-Core's uneven pipeline split (perfmodel.layout.Layout)."""
    fn = click.option("--loss-in-split", "loss_in_split", is_flag=True, help="count the LM head and loss as one layer of the pipeline split (Megatron account_for_loss_in_pipeline_split)")(fn)
    fn = click.option("--embedding-in-split", "embedding_in_split", is_flag=True, help="count the embedding as one layer of the pipeline split (Megatron account_for_embedding_in_pipeline_split)")(fn)
    fn = click.option("--last-stage-layers", "last_stage_layers", type=click.IntRange(0), help="decoder layers on the last pipeline rank (Megatron num_layers_in_last_pipeline_stage; the rest split evenly)")(fn)
    return click.option("--first-stage-layers", "first_stage_layers", type=click.IntRange(0), help="decoder layers on the first pipeline rank (Megatron num_layers_in_first_pipeline_stage)")(fn)


def layout_from(kw: dict, *, zero: int | None = None, training: bool = False):
    """Pop the parallel options; a Layout, or None for one GPU. Training layouts default
    to ZeRO 1 and sequence parallelism when tp > 1 (as `train`); --zero needs a layout."""
    from perfmodel.layout import Layout

    sizes = {k: kw.pop(k) for k in ("tp", "pp", "dp", "ep", "cp", "gpus")}
    if all(sizes[k] == 1 for k in ("tp", "pp", "dp", "ep", "cp")) and sizes["gpus"] in (None, 1):
        if zero is not None:
            raise PerfmodelError("--zero: shards model states over data-parallel ranks; give a layout (--dp, --gpus, ...)")
        return None
    if not training:
        if zero is not None:
            raise PerfmodelError("--zero: only a training step has gradients and optimizer states (--phase train)")
        return Layout(**sizes)
    return Layout(**sizes, zero=1 if zero is None else zero, sequence_parallel=sizes["tp"] > 1)


def scenario(arch, phase, *, batch=1, seq=None, context=None, source_len=None, gpu=None, compute_efficiency=None, bandwidth_efficiency=None, weight_dtype="bf16", act_dtype="bf16", kv_dtype="bf16", **options):
    """The library Scenario for these command-line choices."""
    from perfmodel.options import Options
    from perfmodel.roofline import Efficiency
    from perfmodel.scenario import Scenario

    accelerator = efficiency = None
    if gpu is not None:
        from perfmodel.hardware.catalog import get_accelerator

        accelerator = get_accelerator(gpu)
        default = Efficiency.catalog_default(accelerator)
        efficiency = Efficiency(
            default.compute if compute_efficiency is None else compute_efficiency,
            default.bandwidth if bandwidth_efficiency is None else bandwidth_efficiency,
        )
    return Scenario(
        arch,
        Options(phase=phase, **options),
        batch=batch,
        seq=seq,
        context=context,
        weight_dtype=weight_dtype,
        act_dtype=act_dtype,
        kv_dtype=kv_dtype,
        accelerator=accelerator,
        efficiency=efficiency,
        source=source_len,
    )


@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(package_name="perfmodel")
def cli():
    """perfmodel: parameters, KV cache, FLOPs, memory and roofline time of transformer
    language models, from formulas you can print.

    Sizes take k/m suffixes where 1k = 1024 tokens (128k = 131072). Rates are decimal
    (TFLOP/s, GB/s); memory columns are bytes, *_gib columns binary GiB.
    """
    route_warnings()


_WARNINGS: list[str] = []


def route_warnings() -> None:
    """Collect library warnings (does not fit, beyond the trained context); a command
    that succeeds prints each once as a ``warning:`` line on stderr, one that fails
    prints only its error. Other warnings go where they went before."""
    import warnings

    from perfmodel.errors import PerfmodelWarning

    _WARNINGS.clear()
    current = warnings.showwarning
    original = getattr(current, "routed_from", current)  # installed once, never stacked

    def show(message, category, *args, **kwargs):
        if not issubclass(category, PerfmodelWarning):
            return original(message, category, *args, **kwargs)
        text = " ".join(str(message).split())
        if text not in _WARNINGS:
            _WARNINGS.append(text)

    show.routed_from = original
    warnings.showwarning = show
    warnings.simplefilter("always", PerfmodelWarning)


@cli.result_callback()
def print_warnings(*args, **kwargs) -> None:
    for text in _WARNINGS:
        _say(f"warning: {text}")
    _WARNINGS.clear()


HARDWARE_VIEW = ("name", "key", "memory_gib", "memory_bandwidth_bytes_per_s", "peak_flops_per_s_bf16",
                 "peak_flops_per_s_fp8", "ridge_point_flop_per_byte_bf16", "interconnect_bytes_per_s")


def viewed(frame, *columns):
    """``frame`` with the columns its compact terminal view shows first."""
    frame.attrs["view"] = [c for c in columns if c in frame.columns]
    return frame


def with_fits(frame, sc):
    """``frame`` with the step's memory, capacity and ``fits`` on every row; a warning
    on stderr when it does not fit."""
    from perfmodel.fits import warn_unless_fits

    for column, value in warn_unless_fits(sc).items():
        frame[column] = value
    return frame


@cli.command()
@output_options
def models():
    """List the shipped presets (real config.json files) and their sources."""
    from perfmodel.api import models as presets

    return viewed(presets(), "name", "family", "hf_repo", "total_params")


@cli.command()
@model_option
@output_options
def params(arch):
    """Exact parameter counts: total, embedding, non-embedding, active per token."""
    from perfmodel.api import params as count

    return count.rows(arch)


@cli.command()
@model_option
@output_options
def shapes(arch):
    """Every weight tensor with its shape, size and how many layers have it."""
    from perfmodel.api import shapes as table

    return table(arch)


@cli.command("kv-cache")
@model_option
@click.option("--context", type=Count(), required=True, help=f"tokens held per sequence ({SIZE_HELP})")
@click.option("--batch", type=Count(), default=1, show_default=True, help="sequences")
@click.option("--kv-dtype", type=click.Choice(DTYPES), default="bf16", show_default=True)
@click.option("--mla", type=click.Choice(["absorbed", "naive"]), default="absorbed", show_default=True, help="MLA cache: latent + RoPE key, or expanded K/V")
@click.option("--source-len", type=Count(), help=SOURCE_HELP)
@output_options
def kv_cache(arch, context, batch, kv_dtype, mla, source_len):
    """KV-cache bytes per token and for a batch at a context length.

    Encoder-decoder models also report the self-attention cache (grows with the
    target, --context) and the cross-attention cache (fixed by --source-len) apart."""
    from perfmodel.api import kv_cache as kv

    frame = kv.rows(scenario(arch, "prefill", batch=batch, seq=context, context=0, source_len=source_len, kv_dtype=kv_dtype, mla=mla))
    # here --context is the tokens held: the cache a prefill of that many builds
    return frame.drop(columns=["phase", "seq"]).assign(context=frame["tokens_cached"])


@cli.command()
@model_option
@click.option("--phase", type=click.Choice(["prefill", "decode", "train"]), default="prefill", show_default=True)
@click.option("--by", type=click.Choice(["total", "layer", "operator"]), default="total", show_default=True)
@step_options
@dtype_options
@impl_options
@output_options
def flops(arch, phase, by, **kw):
    """FLOPs, bytes moved and arithmetic intensity of one step."""
    from perfmodel.api import flops as count

    return count(scenario(arch, phase, **kw), by=by)


@cli.command()
@model_option
@click.option("--phase", type=click.Choice(["infer", "train"]), default="infer", show_default=True)
@click.option("--batch", type=Count(), default=1, show_default=True, help=f"sequences ({SIZE_HELP})")
@click.option("--context", type=Count(), help=f"infer: tokens held per sequence ({SIZE_HELP}; default 2048, or the learned positions)")
@click.option("--seq", type=Count(), help="infer: prefill chunk whose working set is counted (default: the whole context); train: tokens per sequence (default 2048)")
@click.option("--source-len", type=Count(), help=SOURCE_HELP)
@dtype_options
@impl_options
@gpu_option(required=False)
@parallel_options
@click.option("--zero", type=click.IntRange(0, 3), help="train on a layout: ZeRO stage (default 1, Megatron's distributed optimizer)")
@output_options
def memory(arch, phase, batch, context, seq, zero, **kw):
    """Memory: weights, KV cache, activations, gradients, optimizer states; fits a GPU?

    Inference: the KV cache of --context tokens per sequence, plus the largest working
    set of the prefill chunk that brings it there. Training: a step on --seq tokens.
    With a layout (--tp --pp --dp --ep --cp --gpus): one GPU's bytes (columns ending
    _per_gpu, the pipeline stage that needs the most) and fits per GPU; inference splits
    --batch over dp; training holds --batch sequences per micro-batch, as many micro-batches
    as 1F1B keeps in flight, model states sharded by --zero."""
    from perfmodel.api import memory_report

    layout = layout_from(kw, zero=zero, training=phase == "train")
    if phase == "train":
        if context:
            raise PerfmodelError("--context: a training step has no KV cache; use --seq")
        sc = scenario(arch, "train", batch=batch, seq=seq, **kw)
        return memory_report(sc) if layout is None else per_gpu_report(sc, layout)
    held = context or min(2048, arch.max_position_embeddings or 2048)
    chunk = seq or held
    if chunk > held:
        raise PerfmodelError(f"--seq {chunk} exceeds --context {held}: the chunk is part of the context")
    sc = scenario(arch, "prefill", batch=batch, seq=chunk, context=held - chunk, **kw)
    return memory_report(sc) if layout is None else per_gpu_report(sc, layout)


def per_gpu_report(sc, layout):
    """`memory` on a layout: the labels, the layout and one GPU's bytes."""
    import pandas as pd

    from perfmodel.per_gpu import layout_labels, memory_row

    labels = {"model": sc.arch.name, "phase": "train" if sc.options.training else "infer", "batch": sc.batch}
    labels.update({"seq": sc.seq_tokens} if sc.options.training else {"context": sc.tokens_seen, "chunk": sc.seq_tokens})
    extra = {"zero": layout.zero} if sc.options.training else {}
    return pd.DataFrame([{**labels, **layout_labels(layout), **extra, **memory_row(sc, layout)}])


@cli.command()
@model_option
@gpu_option(required=True)
@click.option("--phase", type=click.Choice(["prefill", "decode", "train"]), default="decode", show_default=True)
@click.option("--by", type=click.Choice(["total", "layer", "operator"]), default="operator", show_default=True)
@step_options
@dtype_options
@impl_options
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), help="also draw the roofline chart (PNG/SVG/PDF by extension)")
@parallel_options
@output_options
def roofline(arch, phase, by, plot, **kw):
    """Per-operator time = max(FLOPs/peak, bytes/bandwidth), and what bounds it.
    With a layout: one GPU of each pipeline stage, communication rows timed by the
    collective model."""
    from perfmodel.api import roofline_report as run

    layout = layout_from(kw)
    sc = scenario(arch, phase, **kw)
    if layout is not None:
        from perfmodel.parallel import roofline_report

        return roofline_report(sc, layout, by=by)
    frame = with_fits(run.rows(sc, by=by), sc)
    if by != "total":
        viewed(frame, "operator", "group", "layers", "time_s", "bound", "share_of_time", "flops", "bytes", "arithmetic_intensity", "expected_time_s")
    if plot:
        from perfmodel.plots import roofline_chart

        roofline_chart(sc, plot, frame=frame.frame() if by == "operator" else None)
    return frame


@cli.command()
@model_option
@gpu_option(required=True)
@click.option("--context", type=Count(0), help=f"cached tokens per sequence ({SIZE_HELP}; default 2048, as for every decode step, or what learned positions allow)")
@click.option("--seq", type=Count(), default=1, show_default=True, help="new tokens per sequence per step (1, or k speculated tokens)")
@click.option("--by", type=click.Choice(["total", "operator"]), default="total", show_default=True)
@dtype_options
@impl_options
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), help="also draw compute and memory time against the batch")
@output_options
def balance(arch, by, plot, **kw):
    """The decode batch at which compute time equals memory time."""
    from perfmodel.api import balance as solve

    sc = scenario(arch, "decode", **kw)
    frame = solve.rows(sc, by=by)
    if plot:
        from perfmodel.plots import balance_chart

        balance_chart(sc, plot)
    return frame


@cli.command()
@gpu_option(required=True)
@click.option("--batch", type=Count(), default=1, show_default=True)
@click.option("--heads", type=Count(), required=True, help="query heads")
@click.option("--kv-heads", type=Count(), help="key/value heads (default: --heads)")
@click.option("--head-dim", type=Count(), default=128, show_default=True)
@click.option("--seq-q", type=Count(), required=True, help=f"query tokens ({SIZE_HELP})")
@click.option("--seq-kv", type=Count(), help="key/value tokens (default: --seq-q)")
@click.option("--causal/--no-causal", default=True, show_default=True)
@click.option("--dtype", type=click.Choice(DTYPES), default="bf16", show_default=True)
@click.option("--pass", "pass_", type=click.Choice(["fwd", "bwd", "fwd_bwd"]), default="fwd", show_default=True)
@click.option("--causal-count", type=click.Choice(["half", "exact"]), default="half", show_default=True, help="FlashAttention papers' halving, or exact pairs")
@click.option("--attention-impl", type=click.Choice(["fused", "naive"]), default="fused", show_default=True)
@click.option("--window", type=Count(), help="sliding window (keys each query sees)")
@output_options
@click.option("--kernel", help="also the calibrated time for this kernel family (fa2, fa3, cudnn, flash-decoding, …; hardware/data/efficiency-fit.json)")
def attention(gpu, compute_efficiency, bandwidth_efficiency, kv_heads, seq_kv, attention_impl, kernel, **kw):
    """Predict one attention kernel call: FLOPs, bytes, time, TFLOP/s, bound."""
    from perfmodel.hardware.catalog import get_accelerator
    from perfmodel.api import attention_call

    frame = attention_call(
        get_accelerator(gpu),
        kv_heads=kv_heads or kw["heads"],
        seq_kv=seq_kv or kw["seq_q"],
        impl=attention_impl,
        compute_efficiency=compute_efficiency,
        bandwidth_efficiency=bandwidth_efficiency,
        **kw,
    )
    # the call's tensors (Q, K, V, O, and scores or gradients where it moves them) must
    # reside in memory: the bytes it moves are what it needs
    acc = get_accelerator(gpu)
    frame["memory_needed_bytes"] = frame["bytes"]
    frame["capacity_bytes"] = acc.memory_bytes
    frame["fits"] = frame["bytes"] <= acc.memory_bytes
    if not frame["fits"].iloc[0]:
        warn(f"this call moves {frame['bytes'].iloc[0] / 2**30:.4g} GiB but {acc.name} has {acc.memory_bytes / 2**30:.4g} GiB: "
             "its tensors do not fit (the time is what it would take if they did)")
    if kernel:
        from perfmodel.hardware.attention_fit import load_fit
        from perfmodel.hardware.attention_scoring import call_of
        from perfmodel.efficiency import calibrated

        row = frame.iloc[0].to_dict() | {"impl": attention_impl, "causal_count": kw["causal_count"], "window": kw["window"]}
        for column, value in calibrated(call_of(row), get_accelerator(gpu), kernel, load_fit()).items():
            frame[column] = [value]
    return frame


@cli.command()
@click.argument("quantity")
@model_option
@click.option("--phase", type=click.Choice(["prefill", "decode", "train"]), default="decode", show_default=True)
@step_options
@dtype_options
@impl_options
@gpu_option(required=False)
@click.option("--latex", "as_latex", is_flag=True, help="the expression as LaTeX")
@output_options
def formula(quantity, arch, phase, as_latex, **kw):
    """Print a quantity's formula, then its value for the model.

    QUANTITY: params, active-params, kv-cache, kv-cache-per-token, flops, matmul-flops,
    bytes, intensity, memory, weights-bytes, activation-bytes, time (needs --gpu), …"""
    from perfmodel.api import formula as show
    from perfmodel.quantities import lookup

    sc = scenario(arch, phase, **kw)
    frame = show(quantity, sc, as_latex=as_latex)
    return with_fits(frame, sc) if lookup(quantity).needs_gpu else frame


@cli.command()
@click.option("--model", "models", multiple=True, required=True, metavar="[LABEL=]MODEL[:KEY=VALUE,...]", help="a model to compare (repeatable): preset or config path, optional overrides after ':', optional row label before '='")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="override a config field of every model (repeatable; a model's own overrides win)")
@click.option("--gpu", required=True, help="catalog name or alias (`perfmodel hardware list`) or a JSON/YAML accelerator file")
@click.option("--context", type=Count(), default=2048, show_default=True, help=f"tokens held per sequence ({SIZE_HELP})")
@click.option("--batch", type=Count(), default=1, show_default=True, help="decode batch (sequences)")
@click.option("--prompt", type=Count(), help="prompt tokens for the prefill time (default: --context)")
@click.option("--source-len", type=Count(), help=f"encoder-decoder models only: source tokens the encoder reads ({SIZE_HELP}; default: the prompt, which they read as their source)")
@dtype_options
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), help="also draw a bar chart of --plot-column (PNG/SVG/PDF by extension)")
@click.option("--plot-column", default="decode_tokens_per_s", show_default=True, help="the column the bar chart shows")
@parallel_options
@output_options
def compare(models, sets, gpu, plot, plot_column, **kw):
    """Several models side by side on one GPU, one row per model.

    \b
    Each --model is [LABEL=]MODEL[:KEY=VALUE,...], e.g.
      --model llama-3-8b --model MHA=llama-3-8b:num_key_value_heads=32
      --model MQA=llama-3-8b:num_key_value_heads=1 --model deepseek-v2-lite
    The label (default: the spec as written) names the row in the `model` column.

    Per model: total and active parameters; KV cache per token and at --context;
    weights and total memory as `perfmodel memory --mla absorbed` reports them, whether
    they fit the GPU and the largest batch that does; prefill time of one prompt;
    decode step time and tokens/s at --batch; the balance batch. Columns ending
    `_vs_first` divide by the first model's value."""
    from perfmodel.hardware.catalog import get_accelerator
    from perfmodel.comparison import compare as side_by_side

    layout = layout_from(kw)
    acc = get_accelerator(gpu)
    frame = side_by_side(models, acc, overrides=parse_sets(sets), layout=layout, **kw)
    need = "total_bytes" if layout is None else "memory_per_gpu_bytes"
    for _, row in frame[~frame["fits"].astype(bool)].iterrows():
        warn(f"{row['model']} at batch {kw['batch']}, context {kw['context']} needs {row[need] / 2**30:.4g} GiB "
             f"{'' if layout is None else 'per GPU '}but {acc.name} has {acc.memory_bytes / 2**30:.4g} GiB: it does not "
             f"fit (times are what it would take if it did)")
    if plot:
        from perfmodel.plots import bar_chart

        title = (f"on {acc.name}: batch {kw['batch']}, context {kw['context']}; weights {kw['weight_dtype']}, "
                 f"activations {kw['act_dtype']}, KV {kw['kv_dtype']}")
        bar_chart(frame, plot_column, plot, label_column="model", title=title)
    return frame


@cli.command()
@model_option
@click.option("--gpu", help="catalog name or alias, or an accelerator file (needed for time quantities)")
@click.option("--phase", type=click.Choice(["prefill", "decode", "train"]), default="decode", show_default=True)
@click.option("--metric", default="time_s", show_default=True, help="a quantity: time_s, tokens_per_s, kv_cache_bytes, flops, arithmetic_intensity, total_bytes, … (as `formula` names them)")
@click.option("--batch", "batch", default="1", show_default=True, metavar="GRID", help="batch sizes")
@click.option("--context", "context", metavar="GRID", help="cached tokens (default: the phase's)")
@click.option("--seq", "seq", metavar="GRID", help="new tokens per sequence (default: the phase's)")
@click.option("--source-len", type=Count(), help=SOURCE_HELP)
@dtype_options
@impl_options
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), help="also draw the sweep (PNG/SVG/PDF by extension)")
@click.option("--plot-kind", type=click.Choice(["lines", "heatmap"]), default="lines", show_default=True, help="one line per batch, or a batch x tokens heatmap")
@parallel_options
@output_options
def sweep(arch, gpu, phase, metric, batch, context, seq, plot, plot_kind, **kw):
    """One quantity over a grid of batch x context (or seq), one row per point.

    \b
    GRID: 1,8,64 (a list); a..b (every integer); a..b:N (step N);
    a..b:xN (geometric: 1k..128k:x2 = 1k, 2k, 4k, ..., 128k); lists may mix
    these (1,2,4..64:x2). Counts take k/m suffixes, 1k = 1024. At most 10^7 points.
    Evaluated with numpy over the whole grid (the same expression `formula` prints).
    With a layout (--tp --pp --dp --ep --cp --gpus; prefill/decode): one GPU's value (the
    largest over the pipeline stages; --batch is split over dp) and fits per GPU;
    quantities of memory, parameters and FLOPs (times on a layout: `request`)."""
    from perfmodel.sweeps import sweep as run, swept_axis

    layout = layout_from(kw)
    sc = scenario(arch, phase, gpu=gpu, **kw)
    frame = run(sc, metric, batch=batch, seq=seq, context=context, layout=layout)
    if plot:
        from perfmodel.plots import sweep_chart

        name = frame["metric"].iloc[0]
        title = f"{arch.name} {phase}" + (f" on {sc.accelerator.name}" if sc.accelerator else "") + \
            f": weights {kw['weight_dtype']}, activations {kw['act_dtype']}, KV {kw['kv_dtype']}"
        sweep_chart(frame.rename(columns={"value": name}), name, plot, kind=plot_kind, x=swept_axis(frame), series="batch", title=title)
    return frame


@cli.group()
def hardware():
    """The accelerator catalog, and measuring this machine's device."""


@hardware.command("list")
@output_options
def hardware_list():
    """Every catalog accelerator with dense peaks, bandwidth and capacity."""
    from perfmodel.hardware.catalog import catalog_frame

    return viewed(catalog_frame(), *HARDWARE_VIEW)


@hardware.command("show")
@click.argument("gpu")
@output_options
def hardware_show(gpu):
    """One accelerator (catalog name, alias or file) with its sources."""
    from perfmodel.hardware.catalog import catalog_frame, get_accelerator

    return catalog_frame([get_accelerator(gpu)])


@hardware.command("measure")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), help="default: cuda if available")
@click.option("--quick", is_flag=True, help="smaller sizes, fewer trials")
@click.option("--save", type=click.Path(dir_okay=False, path_type=Path), help="save as an accelerator file usable with --gpu")
@output_options
def hardware_measure(device, quick, save):
    """Measure this device's matmul rates and memory bandwidth (imports torch)."""
    from perfmodel.hardware.catalog import catalog_frame
    from perfmodel.hardware.probes import measure_device, save_accelerator

    require_torch("hardware measure")
    acc = measure_device(device=device, quick=quick, progress=lambda msg: click.echo(msg, err=True))
    if save:
        save_accelerator(acc, save)
    return catalog_frame([acc])


def fusion_options(fn):
    fn = click.option("--fold-elementwise/--no-fold-elementwise", default=True, show_default=True, help="norms, activations, RoPE and residuals ride in neighbouring kernels (no launch of their own)")(fn)
    fn = click.option("--merge-projections/--no-merge-projections", default=True, show_default=True, help="projections reading one input (QKV, gate/up) run as one GEMM")(fn)
    fn = click.option("--cuda-graphs/--no-cuda-graphs", default=True, show_default=True, help="decode and prefill replayed without host launches (engines: TensorRT-LLM, vLLM, gpt-fast); off: eager PyTorch")(fn)
    return fn


@cli.command()
@model_option
@gpu_option(required=True)
@click.option("--batch", type=Count(), default=1, show_default=True, help=f"sequences run together ({SIZE_HELP})")
@click.option("--prompt", type=Count(), required=True, help=f"prompt tokens per sequence ({SIZE_HELP})")
@click.option("--output", "output_tokens", type=Count(), required=True, help=f"generated tokens per sequence, the first from the prefill ({SIZE_HELP})")
@dtype_options
@click.option("--weight-group-size", type=click.IntRange(1), help="int4/int8 weights: weights per fp16 scale (GPTQ/AWQ g128 = 128); default none")
@click.option("--embed-dtype", type=click.Choice(DTYPES), help="embedding table and LM head dtype (default: the weight dtype, or 16-bit under weight-only int4/int8/fp8 weights)")
@fusion_options
@parallel_options
@click.option("--by", type=click.Choice(["total", "step"]), default="total", show_default=True, help="step: one row per decode step")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), help="also draw each step's latency over the output (PNG/SVG/PDF)")
@output_options(flag="--output-file")
def request(arch, gpu, batch, prompt, output_tokens, by, plot, cuda_graphs, merge_projections, fold_elementwise,
            compute_efficiency, bandwidth_efficiency, **kw):
    """Latency of one batch of requests: prefill, then a decode step per output token.

    ttft_s (the prefill), tpot_s (mean decode step over the growing context), e2e_latency_s,
    output tokens/s (total and per user), from the calibrated cost model; the pure
    roofline (roofline_*) is the bound beside it; fits and memory_bytes say whether the
    weights and the final KV cache fit on the GPU. The file flag is --output-file here:
    --output is the number of generated tokens."""
    from perfmodel.cost import Fusion
    from perfmodel.request import report

    sc = scenario(arch, "decode", batch=batch, gpu=gpu, compute_efficiency=compute_efficiency,
                  bandwidth_efficiency=bandwidth_efficiency, **{k: kw.pop(k) for k in ("weight_dtype", "act_dtype", "kv_dtype")})
    sc = sc.but(weight_group_size=kw.pop("weight_group_size"), embed_dtype=kw.pop("embed_dtype"))
    fusion = Fusion(merge_projections=merge_projections, fold_elementwise=fold_elementwise, cuda_graphs=cuda_graphs)
    layout = layout_from(kw)
    if layout is not None:  # per-GPU columns; --by step and --plot are one-GPU views
        from perfmodel.parallel import report as parallel_report

        return parallel_report(sc, layout, prompt, output_tokens, fusion)
    frame = report(sc, prompt, output_tokens, fusion, by=by)
    # the names every time-reporting command uses (issue 11) beside request's memory_bytes
    frame["memory_needed_bytes"] = frame["memory_bytes"]
    frame["capacity_bytes"] = sc.accelerator.memory_bytes
    if not bool(frame["fits"].iloc[0]):
        warn(f"does not fit: needs {frame['memory_bytes'].iloc[0] / 2**30:.1f} GiB of "
             f"{sc.accelerator.memory_bytes / 2**30:.1f} GiB on {sc.accelerator.name}")
    if plot:
        from perfmodel.plots import request_chart

        request_chart(report(sc, prompt, output_tokens, fusion, by="step"), plot, sc)
    return frame


def serving_options(fn):
    fn = click.option("--kv-policy", type=click.Choice(["reserve", "on-demand"]), default="reserve", show_default=True, help="reserve: a request holds KV blocks for prompt + output from admission (TensorRT-LLM guaranteed-no-evict); on-demand: its mean need (vLLM)")(fn)
    fn = click.option("--prefix-hit-rate", type=float, default=0.0, show_default=True, help="fraction of each prompt found in the prefix cache (whole blocks, shared)")(fn)
    fn = click.option("--memory-fraction", type=float, default=0.9, show_default=True, help="of GPU memory the engine takes for weights, activations and the KV pool")(fn)
    fn = click.option("--block-size", type=click.IntRange(1), default=16, show_default=True, help="tokens per paged KV block")(fn)
    fn = click.option("--max-seqs", type=click.IntRange(1), default=2048, show_default=True, help="running sequences at most")(fn)
    fn = click.option("--chunk-tokens", type=Count(), default="8192", show_default=True, help="chunked prefill: tokens per step (decode tokens plus prompt chunks)")(fn)
    fn = click.option("--chunked-prefill/--no-chunked-prefill", default=True, show_default=True, help="off: each prompt runs in a prefill step of its own while decoding waits")(fn)
    return fn


def serving_deployment(arch, gpu, compute_efficiency, bandwidth_efficiency, cuda_graphs, merge_projections, fold_elementwise, kw):
    """The single-GPU StepModel, the Engine and the Workload for the serving commands."""
    from perfmodel.cost import Fusion
    from perfmodel.serving import Engine, Workload, single_gpu

    sc = scenario(arch, "decode", gpu=gpu, compute_efficiency=compute_efficiency, bandwidth_efficiency=bandwidth_efficiency,
                  **{k: kw.pop(k) for k in ("weight_dtype", "act_dtype", "kv_dtype")})
    fusion = Fusion(merge_projections=merge_projections, fold_elementwise=fold_elementwise, cuda_graphs=cuda_graphs)
    engine = Engine(chunk_tokens=kw.pop("chunk_tokens") if kw.pop("chunked_prefill") else None, max_seqs=kw.pop("max_seqs"),
                    block_size=kw.pop("block_size"), memory_fraction=kw.pop("memory_fraction"),
                    prefix_hit_rate=kw.pop("prefix_hit_rate"), kv_policy=kw.pop("kv_policy"))
    prompt, output, workload = kw.pop("prompt"), kw.pop("output_tokens"), kw.pop("workload")
    if workload is not None:
        if prompt is not None or output is not None:
            raise PerfmodelError("give --workload or --prompt/--output, not both")
        work = Workload.read_csv(workload)
    elif prompt is None or output is None:
        raise PerfmodelError("give --prompt and --output (or a --workload CSV)")
    else:
        work = Workload.fixed(prompt, output)
    # the longest request's last step: refused beyond learned positions, warned beyond the trained context
    sc.but(seq=1, context=max(p + m for p, m in zip(work.prompts, work.outputs)) - 1)
    return sc, single_gpu(sc, fusion), engine, work


@cli.command()
@model_option
@gpu_option(required=True)
@click.option("--prompt", type=Count(), help=f"prompt tokens per request ({SIZE_HELP})")
@click.option("--output", "output_tokens", type=Count(), help=f"generated tokens per request ({SIZE_HELP})")
@click.option("--workload", type=click.Path(dir_okay=False, path_type=Path), help="CSV of request classes: prompt, output and weight (or count) columns; gives p50/p90")
@click.option("--concurrency", type=float, help="requests in the system (closed loop)")
@click.option("--rate", type=float, help="arrivals per second (open loop, Poisson: M/D/1 admission wait)")
@click.option("--max-ttft", type=float, help="seconds: serve at the largest rate whose TTFT (p50 with a --workload, else the mean) stays within this")
@click.option("--max-tpot", type=float, help="seconds: ... and whose TPOT stays within this")
@click.option("--curve", is_flag=True, help="one row per concurrency, doubling up to the largest that fits")
@click.option("--gpu-hour-price", type=float, help="USD per GPU hour (default: the list price in hardware/data/gpu-prices.csv, if any)")
@serving_options
@dtype_options
@fusion_options
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), help="also draw the latency-throughput curve over concurrency (PNG/SVG/PDF)")
@output_options(flag="--output-file")
def serve(arch, gpu, concurrency, rate, max_ttft, max_tpot, curve, gpu_hour_price, plot, cuda_graphs, merge_projections, fold_elementwise,
          compute_efficiency, bandwidth_efficiency, **kw):
    """Steady-state serving under continuous batching on one GPU.

    \b
    Closed loop at --concurrency, open loop at --rate, the largest rate within
    --max-ttft/--max-tpot, or (none of these) saturated at the largest concurrency the
    paged KV cache holds. Throughput (requests/s, input, output and total tokens/s,
    per GPU), mean TTFT/TPOT/e2e (p50/p90 with a --workload distribution), what binds
    (kv_capacity, max_seqs, token_budget, compute, bandwidth), $/million tokens and
    an energy estimate. The file flag is --output-file: --output is the number of
    generated tokens. Queueing model and its limits: README "Serving"."""
    from perfmodel.hardware.prices import list_price
    from perfmodel import serving

    sc, step, engine, work = serving_deployment(arch, gpu, compute_efficiency, bandwidth_efficiency, cuda_graphs,
                                                merge_projections, fold_elementwise, kw)
    source = "given"
    if gpu_hour_price is None:
        gpu_hour_price, source = list_price(sc.accelerator.key)
    price = {"gpu_hour_usd": gpu_hour_price, "price_source": source}
    if curve or plot:
        if concurrency is not None or rate is not None:
            raise PerfmodelError("--curve/--plot sweep the concurrency; leave out --concurrency and --rate")
        frame = serving.curve(step, work, engine, **price)
        if plot:
            from perfmodel.plots import serving_chart

            serving_chart(frame, plot)
        if not curve:
            frame = serving.report(step, work, engine, **price)
        return frame
    if max_ttft is not None or max_tpot is not None:
        if concurrency is not None or rate is not None:
            raise PerfmodelError("--max-ttft/--max-tpot search the rate; leave out --concurrency and --rate")
        return serving.report(step, work, engine, ttft_s=max_ttft, tpot_s=max_tpot, **price)
    frame = serving.report(step, work, engine, concurrency=concurrency, rate=rate, **price)
    if not bool(frame["fits"].iloc[0]):
        warn(f"does not fit: {concurrency:g} requests need more KV blocks than the "
             f"{int(frame['kv_blocks'].iloc[0])} the pool holds (max_concurrency {int(frame['max_concurrency'].iloc[0])})")
    return frame


@cli.command()
@model_option
@gpu_option(required=True)
@click.option("--draft", help="draft model: preset or config.json (`none`: n-gram or self-speculation, zero draft cost)", required=True)
@click.option("--draft-set", "draft_sets", multiple=True, metavar="KEY=VALUE", help="override a field of the draft's config (repeatable)")
@click.option("--k", "k", type=int, required=True, help="tokens the draft proposes per target step")
@click.option("--alpha", type=float, help="per-token acceptance rate, in [0, 1)")
@click.option("--acceptance", help="measured acceptance-length distribution: k+1 comma-separated probabilities of 0..k draft tokens accepted")
@click.option("--context", type=Count(), default="2048", show_default=True, help=f"cached tokens per sequence ({SIZE_HELP})")
@click.option("--max-batch", type=Count(), default="1024", show_default=True, help="largest batch of the sweep (batches double from 1)")
@dtype_options
@fusion_options
@output_options
def speculate(arch, gpu, draft, draft_sets, k, alpha, acceptance, context, max_batch, cuda_graphs, merge_projections,
              fold_elementwise, compute_efficiency, bandwidth_efficiency, **kw):
    """Speculative decoding against plain decoding, one row per batch.

    \b
    Tokens per target step E = (1 - alpha^(k+1)) / (1 - alpha) (Leviathan et al. 2023),
    or the mean of a measured acceptance distribution; a step is k draft decode steps
    plus one target verify of k+1 tokens against the context. speedup = E x plain
    step / speculative step; break_even_batch: the first batch where it is below 1."""
    from perfmodel.cost import Fusion
    from perfmodel.presets import load_model
    from perfmodel.speculative import EXPLANATION, Acceptance, report

    lengths = ()
    if acceptance is not None:
        try:
            lengths = tuple(float(v) for v in acceptance.split(","))
        except ValueError:
            raise PerfmodelError(f"--acceptance {acceptance!r}: expected comma-separated probabilities") from None
    acc = Acceptance(k, alpha, lengths)
    dtypes = {k_: kw.pop(k_) for k_ in ("weight_dtype", "act_dtype", "kv_dtype")}
    target = scenario(arch, "decode", gpu=gpu, compute_efficiency=compute_efficiency, bandwidth_efficiency=bandwidth_efficiency, **dtypes)
    draft_sc = None
    if draft.lower() != "none":
        draft_sc = scenario(load_model(draft, parse_sets(draft_sets)), "decode", gpu=gpu, compute_efficiency=compute_efficiency,
                            bandwidth_efficiency=bandwidth_efficiency, **dtypes)
    elif draft_sets:
        raise PerfmodelError("--draft-set needs a --draft model")
    fusion = Fusion(merge_projections=merge_projections, fold_elementwise=fold_elementwise, cuda_graphs=cuda_graphs)
    batches = [2 ** i for i in range(0, 64) if 2 ** i <= max_batch]
    frame = report(target, draft_sc, acc, context, batches, fusion)
    if not frame["fits"].all():
        warn(f"batches from {int(frame.loc[~frame['fits'], 'batch'].iloc[0])} do not fit on {target.accelerator.name} "
             "(times are what they would take if they did)")
    even = frame["break_even_batch"].iloc[0]
    click.echo("note: " + EXPLANATION.format(e=acc.expected_tokens(), b=even if even is not None else f"none up to {batches[-1]}"), err=True)
    return frame


@cli.command("recompute")
@model_option
@gpu_option(required=True)
@click.option("--batch", type=Count(), default=1, show_default=True, help="sequences generated together")
@click.option("--prompt", type=Count(), required=True, help=f"prompt tokens ({SIZE_HELP})")
@click.option("--output", "output_tokens", type=Count(), required=True, help=f"generated tokens ({SIZE_HELP})")
@dtype_options
@fusion_options
@output_options(flag="--output-file")
def recompute(arch, gpu, batch, prompt, output_tokens, cuda_graphs, merge_projections, fold_elementwise,
             compute_efficiency, bandwidth_efficiency, **kw):
    """Generation without a KV cache (the whole prefix recomputed for every token)
    against cached decoding: cumulative FLOPs, bytes and calibrated time, and their
    ratios, as the output grows (rows at doubling output lengths)."""
    from perfmodel.cost import Fusion
    from perfmodel.nokv import report

    sc = scenario(arch, "decode", batch=batch, gpu=gpu, compute_efficiency=compute_efficiency,
                  bandwidth_efficiency=bandwidth_efficiency, **kw)
    fusion = Fusion(merge_projections=merge_projections, fold_elementwise=fold_elementwise, cuda_graphs=cuda_graphs)
    frame = report(sc, prompt, output_tokens, fusion)
    if not (frame["fits"].iloc[0] and frame["no_cache_fits"].iloc[0]):
        warn(f"does not fit on {sc.accelerator.name}: cached {frame['memory_needed_bytes'].iloc[0] / 2**30:.1f} GiB, "
             f"recomputed {frame['no_cache_memory_needed_bytes'].iloc[0] / 2**30:.1f} GiB of "
             f"{sc.accelerator.memory_bytes / 2**30:.1f} GiB (times are what they would take if they did)")
    return frame

@cli.command()
@model_option
@gpu_option(required=True)
@click.option("--gpus", type=click.IntRange(1), required=True, help="total GPUs (= tp*pp*cp*dp)")
@click.option("--tp", type=click.IntRange(1), default=1, show_default=True, help="tensor-parallel size")
@click.option("--pp", type=click.IntRange(1), default=1, show_default=True, help="pipeline stages")
@click.option("--dp", type=click.IntRange(1), help="data-parallel replicas (default: gpus / (tp*pp*cp))")
@click.option("--ep", type=click.IntRange(1), default=1, show_default=True, help="expert-parallel size (divides dp*cp)")
@click.option("--cp", type=click.IntRange(1), default=1, show_default=True, help="context-parallel size")
@click.option("--zero", type=click.IntRange(0, 3), default=1, show_default=True, help="ZeRO stage: 1 shards optimizer states (Megatron's distributed optimizer), 2 + gradients, 3 + weights (FSDP)")
@click.option("--sequence-parallel/--no-sequence-parallel", default=None, help="Megatron sequence parallelism (default: on when tp > 1)")
@click.option("--global-batch", type=Count(), default=512, show_default=True, help="sequences per iteration")
@click.option("--micro-batch", type=Count(), default=1, show_default=True, help="sequences per micro-batch")
@click.option("--seq", type=Count(), default=4096, show_default=True, help=f"tokens per sequence ({SIZE_HELP})")
@click.option("--recompute", type=click.Choice(["none", "selective", "full"]), default="selective", show_default=True, help="activation recomputation (selective: the attention core, Korthikanti et al. 2022)")
@click.option("--interleave", type=click.IntRange(1), default=1, show_default=True, help="virtual pipeline stages per GPU (>1: interleaved 1F1B)")
@click.option("--gpus-per-node", type=click.IntRange(1), help="GPUs per scale-up domain (default: the part's NVLink domain, 8 on HGX, 72 on NVL72)")
@click.option("--tokens", type=click.FloatRange(min=1), help="train on this many tokens (e.g. 15e12): wall-clock days and GPU-hours")
@click.option("--optimizer", type=click.Choice(["mixed", "megatron-bf16", "megatron-fp16", "fp32"]), default="megatron-bf16", show_default=True, help="bytes per parameter for gradients and optimizer states")
@click.option("--overlap-grad-reduce/--no-overlap-grad-reduce", default=True, show_default=True, help="hide the data-parallel gradient reduction under the last micro-batch's backward (Megatron --overlap-grad-reduce)")
@click.option("--overlap-param-gather/--no-overlap-param-gather", default=True, show_default=True, help="hide ZeRO parameter all-gathers under compute (Megatron --overlap-param-gather, FSDP prefetch)")
@click.option("--tp-comm-overlap/--no-tp-comm-overlap", default=False, show_default=True, help="hide TP all-gathers/reduce-scatters under the linear GEMMs (Megatron --tp-comm-overlap, TE userbuffers; off in Megatron-Core, on in Megatron-Bridge's Llama recipes)")
@click.option("--ep-comm-overlap/--no-ep-comm-overlap", default=False, show_default=True, help="hide the expert all-to-alls under another micro-batch's compute (Megatron --overlap-moe-expert-parallel-comm)")
@click.option("--overlap-p2p-comm/--no-overlap-p2p-comm", default=True, show_default=True, help="interleaved schedule: hide pipeline sends/receives under the next chunk (Megatron --overlap-p2p-communication)")
@pipeline_split_options
@click.option("--weight-dtype", type=click.Choice(DTYPES), default="bf16", show_default=True)
@click.option("--act-dtype", type=click.Choice(DTYPES), default="bf16", show_default=True, help="matmul compute (fp8: Transformer Engine FP8 training, the linear layers' GEMMs in FP8, activations BF16)")
@output_options
def train(arch, gpu, compute_efficiency, bandwidth_efficiency, gpus, tp, pp, dp, ep, cp, zero, sequence_parallel,
          global_batch, micro_batch, seq, recompute, interleave, gpus_per_node, tokens, optimizer, overlap_grad_reduce,
          overlap_param_gather, tp_comm_overlap, ep_comm_overlap, overlap_p2p_comm, weight_dtype, act_dtype, **split):
    """One training iteration on a parallel layout (and the whole run with --tokens):
    step_time_s, tokens_per_s_per_gpu, mfu/hfu (flop_convention says which FLOPs),
    bubble_fraction, exposed communication, memory_per_gpu_bytes and fits."""
    from perfmodel.train import Overlap, make_layout, report

    sc = scenario(arch, "train", seq=seq, gpu=gpu, weight_dtype=weight_dtype, act_dtype=act_dtype, kv_dtype=act_dtype,
                  recompute=recompute, optimizer=optimizer)
    layout = make_layout(arch, sc.accelerator, gpus=gpus, tp=tp, pp=pp, dp=dp, ep=ep, cp=cp, zero=zero,
                         sequence_parallel=sequence_parallel, interleave=interleave, micro_batch=micro_batch,
                         global_batch=global_batch, gpus_per_node=gpus_per_node, **split)
    overlap = Overlap(overlap_grad_reduce, overlap_param_gather, tp_comm_overlap, ep_comm_overlap, overlap_p2p_comm)
    return report(sc, layout, tokens=tokens, overlap=overlap)


@cli.command()
@model_option
@gpu_option(required=True)
@click.option("--gpus", type=click.IntRange(1), required=True, help="GPUs to spread the model over")
@click.option("--phase", type=click.Choice(["infer", "train"]), default="infer", show_default=True)
@click.option("--objective", type=click.Choice(["throughput", "latency"]), default="throughput", show_default=True)
@click.option("--batch", type=Count(), default=8, show_default=True, help="infer: sequences run together (split over dp)")
@click.option("--prompt", type=Count(), default=1024, show_default=True, help=f"infer: prompt tokens ({SIZE_HELP})")
@click.option("--output", "output_tokens", type=Count(), default=256, show_default=True, help="infer: generated tokens")
@click.option("--global-batch", type=Count(), default=512, show_default=True, help="train: sequences per iteration")
@click.option("--micro-batch", type=Count(), default=1, show_default=True, help="train: sequences per micro-batch")
@click.option("--seq", type=Count(), default=4096, show_default=True, help=f"train: tokens per sequence ({SIZE_HELP})")
@click.option("--recompute", type=click.Choice(["none", "selective", "full"]), default="selective", show_default=True)
@click.option("--gpus-per-node", type=click.IntRange(1), help="GPUs per scale-up domain (default: the part's NVLink domain)")
@click.option("--weight-dtype", type=click.Choice(DTYPES), default="bf16", show_default=True)
@click.option("--act-dtype", type=click.Choice(DTYPES), default="bf16", show_default=True)
@click.option("--kv-dtype", type=click.Choice(DTYPES), default="bf16", show_default=True)
@pipeline_split_options
@output_options(flag="--output-file")
def plan(arch, gpu, compute_efficiency, bandwidth_efficiency, gpus, phase, objective, batch, prompt, output_tokens,
         global_batch, micro_batch, seq, recompute, gpus_per_node, weight_dtype, act_dtype, kv_dtype, **split):
    """Rank the layouts (tp x pp x dp, x ep for MoE models) of a model on --gpus GPUs
    that fit, by throughput or latency; every rejected layout says why (rank empty).
    The file flag is --output-file here: --output is the number of generated tokens."""
    from perfmodel.plan import plan as run

    dtypes = dict(weight_dtype=weight_dtype, act_dtype=act_dtype, kv_dtype=kv_dtype)
    if phase == "train":
        sc = scenario(arch, "train", seq=seq, gpu=gpu, recompute=recompute, optimizer="megatron-bf16", **dtypes)
    else:
        sc = scenario(arch, "decode", batch=batch, gpu=gpu, **dtypes)
    return run(sc, gpus, objective=objective, prompt=prompt, output=output_tokens, global_batch=global_batch,
               micro_batch=micro_batch, gpus_per_node=gpus_per_node, split=split)


@cli.group()
def validate():
    """Check the model against measurements: timed here, published, or stored."""


@validate.command("attention")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), help="time SDPA here (default: cuda if torch sees one, else cpu)")
@click.option("--grid", type=click.Choice(["tiny", "cpu", "gpu"]), help="shapes to time (default: gpu on cuda, cpu on cpu)")
@click.option("--gpu", help="predict against this accelerator (catalog name, alias or file; default: this device, measured now)")
@click.option("--threads", type=click.IntRange(1), help="torch CPU threads while timing (default: torch's)")
@click.option("--published", is_flag=True, help="score every published measurement (hardware/data) instead of timing")
@click.option("--measured", type=click.Path(dir_okay=False, path_type=Path), help="re-score a stored measurement CSV (no torch, no GPU)")
@click.option("--by", default="row", show_default=True, help="row, or a summary per comma-separated keys: study, source, file, kernel, family, gpu, head_dim, phase, pass, regime, dtype, causal, confidence, group, in_fit, backend")
@click.option("--out-of-sample", is_flag=True, help="with --published: add leave-one-source-out predictions (loso_s, loso_error)")
@click.option("--fit", "fit_path", type=click.Path(dir_okay=False, path_type=Path), help="calibrated model JSON (default: hardware/data/efficiency-fit.json)")
@click.option("--refit", type=click.Path(dir_okay=False, path_type=Path), help="with --published: refit the calibrated model on the project's list, write the JSON here and score with it")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), help="measured vs predicted (log-log, y = x) and achieved TFLOP/s vs KV length (PNG/SVG/PDF)")
@output_options
def validate_attention(device, grid, gpu, threads, published, measured, by, out_of_sample, fit_path, refit, plot):
    """Predicted vs measured attention calls: error = predicted/measured - 1, for the pure
    roofline (predicted_s), catalog efficiencies (expected_s) and the calibrated model
    (calibrated_s). Times torch SDPA unless --published or --measured is given."""
    from perfmodel.hardware.attention_bench import report

    if not (published or measured):
        require_torch("validate attention (timing here)")
    frame = report(device=device, grid=grid, gpu=gpu, threads=threads, published=published, measured=measured,
                   by=by, out_of_sample=out_of_sample, fit_path=fit_path, refit=refit, plot=plot, progress=True)
    if by == "row" and "error" in frame:
        from perfmodel.hardware.attention_scoring import summarize

        frame.attrs["summary"] = summarize(frame)  # the terminal view prints it first
        viewed(frame, "study", "gpu", "kernel", "pass", "head_dim", "seq_q", "seq_kv", "causal", "measured_s",
               "predicted_s", "error", "calibrated_s", "calibrated_error")
    return frame


def require_torch(what: str) -> None:
    """A one-line error, before any work, where torch is missing."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        raise PerfmodelError(f"{what} needs torch, which is not installed: pip install -e '.[test]' (the test extra)")


def _say(message: str) -> None:
    """One line on stderr, readable on an ASCII-only terminal too."""
    try:
        click.echo(message, err=True)
    except UnicodeEncodeError:
        click.echo(message.encode("ascii", "backslashreplace").decode("ascii"), err=True)


@validate.command("e2e")
@click.option("--published", is_flag=True, required=True, help="score the published end-to-end measurements (hardware/data/e2e-measurements.csv)")
@click.option("--by", help="row, all, or a summary per comma-separated keys: study, engine, gpu, accelerator, weight_dtype, metric, tier, model, batch (default: study; study,metric with --kind serving)")
@click.option("--in-sample-only", is_flag=True, help="skip the leave-one-source-out predictions")
@click.option("--unmapped", is_flag=True, help="list the rows that are not scored, with the reason")
@click.option("--kind", type=click.Choice(["fixed", "serving"]), default="fixed", show_default=True, help="fixed: fixed-batch rows (tier A/B) by the request model; serving: scheduler rows (tier C) by the serving model")
@output_options
def validate_e2e(published, by, in_sample_only, unmapped, kind):
    """Request latencies against published engine runs (one GPU, fixed batch): error =
    predicted/measured - 1 on times (a rate's error is taken on the time it implies, so
    negative is too fast), for the pure roofline, the old flat efficiencies, the
    calibrated cost model in sample, and leave-one-source-out (loso)."""
    from perfmodel.hardware.e2e import report

    by = by or ("study,metric" if kind == "serving" else "study")
    return report(by, out_of_sample=not in_sample_only, unmapped=unmapped, kind=kind)


@validate.command("training")
@click.option("--published", is_flag=True, required=True, help="score the published training runs (hardware/data/training-measurements.csv)")
@click.option("--by", default="study", show_default=True, help="row, all, or a summary per comma-separated keys: study, gpu, accelerator, model_size, layout, metric, dtype")
@click.option("--study", help="only the runs whose study or source contains this text, any case (e.g. MLPerf, Korthikanti, Megatron-Bridge)")
@output_options
def validate_training(published, by, study):
    """Training iterations against published runs (Narayanan 2021, Korthikanti 2022,
    MegaScale, MT-NLG, BLOOM, Megatron-Bridge, NeMo 24.07, MLPerf Training logs; TFLOP/s and
    MFU rows through each source's own FLOP count): error = predicted/measured - 1 on the
    iteration time (negative is too fast), per source, GPU, model size and layout, in sample
    and leave-one-source-out (the one fitted term, each die's sustained compute fraction,
    refitted without the row's study). Slow: about 25 CPU-minutes for every run; --study
    scores a subset."""
    from perfmodel.hardware.training_validation import report

    return report(by, study)


# --- batch: many rows of one table command, in one process -----------------------------

#: the parameters ``output_options`` adds: ``batch`` renders, so rows do not choose these
OUTPUT_PARAMS = ("fmt", "output", "columns", "wide")


@cli.command()
@click.argument("command", nargs=-1, required=True)
@click.option("--input", "input_file", required=True, type=click.Path(dir_okay=False, path_type=Path), help="CSV or JSON lines (.csv, .jsonl/.ndjson, else sniffed), one column per option of COMMAND")
@click.option("--keep-going", is_flag=True, help="a failing row gets its message in an `error` column and the other rows still run")
@output_options
def batch(command, input_file, keep_going):
    """Run COMMAND once per row of FILE in one process: one table of COMMAND's rows.

    \b
    A column is an option of COMMAND without its dashes, `_` for `-` (model, gpu,
    batch, weight_dtype, context, ...), or an argument by name (formula's quantity).
    An empty CSV cell (JSON null) is an option not given; multi-valued options (--set,
    compare's --model) take a JSON list or `;`-separated text; flags take true/false.
    The first column, input_row, is the 0-based index of the row in FILE (header and
    blank lines not counted). A failing row stops the batch with `error: row N: ...`
    (exit 2); with --keep-going its message goes to an `error` column instead.

    \b
    e.g. perfmodel batch kv-cache --input rows.csv --format json, rows.csv being
      model,context,kv_dtype,set
      llama-3-8b,8k,bf16,
      llama-3-8b,128k,fp8,num_key_value_heads=1;num_hidden_layers=16"""
    import difflib

    import pandas as pd

    from perfmodel.batchfile import read_rows

    ctx = click.get_current_context()
    cmd = batch_target(ctx, command)
    params = batch_columns(cmd)
    columns, rows = read_rows(input_file)
    if unknown := [c for c in columns if c not in params]:
        close = difflib.get_close_matches(unknown[0], params, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise PerfmodelError(f"unknown column {unknown[0]!r} for {' '.join(command)}{hint} (its columns: {', '.join(params)})")
    frames = []
    for index, row in enumerate(rows):
        try:
            frame = run_row(ctx, cmd, command[-1], params, row).astype(object)
        except (PerfmodelError, click.ClickException) as exc:
            message = (exc.format_message() if isinstance(exc, click.ClickException) else str(exc)).replace("\n", " ")
            if not keep_going:
                raise PerfmodelError(f"row {index}: {message}") from None
            frame = pd.DataFrame({"error": [message]}, dtype=object)
        else:
            added = ["input_row", "error"] if keep_going else ["input_row"]
            if clash := [c for c in added if c in frame.columns]:
                raise PerfmodelError(f"{' '.join(command)} has its own {clash[0]!r} column, which batch would add" + ("; run without --keep-going" if clash[0] == "error" else ""))
            if keep_going:
                frame.insert(0, "error", None)
        frame.insert(0, "input_row", index)
        frames.append(frame)
    result = pd.concat(frames, ignore_index=True)
    result = result.where(result.notna(), None)  # a column a row lacks is missing (None), as in the row's own frame
    result.attrs = {k: v for frame in frames for k, v in frame.attrs.items()}  # concat drops differing attrs
    return result


def batch_target(ctx: click.Context, words: tuple[str, ...]) -> click.Command:
    """The table-producing command that ``words`` (``kv-cache``, ``hardware show``) name."""
    from perfmodel.errors import UnknownNameError

    cmd = ctx.find_root().command
    for word in words:
        if not isinstance(cmd, click.Group):
            raise PerfmodelError(f"{' '.join(words)}: {cmd.name!r} has no subcommands")
        sub = cmd.get_command(ctx, word)
        if sub is None:
            raise UnknownNameError("command", word, cmd.list_commands(ctx))
        cmd = sub
    if isinstance(cmd, click.Group):
        raise PerfmodelError(f"{' '.join(words)} is a group; name one of its commands: {', '.join(cmd.list_commands(ctx))}")
    if cmd is batch:
        raise PerfmodelError("batch cannot run batch; put all the rows in one file")
    if not {p.name for p in cmd.params} >= set(OUTPUT_PARAMS):
        raise PerfmodelError(f"{' '.join(words)} does not print a table; batch runs commands that do")
    return cmd


def batch_columns(cmd: click.Command) -> dict[str, click.Parameter]:
    """Column name -> parameter: an option's first long name without dashes, `_` for
    `-` (``--kv-dtype`` -> ``kv_dtype``, ``--set`` -> ``set``); an argument's name."""
    out = {}
    for param in cmd.params:
        if param.name in OUTPUT_PARAMS:
            continue
        if isinstance(param, click.Option):
            out[long_name(param).lstrip("-").replace("-", "_")] = param
        else:
            out[param.name] = param
    return out


def long_name(option: click.Option) -> str:
    """The option's first ``--name`` (its first name if it has only short ones)."""
    return next((o for o in option.opts if o.startswith("--")), option.opts[0])


def row_argv(params: dict[str, click.Parameter], row: dict) -> list[str]:
    """The command line one row stands for: ``--opt=value`` options, then ``--`` and
    the arguments (so a value starting with ``-`` is never read as an option)."""
    from perfmodel.batchfile import as_flag, as_list

    options, arguments = [], []
    for column, value in row.items():
        param = params[column]
        try:
            if isinstance(param, click.Option) and param.is_flag:
                on = as_flag(value)
                if on or param.secondary_opts:
                    options.append(long_name(param) if on else param.secondary_opts[0])
                continue
            if param.multiple or param.nargs == -1:
                values = as_list(value)
            elif isinstance(value, list):
                raise PerfmodelError(f"takes one value, got a list {value}")
            else:
                values = [value]
        except PerfmodelError as exc:
            raise PerfmodelError(f"column {column!r}: {exc}") from None
        texts = [str(v).lower() if isinstance(v, bool) else str(v) for v in values]
        if isinstance(param, click.Option):
            options += [f"{long_name(param)}={t}" for t in texts]
        else:
            arguments += texts
    return options + ["--"] + arguments


def run_row(ctx: click.Context, cmd: click.Command, name: str, params: dict, row: dict):
    """``cmd``'s DataFrame for one row, run in this process as its own command line would."""
    token = CAPTURE.set(True)
    try:
        with cmd.make_context(name, row_argv(params, row), parent=ctx) as sub:
            return cmd.invoke(sub)
    finally:
        CAPTURE.reset(token)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI; any refused input is one ``error:`` line, exit 2.
    An unexpected failure is one line too (``PERFMODEL_DEBUG=1`` shows the traceback)."""
    import os

    try:
        cli.main(args=argv, prog_name="perfmodel", standalone_mode=False)
        sys.stdout.flush()
    except PerfmodelError as exc:
        _say(f"error: {' '.join(str(exc).split())}")
        sys.exit(2)
    except BrokenPipeError:  # `perfmodel ... | head`: the reader left; not an error
        sys.stderr.close()
        os._exit(0)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}".replace("\n", " "), err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("error: aborted", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        _say("error: interrupted")
        sys.exit(130)
    except OSError as exc:  # stdout on a full device, a vanished folder, …
        _say(f"error: {exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""))
        _quiet_exit(2)
    except (RecursionError, MemoryError, OverflowError, ValueError, TypeError, KeyError, ZeroDivisionError) as exc:
        if os.environ.get("PERFMODEL_DEBUG"):
            raise
        _say(f"error: could not handle this input ({type(exc).__name__}: {' '.join(str(exc).split())[:200]}); "
             "PERFMODEL_DEBUG=1 shows where")
        sys.exit(2)


def _quiet_exit(code: int) -> None:
    """Exit without a second failure from flushing a broken stdout."""
    import os

    try:
        sys.stdout.flush()
    except OSError:
        pass
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
