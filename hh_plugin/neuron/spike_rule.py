r"""Brian2's refractory spike rule as a generated NEURON point process.

A population with a refractory period :math:`R` (``Population(refractory=...)``, Brian2's
``threshold='V > V_th', refractory=R``) spikes when :math:`V > V_{th}` and at least
:math:`R` has passed since its last spike: a *level* threshold with dead time, unlike the
rising-edge rule of a plain ``NetCon``. In continuous time that is

- a spike at each upward crossing of :math:`V_{th}` at least :math:`R` after the last
  spike (``WATCH (v > vth)``),
- and, at the end of a refractory period, a spike at once if :math:`V > V_{th}` then
  (a neuron held above threshold fires every :math:`R`; a crossing during the period is
  not lost), also at :math:`t = 0` for a neuron that starts above threshold.

``hhp_Refractory`` implements this with ``net_event`` (the cell's spike source for
``ParallelContext.cell``), ``vth`` (the threshold) in mV and ``refractory`` in ms; the plugin takes
:math:`R` as its whole number of steps, :math:`\lfloor R/\Delta t + 10^{-3}\rfloor\,\Delta t`
(:meth:`hh_plugin.network.Population.refractory_steps`).
"""

from __future__ import annotations

REFRACTORY = "hhp_Refractory"

REFRACTORY_SOURCE = f"""TITLE hh_plugin refractory spike rule (generated; do not edit)
COMMENT
A spike (net_event) at an upward crossing of vth (mV) at least refractory (ms) after
the last spike, and at the end of a refractory period while v > vth.
ENDCOMMENT
NEURON {{
    POINT_PROCESS {REFRACTORY}
    RANGE vth, refractory
    THREADSAFE
}}
UNITS {{
    (mV) = (millivolt)
}}
PARAMETER {{
    vth = 0 (mV)
    refractory = 0 (ms)
}}
ASSIGNED {{
    v (mV)
    tlast (ms)
}}
INITIAL {{
    tlast = -1e9
    net_send(0, 1)
    net_send(0, 3)
}}
NET_RECEIVE(w) {{
    if (flag == 1) {{
        WATCH (v > vth) 2
    }} else if (flag == 2) {{
        if (t - tlast >= refractory - 1e-9) {{
            net_event(t)
            tlast = t
            net_send(refractory, 3)
        }}
    }} else if (flag == 3) {{
        if (v > vth && t - tlast >= refractory - 1e-9) {{
            net_event(t)
            tlast = t
            net_send(refractory, 3)
        }}
    }}
}}
"""
