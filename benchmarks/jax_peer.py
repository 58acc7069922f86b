"""The reference model (``brainpy.state.HH``, JAX-jitted over the time loop) as a timing
peer that runs in its own process, so that it may live in another Python environment than
the plugin (brainpy pulls jax, which the project does not install).

Protocol, one line each way: started as ``python jax_peer.py N T MODE`` (MODE ``fwd``: the
jitted loop; ``fwdbwd``: ``jax.grad`` of :math:`\\sum_t \\sum_i z_{t,i} + 10^{-3} \\sum_i
V_{T,i}` with respect to the input, jitted), it compiles and warms up, prints ``ready``
and a JSON line of versions; then each line ``run`` on standard input times one call and
prints its wall and CPU seconds; ``quit`` (or the end of input) ends it. Float32, dt = 0.01 ms,
a constant 10 uA input, as :mod:`throughput`'s fused rows.

Used by :mod:`throughput` (``--peer-python``); can be run by hand to check an
environment: ``echo run | python benchmarks/jax_peer.py 10000 1000 fwd``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import serve_timings  # noqa: E402  (benchmarks/timing.py)

DT_MS = 0.01


def build(N: int, T: int, mode: str):
    """A no-argument callable that runs the reference model once and blocks until done."""
    import brainpy
    import brainstate
    import brainunit as u
    import jax
    import jax.numpy as jnp
    from brainpy.state import HH

    brainstate.environ.set(dt=DT_MS * u.ms)
    neuron = HH(N)
    brainstate.nn.init_all_states(neuron)
    V0 = neuron.V.value
    current = jnp.full((T, N), 10.0, dtype=jnp.float32)

    def loop(I):
        neuron.V.value = V0  # every call starts from the same state
        return brainstate.transform.for_loop(lambda x: neuron.update(x * u.uA), I)

    if mode == "fwd":
        fn = brainstate.transform.jit(loop)
    elif mode == "fwdbwd":
        def loss(I):
            spikes = loop(I)
            return spikes.sum() + 1e-3 * u.get_magnitude(neuron.V.value).sum()

        fn = brainstate.transform.jit(brainstate.transform.grad(loss))
    else:
        raise SystemExit(f"unknown mode {mode!r}: fwd or fwdbwd")

    def call():
        jax.block_until_ready(fn(current))

    call()  # compile and warm up
    versions = {"brainpy": brainpy.__version__, "brainstate": brainstate.__version__,
                "jax": jax.__version__}
    return call, versions


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 3:
        print("usage: jax_peer.py N T fwd|fwdbwd", file=sys.stderr)
        return 2
    N, T, mode = int(float(argv[0])), int(argv[1]), argv[2]
    call, versions = build(N, T, mode)
    serve_timings(call, versions)
    return 0


if __name__ == "__main__":
    sys.exit(main())
