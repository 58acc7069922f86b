r"""The trained digits network (``train_digits.py``) converted and run in Brian2.

Trains the network of ``examples/train_digits.py`` (same options), converts it with
:func:`hh_plugin.convert.network_from_norse` (the ``Linear``/``ReLU`` encoder runs in torch
and gives each HH neuron its input current; the HH layer, the ``Linear`` readout weights
and the ``LI`` readout become populations and a projection) and runs the whole test set,
in float64, on

* Norse itself (the trained modules, in float64),
* the plugin's torch ``NetworkModule`` of the converted network,
* Brian2's runtime target and C++ standalone (one network holding every test image:
  ``batch`` copies of each layer with block-diagonal weights).

It prints each backend's accuracy, whether the HH spikes and the predictions are identical
to Norse's, the largest readout difference and the time per image::

    python examples/digits_in_brian2.py            # the full test set (450 images)
    python examples/digits_in_brian2.py --quick    # CI: quick training, 40 images
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_digits  # noqa: E402  (the example whose model is transferred)

from hh_plugin.convert import network_from_norse  # noqa: E402
from hh_plugin.torch.network import NetworkModule  # noqa: E402


def as_float64(model):
    """The trained model in float64 (Norse keeps LIParameters as plain tensors, which
    ``.double()`` does not convert)."""
    from norse.torch.functional.leaky_integrator import LIParameters

    model = model.double()
    for layer in model:
        p = getattr(layer, "p", None)
        if isinstance(p, LIParameters):
            layer.p = LIParameters(*(torch.as_tensor(t, dtype=torch.float64) for t in p))
    return model


def run_brian2(converted, device: str, directory=None):
    """(HH spike raster, readout trace, seconds) of the converted network in Brian2."""
    import brian2

    from hh_plugin.brian2 import use_device
    from hh_plugin.brian2.network import build_network

    hh, readout = converted.layers[2], converted.layers[4]
    brian2.start_scope()
    start = time.perf_counter()
    if device == "runtime":
        with use_device("runtime", target="numpy"):
            net = build_network(converted.spec, converted.steps, record=("v",))
            net.run()
    else:
        with use_device("cpp_standalone", directory=directory, build_on_run=False) as s:
            net = build_network(converted.spec, converted.steps, record=("v",))
            net.run()
            s.build(with_output=False)
    seconds = time.perf_counter() - start
    z = converted.per_sample(net.spike_raster(hh, converted.steps), hh)
    v = converted.per_sample(net.trace(readout, "v"), readout)
    return z, v, seconds


def main(argv=None) -> dict:
    args = train_digits.parse_args(argv)
    if args.epochs is None:
        args.epochs = 2 if args.quick else 20
    if args.quick:
        args.steps = min(args.steps, 25)
    torch.set_num_threads(args.threads)
    model, history, _, (X_test, y_test) = train_digits.train(args)
    if args.quick:
        X_test, y_test = X_test[:40], y_test[:40]
    n = len(X_test)
    labels = y_test.numpy()
    model = as_float64(model).eval()
    x = X_test.to(torch.float64)

    results = {}
    start = time.perf_counter()
    with torch.no_grad():
        scores, spikes = train_digits.run(model, x, args.steps)
        outputs, _ = model(x.unsqueeze(0).expand(args.steps, *x.shape))
    results["Norse (float64)"] = (spikes.numpy(), outputs[4].numpy(),
                                  time.perf_counter() - start)

    converted = network_from_norse(model, x, steps=args.steps)
    hh, readout = converted.layers[2], converted.layers[4]
    start = time.perf_counter()
    with torch.no_grad():
        out = NetworkModule(converted.spec, dtype=torch.float64)(steps=args.steps,
                                                                 record=("v",))
    results["plugin torch network"] = (converted.per_sample(out.spikes[hh], hh),
                                       converted.per_sample(out.traces[readout]["v"], readout),
                                       time.perf_counter() - start)
    results["Brian2 runtime (numpy)"] = run_brian2(converted, "runtime")
    with tempfile.TemporaryDirectory() as directory:
        results["Brian2 C++ standalone"] = run_brian2(converted, "cpp_standalone", directory)

    z0, v0, _ = results["Norse (float64)"]
    p0 = v0.max(axis=0).argmax(axis=1)
    summary = {"images": n, "hidden": args.hidden, "steps": args.steps,
               "float32 test accuracy (training run)": history["test_acc"][-1]}
    print(f"{n} test images, {args.hidden} HH neurons, {args.steps} steps of {args.dt_ms} ms")
    print(f"{'backend':26s} {'accuracy':>9s} {'HH spikes':>10s} {'identical':>10s} "
          f"{'same predictions':>17s} {'max |dv|':>9s} {'ms/image':>9s}")
    for name, (z, v, seconds) in results.items():
        prediction = v.max(axis=0).argmax(axis=1)
        row = {"accuracy": float((prediction == labels).mean()),
               "spikes": int(z.sum()), "identical_spikes": bool(np.array_equal(z, z0)),
               "same_predictions": bool(np.array_equal(prediction, p0)),
               "max_dv": float(np.abs(v - v0).max()), "ms_per_image": 1e3 * seconds / n}
        summary[name] = row
        print(f"{name:26s} {row['accuracy']:9.4f} {row['spikes']:10d} "
              f"{str(row['identical_spikes']):>10s} {str(row['same_predictions']):>17s} "
              f"{row['max_dv']:9.1e} {row['ms_per_image']:9.2f}")
    print("(Brian2 times include code generation and, for C++ standalone, compilation)")
    return summary


if __name__ == "__main__":
    main()
