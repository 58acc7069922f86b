"""A small Norse network with an HH layer, run for 5 ms and trained for one step.

Architecture (all Norse modules, the HH cell from hh_plugin)::

    input (batch, 16) --Linear--> current (uA) --HHCell--> spikes --Linear--> LICell --> readout

The input is fed for T steps of dt = 0.025 ms (``dt=2.5e-5`` s, Norse's unit); the
readout is the maximum over time of the leaky integrator's voltage, classified with a
cross-entropy loss. One Adam step is taken and the loss is printed before and after.

Run: ``python examples/norse_network.py``
"""

import argparse
import time

import torch
from norse.torch import LICell, SequentialState

from hh_plugin import HHSpec
from hh_plugin.torch import HHCell


def build(hidden: int = 32, classes: int = 3, dt: float = 2.5e-5) -> SequentialState:
    return SequentialState(
        torch.nn.Linear(16, hidden),
        HHCell(p=HHSpec(), dt=dt, V_init=-65.0),
        torch.nn.Linear(hidden, classes, bias=False),
        LICell(dt=dt),
    )


def forward(model: SequentialState, x: torch.Tensor, steps: int) -> torch.Tensor:
    state, readout = None, []
    for _ in range(steps):
        out, state = model(x, state)
        readout.append(out)
    return torch.stack(readout).amax(0)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="time steps (0.025 ms each)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    model = build()
    with torch.no_grad():  # drive the HH layer into its firing range (~5-30 uA)
        model[0].weight.mul_(40.0)
        model[0].bias.fill_(5.0)
    x = torch.rand(8, 16)
    y = torch.randint(0, 3, (8,))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)

    start = time.perf_counter()
    loss = torch.nn.functional.cross_entropy(forward(model, x, args.steps), y)
    optimizer.zero_grad()
    loss.backward()
    grad_norm = sum(p.grad.norm() ** 2 for p in model.parameters()) ** 0.5
    optimizer.step()
    with torch.no_grad():
        after = torch.nn.functional.cross_entropy(forward(model, x, args.steps), y)
    print(f"loss before {loss.item():.4f}, after one Adam step {after.item():.4f}, "
          f"gradient norm {grad_norm:.3g}, {time.perf_counter() - start:.2f} s")
    return loss.item(), after.item()


if __name__ == "__main__":
    main()
