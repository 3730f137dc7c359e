"""How fast can the LSTM of a training epoch be on this machine? A lower bound.

For a link-prediction epoch on ``--store`` (by default weekly Bitcoin-Alpha, as
``train_compare.py`` builds it), the training pass runs the LSTM over every node for the
snapshots before the training horizon. Its matrix products are fixed by the model, not
by the implementation: per node and step, the four gates take ``x W_ih^T`` and
``h W_hh^T`` (``2 * 2 * 4H * H`` FLOP with input width H) forward, and the backward pass
twice that (gradients of both inputs and of both weights). This script prints:

- those FLOP for one epoch;
- the best matrix-product rate of this machine on the shapes of one LSTM step
  (``[N, H] x [H, 4H]`` and ``[N, 4H] x [4H, H]``) and on a large square product, with
  the threads torch uses;
- the time those FLOP take at that rate: no LSTM, however written, is faster;
- ``nn.LSTM`` (oneDNN on CPU) forward and backward over the same shape, best of
  ``--reps``, beside it, under the trainer's default allocator policy (``run.malloc``
  ``reuse``; ``--malloc glibc`` leaves glibc's own);
- on Bitcoin-Alpha, the share of node-steps whose node has no edge yet ("dormant"), and
  the model's LSTM stage (``GCNLSTM.temporal``) with those sharing one trajectory and the
  other nodes grouped by arrival, timed the same way, in the same run.

Run: ``.venv/bin/python benchmarks/lstm_bound.py`` (under a minute).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from _util import OUT_DIR, banner, best_seconds, default_horizon, write_json

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def warm_best_seconds(fn, reps: int) -> float:
    """One untimed call of ``fn()``, then the shortest of ``reps`` timed ones."""
    fn()
    return best_seconds(fn, reps)


def matmul_rate(m: int, k: int, n: int, reps: int) -> float:
    """Best FLOP per second of ``[m, k] x [k, n]`` float32 products, repeated to ~50 ms."""
    import torch

    a, b, c = torch.randn(m, k), torch.randn(k, n), torch.empty(m, n)
    inner = max(1, int(5e9 / (2 * m * k * n)))

    def run():
        for _ in range(inner):
            torch.mm(a, b, out=c)

    return 2 * m * k * n * inner / warm_best_seconds(run, reps)


def dormant_lstm(snaps, n: int, steps: int, h: int, reps: int) -> dict:
    """The model's LSTM stage (``GCNLSTM.temporal``) over every node, and with dormant
    nodes sharing one trajectory (as planned once per run), forward and backward, best of ``reps`` each; inputs as
    the GCN gives them (the dormant rows ``dormant_input()``, the others random)."""
    import numpy as np
    import torch

    from dyngnn.models import GCNLSTM
    from dyngnn.models.inputs import NEVER
    from dyngnn.models.lstm import DormantGroups

    first = np.full(n, NEVER)
    for t in reversed(range(steps)):
        first[np.unique(snaps.edge_index(t))] = t
    arrival = torch.from_numpy(first)
    model = GCNLSTM(n, 2, hidden=h)
    dormant = (torch.arange(steps).unsqueeze(1) < arrival.clamp(max=steps).unsqueeze(0)).unsqueeze(2)
    active = torch.randn(steps, n, h, requires_grad=True)
    plan = DormantGroups.plan(arrival, steps)

    weight = torch.randn(steps, n, h)  # a gradient of the states as a loss gives it, not a broadcast one

    def fwd_bwd(given):
        z = torch.where(dormant, model.dormant_input(), active)
        (model.temporal(z, given) * weight).sum().backward()

    return {
        "dormant_share": float(dormant.float().mean()),
        "groups": len(plan.starts) if plan else 0,
        "node_steps_share": plan.node_steps / (n * steps) if plan else 1.0,
        "every_node_s": warm_best_seconds(lambda: fwd_bwd(None), reps),
        "sharing_s": warm_best_seconds(lambda: fwd_bwd(plan), reps),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=int, default=0, help="N (0: from weekly Bitcoin-Alpha)")
    p.add_argument("--steps", type=int, default=0, help="LSTM steps (0: the training horizon of the data)")
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--malloc", default="reuse", help="run.malloc policy of this process")
    p.add_argument("--out", default=str(OUT_DIR / "lstm_bound.json"))
    a = p.parse_args()
    print(banner())

    import torch

    from dyngnn import malloc
    from dyngnn.data.readers import load_snapshots

    malloc.apply(a.malloc)
    n, steps, snaps = a.nodes, a.steps, None
    if not n or not steps:
        snaps, _ = load_snapshots("bitcoinalpha", window="7d")
        n = n or snaps.num_nodes
        steps = steps or default_horizon(len(snaps.keys))
    h = a.hidden
    forward_flop = 2 * 2 * 4 * h * h * n * steps
    flop = 3 * forward_flop
    rates = {
        "step [N,H]x[H,4H]": matmul_rate(n, h, 4 * h, a.reps),
        "step [N,4H]x[4H,H]": matmul_rate(n, 4 * h, h, a.reps),
        "square 2048": matmul_rate(2048, 2048, 2048, a.reps),
    }
    peak = max(rates.values())
    lstm = torch.nn.LSTM(h, h)
    x = torch.randn(steps, n, h, requires_grad=True)

    def fwd_bwd():
        lstm(x)[0].sum().backward()

    measured = warm_best_seconds(fwd_bwd, a.reps)
    shared = dormant_lstm(snaps, n, steps, h, a.reps) if snaps is not None and n == snaps.num_nodes else None
    print(f"LSTM of one training epoch: N={n:,} nodes x {steps} steps, width {h}, {torch.get_num_threads()} threads")
    print(f"  matrix products: {forward_flop / 1e9:.1f} GFLOP forward, {flop / 1e9:.1f} GFLOP forward + backward")
    for name, rate in rates.items():
        print(f"  matmul rate, {name}: {rate / 1e9:.0f} GFLOP/s")
    print(f"  lower bound at the best rate: {flop / peak:.3f} s")
    print(
        f"  nn.LSTM forward + backward, best of {a.reps}, run.malloc {a.malloc}: {measured:.3f} s "
        f"({flop / measured / 1e9:.0f} GFLOP/s)"
    )
    if shared:
        print(
            f"  dormant node-steps: {shared['dormant_share']:.1%}. The model's LSTM stage, forward + backward: "
            f"{shared['every_node_s']:.3f} s over every node, {shared['sharing_s']:.3f} s with the dormant ones "
            f"sharing one trajectory ({shared['groups']} arrival groups, {shared['node_steps_share']:.1%} of the "
            "node-steps)"
        )
    write_json(
        a.out,
        {
            "args": vars(a),
            "nodes": n,
            "steps": steps,
            "flop": flop,
            "matmul_flop_per_s": rates,
            "lower_bound_s": flop / peak,
            "nn_lstm_s": measured,
            "dormant_sharing": shared,
            "threads": torch.get_num_threads(),
        },
    )


if __name__ == "__main__":
    main()
