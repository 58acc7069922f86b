r"""Declare your own HH-type model and run it on both backends.

The classic Hodgkin-Huxley squid axon (g_L = 0.3 mS/cm2, E_L = -54.3 mV) with NEURON's
temperature factor :math:`3^{(T - 6.3)/10}` on every rate, declared in about twenty lines.
The script runs it at two temperatures on torch and Brian2, cross-checks the two
backends step by step, compares the spike times with NEURON's built-in ``hh``
mechanism (when ``neuron`` is installed), and saves a run to the portable file and loads
it back.

    python examples/custom_model.py            # writes examples/output/custom_model.h5
"""

from __future__ import annotations

from hh_plugin.model import (ChannelDefinition, GateDefinition, ModelDefinition,
                             ParameterDefinition as P, register_model)

TEMPERATURE_FACTOR = "Q10**((celsius - T_ref)/10)"

CLASSIC_HH = register_model(ModelDefinition(
    name="classic_hh_q10",
    parameters=(P("ENa", 50.0, "mV"), P("gNa", 120.0, "mS", constraint="nonnegative"),
                P("EK", -77.0, "mV"), P("gK", 36.0, "mS", constraint="nonnegative"),
                P("EL", -54.3, "mV"), P("gL", 0.3, "mS", constraint="nonnegative"),
                P("C", 1.0, "uF", constraint="positive"), P("V_th", -20.0, "mV"),
                P("celsius", 6.3, "1", "temperature (degrees C)"),
                P("T_ref", 6.3, "1", "temperature of the rates (degrees C)"),
                P("Q10", 3.0, "1", "rate factor per 10 degrees C", "positive")),
    gates=(GateDefinition("m", "1/exprel(-(V + 40)/10)", "4*exp(-(V + 65)/18)",
                          rate_factor=TEMPERATURE_FACTOR),
           GateDefinition("h", "0.07*exp(-(V + 65)/20)", "1/(1 + exp(-(V + 35)/10))",
                          rate_factor=TEMPERATURE_FACTOR),
           GateDefinition("n", "0.1/exprel(-(V + 55)/10)", "0.125*exp(-(V + 65)/80)",
                          rate_factor=TEMPERATURE_FACTOR)),
    channels=(ChannelDefinition("Na", "gNa*m**3*h", "ENa"),
              ChannelDefinition("K", "gK*n**4", "EK"), ChannelDefinition("L", "gL", "EL")),
    initial_voltage=-65.0, max_dt=0.05,
    reference="Hodgkin & Huxley (1952) as NEURON's hh.mod, with its Q10 = 3 from 6.3 degrees C",
))

import argparse  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

#: Constant current (uA for the plugin's 1 cm2-normalised units; 1 nA on NEURON's
#: 1e-4 cm2 soma) and run length (ms).
CURRENT_UA, DURATION_MS = 10.0, 50.0


def run_torch(celsius: float, dt_ms: float, duration_ms: float = DURATION_MS):
    """Spike output (steps,) and V trace (mV) of one neuron, torch float64."""
    import torch

    from hh_plugin import HHSpec
    from hh_plugin.torch import HH

    module = HH(p=HHSpec(model=CLASSIC_HH, celsius=celsius), dt=dt_ms * 1e-3,
                V_init="default", record_states=True)  # the model's -65 mV, as NEURON's
    steps = int(round(duration_ms / dt_ms))
    with torch.no_grad():
        z, states = module(torch.full((steps, 1), CURRENT_UA, dtype=torch.float64),
                           module.initial_state(torch.zeros(1, dtype=torch.float64)))
    return z[:, 0].numpy(), states.V[:, 0].numpy()


def run_brian2(celsius: float, dt_ms: float, duration_ms: float = DURATION_MS):
    """The same neuron as a Brian2 group (numpy target): spike output and V (mV)."""
    import brian2 as b2

    from hh_plugin import HHSpec
    from hh_plugin.brian2 import neuron_group

    b2.start_scope()
    b2.prefs.codegen.target = "numpy"
    group = neuron_group(1, HHSpec(model=CLASSIC_HH, celsius=celsius),
                         current=CURRENT_UA * b2.uA, dt=dt_ms * b2.ms)
    monitor = b2.StateMonitor(group, "V", record=True, when="end")
    spikes = b2.SpikeMonitor(group)
    steps = int(round(duration_ms / dt_ms))
    # an empty namespace: the group's own celsius is used, not this function's argument of
    # the same name (Brian2 would warn that the internal variable shadows it)
    b2.Network(group, monitor, spikes).run(steps * dt_ms * b2.ms, namespace={})
    z = np.zeros(steps)
    z[np.round(np.asarray(spikes.t / b2.ms) / dt_ms).astype(int)] = 1
    return z, np.asarray(monitor.V / b2.mV)[0]


def neuron_spike_times(celsius: float, dt_ms: float, duration_ms: float = DURATION_MS):
    """Spike times (ms, upward crossings of -20 mV) of NEURON's built-in ``hh`` mechanism
    on a 1e-4 cm2 soma with a 1 nA clamp (10 uA/cm2), exact rates (no tables)."""
    from neuron import h

    h.load_file("stdrun.hoc")
    soma = h.Section(name="soma")
    soma.L = soma.diam = np.sqrt(1e4 / np.pi)  # um: area 1e4 um2 = 1e-4 cm2
    soma.insert("hh")
    h.usetable_hh = 0
    h.celsius = celsius
    clamp = h.IClamp(soma(0.5))
    clamp.delay, clamp.dur, clamp.amp = 0.0, 1e9, CURRENT_UA * 0.1  # nA
    detector = h.NetCon(soma(0.5)._ref_v, None, sec=soma)
    detector.threshold = CLASSIC_HH.defaults["V_th"]
    times = h.Vector()
    detector.record(times)
    # NEURON's default integration, set explicitly: these settings are process-wide
    h.CVode().active(0)
    h.secondorder = 0  # backward Euler
    h.dt, h.steps_per_ms = dt_ms, 1.0 / dt_ms
    h.finitialize(-65.0)
    h.continuerun(duration_ms)
    return np.array(times.to_python())


def spike_times(z, dt_ms: float):
    """Times (ms) of the spike steps: a spike in step k is at the step's end, (k+1) dt."""
    return (np.flatnonzero(z) + 1) * dt_ms


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dt", type=float, default=0.01, help="step in ms (default 0.01)")
    parser.add_argument("--temperatures", type=float, nargs="+", default=[6.3, 16.3],
                        help="temperatures in degrees C (default 6.3 16.3)")
    parser.add_argument("--output", default=str(Path(__file__).parent / "output" /
                                                 "custom_model.h5"))
    args = parser.parse_args(argv)
    from hh_plugin import HHSpec
    from hh_plugin.export import load, save

    results = {}
    for celsius in args.temperatures:
        z_torch, V_torch = run_torch(celsius, args.dt)
        z_brian2, V_brian2 = run_brian2(celsius, args.dt)
        same = bool(np.array_equal(z_torch, z_brian2))
        dV = float(np.abs(V_torch - V_brian2).max())
        print(f"{celsius:5.1f} C: torch {int(z_torch.sum())} spikes, Brian2 "
              f"{int(z_brian2.sum())} spikes, identical steps: {same}, max|dV| = {dV:.1e} mV")
        results[celsius] = {"torch": spike_times(z_torch, args.dt), "same": same, "dV": dV}
        try:
            nrn = neuron_spike_times(celsius, args.dt)
        except ImportError:
            print("        (pip install neuron to compare with NEURON's hh mechanism)")
            continue
        ours = results[celsius]["torch"]
        k = min(len(nrn), len(ours))
        shift = float(np.abs(nrn[:k] - ours[:k]).max()) if k else float("nan")
        print(f"        NEURON hh: {len(nrn)} spikes, largest spike-time difference "
              f"{shift:.3f} ms at dt = {args.dt} ms")
        results[celsius]["neuron"] = nrn

    # save a run (parameters, final state, input) and read it back
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    import torch

    from hh_plugin.export.torch_adapter import state_to_arrays
    from hh_plugin.torch import HH

    spec = HHSpec(model=CLASSIC_HH, celsius=args.temperatures[-1])
    module = HH(p=spec, dt=args.dt * 1e-3, V_init="default")
    current = torch.full((int(round(DURATION_MS / args.dt)), 1), CURRENT_UA,
                         dtype=torch.float64)
    with torch.no_grad():
        _, final = module(current, module.initial_state(current[0]))
    save(out, spec, state_to_arrays(final), time=DURATION_MS, dt=args.dt,
         input=current.numpy(), backend="torch", overwrite=True)
    record = load(out)
    assert record.spec == spec
    print(f"saved and reloaded {out} (model {record.spec.model.name!r}, "
          f"celsius = {record.spec.celsius})")
    return results, out


if __name__ == "__main__":
    sys.exit(main() and 0)
