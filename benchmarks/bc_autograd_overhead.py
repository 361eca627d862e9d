"""How much of BC's update is autograd's own cost? BC's update against the same update with its
backward written out by hand, side by side.

Run by hand (not by the tests), on an idle machine:

    .venv/bin/python benchmarks/bc_autograd_overhead.py

BC's update at batch 256 reaches about 43% of the matmul roofline (``rl_throughput.py``), short
of 50%. This measures why. Both variants run BC's actor (17 -> 256 -> 256 -> 6, tanh) with the
same fused Adam on the same minibatches:

* ``autograd``: ``BC.update``, the library's code;
* ``explicit backward``: the same forward kernels, then the MSE/tanh/ReLU/linear gradients as
  plain tensor ops (the same matmuls autograd calls), assigned to ``.grad``; no graph is built.
  It exists only to measure; its gradients are checked against autograd's before timing.

Rounds alternate between the two so that drift in the machine's speed hits both equally.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from rl_throughput import flops_per_update, matmul_roofline, synthetic_transitions  # the sibling script (this directory is on sys.path)
from rl.algos.bc import BCConfig
from rl.core.trainer import Run, RunConfig


def explicit_gradients(actor: torch.nn.Module, obs: torch.Tensor, actions: torch.Tensor) -> list[torch.Tensor]:
    """Gradients of mean((tanh(MLP(obs)) - actions)^2) w.r.t. the MLP's weights and biases."""
    first, _, second, _, head = actor.net
    with torch.no_grad():
        h1 = torch.addmm(first.bias, obs, first.weight.t()).relu_()
        h2 = torch.addmm(second.bias, h1, second.weight.t()).relu_()
        y = torch.addmm(head.bias, h2, head.weight.t()).tanh_()
        grad_y = (y - actions).mul_(2.0 / y.numel()).mul_(1 - y * y)  # through the MSE and the tanh
        grad_h2 = torch.ops.aten.threshold_backward(grad_y @ head.weight, h2, 0)
        grad_h1 = torch.ops.aten.threshold_backward(grad_h2 @ second.weight, h1, 0)
        return [grad_h1.t() @ obs, grad_h1.sum(0), grad_h2.t() @ h1, grad_h2.sum(0), grad_y.t() @ h2, grad_y.sum(0)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=256, help="minibatch size (transitions per update)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="timing rounds, alternating the two variants; each one's best round is reported")
    parser.add_argument("--updates", type=int, default=400, help="updates per round and variant")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    run = Run.build("bc", synthetic_transitions(), BCConfig(batch_size=args.batch_size), RunConfig(seed=0))
    bc, buffer = run.algorithm, run.buffer
    actor, optimizer = bc.actor, bc.optimizers["actor"]
    parameters = list(actor.net.parameters())

    def explicit_update(batch) -> None:
        for parameter, grad in zip(parameters, explicit_gradients(actor, batch.observations, batch.actions)):
            parameter.grad = grad
        optimizer.step()

    batch = buffer.sample(args.batch_size, torch.Generator().manual_seed(1))
    optimizer.zero_grad(set_to_none=True)
    F.mse_loss(actor(batch.observations), batch.actions).backward()
    for parameter, grad in zip(parameters, explicit_gradients(actor, batch.observations, batch.actions)):
        torch.testing.assert_close(grad, parameter.grad, rtol=1e-4, atol=1e-6)

    variants = {"autograd (BC.update)": bc.update, "explicit backward": explicit_update}
    generator = torch.Generator().manual_seed(0)
    best = {name: float("inf") for name in variants}
    for _ in range(args.rounds):
        for name, update in variants.items():
            for _ in range(30):
                update(buffer.sample(args.batch_size, generator))
            tic = time.perf_counter()
            for _ in range(args.updates):
                update(buffer.sample(args.batch_size, generator))
            best[name] = min(best[name], (time.perf_counter() - tic) / args.updates)
    flops = flops_per_update(run, args.batch_size, generator, updates=1)
    width = actor.net[2].weight.shape[0]
    roofline = matmul_roofline(args.batch_size, width, width, seconds=3.0)
    dims = [(actor.net[i].in_features, actor.net[i].out_features) for i in (0, 2, 4)]
    print(f"# BC actor {dims}, {flops / 1e9:.3f} GFLOP/update, batch {args.batch_size}, {args.threads} thread(s); best of {args.rounds} rounds of "
          f"{args.updates} updates; roofline (torch.mm {args.batch_size}x{width}x{width}) {roofline:.0f} GFLOP/s")
    for name, seconds in best.items():
        print(f"{name:22s} {seconds * 1e6:7.0f} us/update  {1 / seconds:6.0f} updates/s  "
              f"{100 * flops / seconds / 1e9 / roofline:4.0f}% of roofline")


if __name__ == "__main__":
    main()
