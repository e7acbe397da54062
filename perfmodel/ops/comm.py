"""Communication operators: a collective over the GPUs of one layout axis, as a table row.

A ``Comm`` is an :class:`~perfmodel.ops.base.Op` with no FLOPs and no memory traffic of its
own (``pass_ = "comm"``, so compute-time sums skip it) and three more fields: the
collective (``all_reduce``, ``all_gather``, ``reduce_scatter``, ``all_to_all``,
``send_recv``: :mod:`perfmodel.collectives` names), the layout axis whose ranks take part
(``tp``, ``ep``, ``pp``, ``cp``, ``dp``, ``edp`` for the experts' data-parallel group) and
the message bytes, nccl-tests' size (all-reduce buffer, gathered output, all-to-all send
buffer, send/recv payload), as a sympy expression. ``during`` says which pass issues it
(``fwd``, ``recompute``, ``bwd``, ``grad_sync``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from sympy import Expr, sympify

from perfmodel.ops.base import ZERO, Op


@dataclass(frozen=True)
class Comm(Op):
    """One collective call per layer (times ``repeat``)."""

    collective: str = "all_reduce"
    axis: str = "tp"
    message_bytes: Expr = ZERO
    during: str = "fwd"

    def subs(self, mapping: dict) -> Comm:
        return replace(Op.subs(self, mapping), message_bytes=sympify(self.message_bytes).subs(mapping))


def comm(name: str, collective: str, axis: str, message_bytes: Expr, *, repeat: Expr, group: str,
         during: str = "fwd") -> Comm:
    """A communication row of the operator table."""
    return Comm(name, repeat=sympify(repeat), group=group, pass_="comm", collective=collective, axis=axis,
                message_bytes=sympify(message_bytes), during=during)
