"""Data-parallel training of an HH network with DistributedDataParallel on CPU processes.

The network (one specification, :mod:`hh_plugin.network`)::

    Poisson "In" (40 trains) --dense, exponential current, delay 1--> HH "H" (20 neurons)
    HH "H" --sparse (p = 0.2), exponential conductance, delay 2--> HH "H"

Both projections' weights are ``nn.Parameter``\\ s of the :class:`NetworkModule`. Each
sample of the global batch adds its own constant current to ``H``; the loss asks every
neuron of every sample for ``--target`` spikes in the run (mean squared error of the spike
counts, surrogate gradient through spikes and synapses).

Data parallelism: every process builds the same network, takes its share of the global
batch (rank ``r`` of ``W`` takes samples ``r*B/W ... (r+1)*B/W - 1``) and
``DistributedDataParallel`` averages the gradients of the per-process mean losses, which
is the gradient of the global batch's mean loss: the training is the same as one process
on the whole batch, to round-off.

Run (two CPU processes, gloo backend)::

    torchrun --standalone --nproc_per_node=2 examples/ddp_network.py --quick
    python examples/ddp_network.py --quick          # the same training in one process

``--dump FILE`` (rank 0) saves the first step's gradients, the losses and the final
weights (``torch.save``), for comparing runs (``tests/test_ddp.py``).
"""

import argparse
import gc
import os
import time

import numpy as np
import torch
import torch.distributed as dist

from hh_plugin import HHSpec
from hh_plugin.network import (CurrentInput, Dense, FixedProbability, NetworkSpec,
                               PoissonSource, Population, Projection, exponential_conductance,
                               exponential_current)
from hh_plugin.torch.network import NetworkModule


def build_spec(n_in: int = 40, n_hidden: int = 20, dt: float = 0.025, seed: int = 0
               ) -> NetworkSpec:
    rng = np.random.default_rng(seed)
    w_in = rng.uniform(0.0, 4.0, (n_hidden, n_in))  # uA per input spike
    return NetworkSpec(
        [Population("H", n_hidden, HHSpec(), initial={"V": -65.0})],
        [Projection("In", "H", Dense(w_in), exponential_current("in", tau=2.0), delay=1),
         Projection("H", "H", FixedProbability(0.2, 0.02, seed=seed + 1, autapses=False),
                    exponential_conductance("rec", tau=5.0, E_rev=0.0), delay=2)],
        [PoissonSource("In", n_in, 100.0, seed=seed + 2), CurrentInput("H", 2.0)], dt=dt)


def global_batch(batch: int, steps: int, n: int, seed: int, dtype) -> torch.Tensor:
    """Per-sample constant currents (uA), ``(steps, batch, n)``; the same in every process."""
    amplitude = np.random.default_rng(seed + 3).uniform(0.0, 6.0, (batch, n))
    return torch.as_tensor(amplitude, dtype=dtype).expand(steps, batch, n)


def setup_distributed():
    """``(rank, world_size)``; initialises the gloo process group under torchrun."""
    if "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) == 1:
        return 0, 1
    dist.init_process_group("gloo")
    return dist.get_rank(), dist.get_world_size()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run (CI)")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None, help="time steps per sample")
    parser.add_argument("--batch", type=int, default=8, help="global batch size")
    parser.add_argument("--target", type=float, default=3.0, help="spikes per neuron")
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float64")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dump", default=None, help="save gradients and weights here")
    args = parser.parse_args(argv)
    epochs = args.epochs if args.epochs is not None else (3 if args.quick else 30)
    steps = args.steps if args.steps is not None else (600 if args.quick else 1200)
    dtype = getattr(torch, args.dtype)

    torch.set_num_threads(1)  # one core per process
    rank, world = setup_distributed()
    if args.batch % world:
        raise SystemExit(f"the global batch ({args.batch}) must split evenly over {world} "
                         f"processes")
    spec = build_spec(seed=args.seed)
    module = NetworkModule(spec, dtype=dtype, path="naive")
    model = module
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(module)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)
    currents = global_batch(args.batch, steps, spec.populations["H"].size, args.seed, dtype)
    share = args.batch // world
    local = currents[:, rank * share:(rank + 1) * share]

    losses, first_grads = [], None
    start = time.perf_counter()
    for epoch in range(epochs):
        out = model({"H": local})
        counts = out.spikes["H"].sum(0)  # (local batch, N)
        loss = ((counts - args.target) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        if first_grads is None:
            first_grads = {name: p.grad.detach().clone() for name, p in
                           module.named_parameters()}
        optimizer.step()
        # the global mean loss, for printing (every process computed its share's mean)
        total = loss.detach().clone()
        if world > 1:
            dist.all_reduce(total)
            total /= world
        losses.append(float(total))
        if rank == 0:
            print(f"epoch {epoch:3d}  loss {losses[-1]:.6f}  "
                  f"spikes/neuron {float(counts.detach().mean()):.3f}", flush=True)
    elapsed = time.perf_counter() - start
    result = {"losses": losses, "world_size": world, "first_grads": first_grads,
              "weights": {name: p.detach().clone() for name, p in module.named_parameters()},
              "seconds": elapsed}
    if rank == 0:
        print(f"{world} process(es), {epochs} epochs of {steps} steps, global batch "
              f"{args.batch}: {elapsed:.1f} s", flush=True)
        if args.dump:
            torch.save(result, args.dump)
    if world > 1:
        # DistributedDataParallel holds the process group: release it while every rank is
        # still here (a rank destroying it on return from main, after the other rank had
        # exited, hung in gloo's teardown under load), then wait until rank 0 has written
        # its dump and take the group down together (pytorch#75097)
        del model
        gc.collect()
        dist.barrier()
        dist.destroy_process_group()
    return result


if __name__ == "__main__":
    main()
