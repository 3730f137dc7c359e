"""The LSTM stage: every node's LSTM over the time axis, with dormant nodes sharing one
trajectory.

Legend: T steps, N nodes, F input width (the GCN's), H state width; ``z_TNF`` inputs,
``h_TNH`` outputs, time-major as ``nn.LSTM`` takes them. Dormant, arrival, active: see
:mod:`dyngnn.models.inputs`. The *dormant trajectory* is the LSTM run over the dormant
input (an isolated node's GCN output) from zero states: every dormant node-step has its
state. A *group* (:class:`DormantGroups`) is a set of nodes whose LSTM runs from one
start step, the earliest arrival among them; a member arriving later is *late*, its
rows before its arrival replaced by the dormant trajectory; a node in no group is
*never* active.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from dyngnn.models.steps import ActiveSteps, GroupedSteps, group_inputs, node_step_rows, put_groups, step_and_node

log = logging.getLogger("dyngnn")

LARGE_STEP = 2**21  # values (nodes x width) from which CPU LSTM steps run one at a time


def run_lstm(
    lstm: nn.LSTM, z_TNF: torch.Tensor, compile: str = "auto", hx: tuple[torch.Tensor, torch.Tensor] | None = None
) -> torch.Tensor:
    """``lstm``'s outputs over ``z_TNF`` from initial states ``hx`` (``[layers, N, H]``
    each; None: zeros).

    On accelerators ``nn.LSTM`` (cuDNN). On CPU, by the size of one step (nodes x
    width): large steps one snapshot at a time (:func:`lstm_by_steps`, fused by
    ``torch.compile`` under ``compile`` ``on``, or ``auto`` for large steps), whose
    backward pass is faster there than the whole-sequence kernel's; smaller float32
    steps through ``nn.LSTM`` (oneDNN's whole-sequence kernel), which saves the per-step
    overhead.
    """
    if z_TNF.device.type != "cpu":
        return lstm(z_TNF, hx)[0]
    large = z_TNF.shape[1] * lstm.hidden_size >= LARGE_STEP
    fused = compile == "on" or (compile == "auto" and large)
    if not fused and not large and z_TNF.dtype == torch.float32:
        return lstm(z_TNF, hx)[0]
    return lstm_by_steps(lstm, z_TNF, fused, hx)


def dormant_states(
    lstm: nn.LSTM, x_ref: torch.Tensor, steps: int, at: Sequence[int] = ()
) -> tuple[torch.Tensor, dict[int, tuple[torch.Tensor, torch.Tensor]]]:
    """The dormant trajectory: ``lstm`` over ``steps`` steps of the dormant input ``x_ref``
    (``[1, F]``) from zero states. Its outputs ``[steps, H]``, and the states ``(h, c)``
    (``[layers, 1, H]`` each) after ``s`` steps for each ``s`` in ``at`` (``0 < s <= steps``).

    One ``nn.LSTM`` call per stretch between those steps, each from the states the
    last one ended with: a few kernel calls, not a few small operations per step.
    """
    x = x_ref.unsqueeze(1)  # [1, 1, F]
    outputs, kept, hx, done = [], {}, None, 0
    for stop in sorted({*at, steps}):
        if stop > done:
            out, hx = lstm(x.expand(stop - done, 1, x.shape[2]), hx)
            outputs.append(out[:, 0])
            done = stop
        if stop in at:
            kept[stop] = hx
    return torch.cat(outputs) if outputs else x.new_zeros(0, lstm.hidden_size), kept


def lstm_sharing_dormant(
    lstm: nn.LSTM,
    z_TNF: torch.Tensor | ActiveSteps,
    x_ref: torch.Tensor,
    groups: DormantGroups,
    compile: str = "auto",
    dense: bool = True,
) -> torch.Tensor | GroupedSteps:
    """``lstm``'s outputs over ``z_TNF``, every dormant node-step taking the dormant
    trajectory's state (:func:`dormant_states` of the dormant input ``x_ref``), and each
    group of ``groups`` run (:func:`run_lstm`) over its own steps from the dormant state at
    its start; unless ``dense``, as :class:`GroupedSteps`.

    Dormant node-steps at one step therefore hold one value: their scores tie exactly.
    The rows of ``z_TNF`` a group does not take get no gradient; the dormant
    inputs' share reaches the parameters through ``x_ref``, which, being the same
    function of them, gives them the gradients of the LSTM over every node. Where every
    node is dormant, ``z_TNF`` still gets its (zero) gradient, so that a backward pass
    through it (the all-to-all of a multi-rank run) runs on every rank.
    """
    h_ref, states = dormant_states(lstm, x_ref, groups.dormant_steps, sorted({s for s in groups.starts if s}))
    x, pieces = group_inputs(z_TNF, groups)
    outs = []
    for s, piece in zip(groups.starts, pieces, strict=True):
        hx = tuple(v.expand(-1, piece.shape[1], -1).contiguous() for v in states[s]) if s else None
        outs.append(run_lstm(lstm, piece, compile, hx))
    if not dense:
        return GroupedSteps(h_ref, outs, groups)
    return put_groups(h_ref, x, z_TNF.shape[:2], groups, outs)


def lstm_by_steps(
    lstm: nn.LSTM,
    x_TNI: torch.Tensor,
    fused: bool = False,
    hx: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """``nn.LSTM``'s output (time-major; initial states ``hx``, None: zeros), one step
    per snapshot.

    A step is ``torch.lstm_cell``, or with ``fused`` the same arithmetic as one kernel
    per pass built by ``torch.compile`` (:class:`FusedStep`): the gates' elementwise
    work then reads and writes memory once instead of once per operation, forward and
    backward. Where no kernel can be built, the plain step runs instead.
    """
    step = fused_step() if fused else None
    out = x_TNI
    for layer in range(lstm.num_layers):
        w_ih, w_hh = getattr(lstm, f"weight_ih_l{layer}"), getattr(lstm, f"weight_hh_l{layer}")
        b_ih, b_hh = getattr(lstm, f"bias_ih_l{layer}"), getattr(lstm, f"bias_hh_l{layer}")
        if hx is None:
            h = out.new_zeros(out.shape[1], lstm.hidden_size)
            c = torch.zeros_like(h)
        else:
            h, c = hx[0][layer], hx[1][layer]
        steps = []
        for x in out.unbind(0):  # unbind: one stack in the backward pass, not T full-size zero fills
            if step is not None:
                try:
                    h, c = step(x, h, c, w_ih, w_hh, b_ih, b_hh)
                except Exception as e:  # any failure to build the kernel
                    fused_step.fail(e)
                    step = None
            if step is None:
                h, c = torch.lstm_cell(x, (h, c), w_ih, w_hh, b_ih, b_hh)
            steps.append(h)
        out = torch.stack(steps)
    return out


def _lstm_step(x, h, c, w_ih, w_hh, b_ih, b_hh):
    """One LSTM step, the arithmetic of ``torch.lstm_cell`` (gates i, f, g, o)."""
    i, f, g, o = (torch.addmm(b_ih, x, w_ih.t()) + torch.addmm(b_hh, h, w_hh.t())).chunk(4, 1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


class FusedStep:
    """:func:`_lstm_step` built by ``compiler`` (``torch.compile``) on first use; after a
    failure (no C++ compiler, say) None, with one warning."""

    def __init__(self, compiler: Callable = torch.compile) -> None:
        self.compiler = compiler
        self._step, self._failed = None, False

    def __call__(self):
        if self._failed:
            return None
        if self._step is None:
            log.info("model.compile: building the fused LSTM step with torch.compile (first epoch; cached on disk)")
            # shapes are static until a second batch size shows (groups of dormant
            # nodes, say); then torch.compile builds one kernel for any size
            self._step = self.compiler(_lstm_step)
        return self._step

    def fail(self, error: Exception) -> None:
        self._failed = True
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        log.warning("model.compile: no fused LSTM kernel (%s); using torch.lstm_cell", first[:200])


fused_step = FusedStep()  # one per process: the kernel is built once


class DormantGroups:
    """A plan for :func:`lstm_sharing_dormant`: nodes grouped by arrival.

    Each group's LSTM runs from its first member's arrival to the end, from the dormant
    state there; members arriving later in the group run their last dormant steps inside
    it, and those rows of its output are replaced by the dormant states. :meth:`plan` picks the
    groups that minimise node-steps plus :attr:`OVERHEAD` per group and step (the cost of
    one more, smaller LSTM call), with starts among at most :attr:`CANDIDATES` of the
    distinct arrival steps.

    Attributes:
        starts: each group's first step, ascending.
        nodes: each group's node indices (``int64``, ascending).
        late: per group, the rows where a member is still dormant, as ``(t, rows of the
            group's output flattened to [steps * members], rows of the whole output
            flattened to [T * N])``.
        never: nodes in no group: dormant at every step.
        dormant_steps: steps of the dormant trajectory (to the last arrival).
        node_steps: the node-steps the groups compute.
    """

    OVERHEAD = 64
    WORTH = 0.7  # group only where the groups cost less than this fraction of every node's steps
    CANDIDATES = 512  # group starts considered at most: the plan takes time quadratic in them

    def __init__(self, a: np.ndarray, steps: int, starts: list[int], nodes: list[np.ndarray]) -> None:
        self.starts, self.dormant_steps = starts, int(a.max())
        self.steps, self.num_nodes, self._arrival = steps, len(a), a
        self.nodes = [torch.from_numpy(idx) for idx in nodes]
        rest = np.ones(len(a), dtype=bool)
        if nodes:
            rest[np.concatenate(nodes)] = False
        self.never = torch.from_numpy(np.flatnonzero(rest))
        self.node_steps = sum(len(idx) * (steps - s) for s, idx in zip(starts, nodes, strict=True))
        self._late: list | None = None
        self._members: dict[torch.device, tuple[torch.Tensor, ...]] = {}

    @property
    def late(self) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Per group, the rows where a member is still dormant (built on first use)."""
        if self._late is None:
            a, self._late = self._arrival, []
            for s, idx in self.groups():
                idx = idx.numpy()
                span = a[idx] - s  # rows [s, arrival) of each member are dormant
                member = np.repeat(np.arange(len(idx)), span)
                t = s + np.arange(len(member)) - np.repeat(np.cumsum(span) - span, span)
                rows = node_step_rows(t - s, member, len(idx)), node_step_rows(t, idx[member], len(a))
                self._late.append(tuple(torch.from_numpy(v.astype(np.int64)) for v in (t, *rows)))
        return self._late

    def members(self, device: torch.device) -> tuple[torch.Tensor, ...]:
        """``(group [N], position in it [N], arrival [N])`` of each node (group -1: in
        none), and each group's ``(start, size, offset)`` (``[groups]`` each), the
        offset of its output among the dormant states and the groups' outputs laid end
        to end (each flattened to ``[steps * members, H]``). Built once per device."""
        if device not in self._members:
            group = torch.full((self.num_nodes,), -1, dtype=torch.long)
            position = torch.zeros(self.num_nodes, dtype=torch.long)
            for k, idx in enumerate(self.nodes):
                group[idx], position[idx] = k, torch.arange(len(idx))
            start = torch.tensor(self.starts, dtype=torch.long)
            size = torch.tensor([len(idx) for idx in self.nodes], dtype=torch.long)
            length = (self.steps - start) * size
            offset = self.dormant_steps + torch.cumsum(length, 0) - length
            arrival = torch.from_numpy(self._arrival.astype(np.int64))
            self._members[device] = tuple(x.to(device) for x in (group, position, arrival, start, size, offset))
        return self._members[device]

    def locate(self, rows: torch.Tensor) -> torch.Tensor:
        """Where rows ``t * N + v`` of the output come from: a row of the dormant states
        and the groups' outputs laid end to end."""
        group, position, arrival, start, size, offset = self.members(rows.device)
        t, v = step_and_node(rows, self.num_nodes)
        if not self.starts:
            return t
        k = group[v]
        kk = k.clamp(min=0)
        own = offset[kk] + node_step_rows(t - start[kk], position[v], size[kk])  # its group's output
        return torch.where((k >= 0) & (t >= arrival[v]), own, t)  # before its arrival: the dormant state

    def input_maps(self, rows: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor, tuple[int, int]]]:
        """Per group, where its input ``z[start:, nodes]`` takes the active rows ``rows``
        (``t * N + v``, ascending; :class:`ActiveSteps`), as :func:`~dyngnn.models.steps.fill_rows` takes it:
        ``(positions in the input flattened, indices into rows, (T - start, members))``.
        Every active node-step lies in a group's steps: a node is active from its
        arrival on, and its group starts no later."""
        if not self.starts:
            return []
        group, position, _, start, size, _ = self.members(rows.device)
        t, v = step_and_node(rows, self.num_nodes)
        k = group[v]
        kk = k.clamp(min=0)
        at = node_step_rows(t - start[kk], position[v], size[kk])
        out = []
        for g, (s, idx) in enumerate(self.groups()):
            mine = (k == g).nonzero().squeeze(1)
            out.append((at[mine], mine, (self.steps - s, len(idx))))
        return out

    def groups(self) -> zip:
        """``(start, nodes)`` of each group."""
        return zip(self.starts, self.nodes, strict=True)

    @classmethod
    def plan(cls, arrival: torch.Tensor, steps: int) -> DormantGroups | None:
        """The groups for ``arrival`` (``[N]``) over ``steps`` steps; None where they would
        cost :attr:`WORTH` or more of running every node over every step."""
        a = arrival.cpu().numpy().clip(0, steps)
        n = len(a)
        vals, counts = np.unique(a[a < steps], return_counts=True)
        if n == 0 or a.max() == 0 or (len(vals) and vals[0] == 0 and counts[0] > cls.WORTH * n):
            return None
        if len(vals) > cls.CANDIDATES:  # groups may then start at every few arrival steps only
            firsts = np.unique(np.linspace(0, len(vals), cls.CANDIDATES, endpoint=False).astype(np.int64))
            vals, counts = vals[firsts], np.add.reduceat(counts, firsts)
        cum = np.concatenate([[0], np.cumsum(counts)])
        best, cut = np.zeros(len(vals) + 1), np.zeros(len(vals) + 1, dtype=np.int64)
        for q in range(1, len(vals) + 1):  # the last group holds arrivals vals[p:q]
            cost = best[:q] + (cum[q] - cum[:q] + cls.OVERHEAD) * (steps - vals[:q])
            cut[q] = np.argmin(cost)
            best[q] = cost[cut[q]]
        if best[-1] >= cls.WORTH * n * steps:
            return None
        bounds, q = [], len(vals)
        while q > 0:
            bounds.insert(0, (int(cut[q]), q))
            q = int(cut[q])
        order = np.argsort(a, kind="stable")
        return cls(a, steps, [int(vals[p]) for p, _ in bounds], [np.sort(order[cum[p] : cum[q]]) for p, q in bounds])
