"""Brian2's ``examples/COBAHH.py``, written by hand as the example writes it: the reference
of ``tests/test_cobahh.py`` and of ``benchmarks/cobahh.py``.

Provenance: https://github.com/brian-team/brian2/blob/master/examples/COBAHH.py
(R. Brette, Dec 2007; Brette et al., J. Comput. Neurosci. 23, 2007, benchmark 3), read at
commit 087e94d84e981db67ef9fa097386638a4c206c3a. Equations, parameters, threshold,
refractory period, connection rule and initialisation are the example's; what differs:
explicit objects instead of the example's ``run()`` over the script's namespace (so it
can share a process with other networks), optional index pairs and initial values
instead of the example's draws (to give both sides the same realisation), and no plot.
It is not part of the package: the package builds COBAHH from its network specification
(:func:`hh_plugin.network.cobahh.cobahh_network`).
"""

from __future__ import annotations

import numpy as np


def cobahh_example(connectivity=None, initial=None, name="example"):
    """Build the example's ``P``, ``Ce`` and ``Ci`` in the current Brian2 device.

    ``connectivity``: ``None`` (the example's ``connect(p=0.02)``) or
    ``((Ce_i, Ce_j), (Ci_i, Ci_j))``; ``initial``: ``None`` (the example's random
    initialisation) or ``{'v': mV, 'ge': nS, 'gi': nS}`` arrays. Returns
    ``(P, Ce, Ci)``; the caller adds monitors and runs them in a ``Network`` on the
    default clock (the example's ``dt`` is Brian2's default, 0.1 ms).
    """
    from brian2 import (Equations, NeuronGroup, Synapses, cm, ms, msiemens, mV, nS, siemens,
                        ufarad, umetre)

    # Parameters
    area = 20000 * umetre ** 2
    Cm = (1 * ufarad * cm ** -2) * area
    gl = (5e-5 * siemens * cm ** -2) * area
    El = -60 * mV
    EK = -90 * mV
    ENa = 50 * mV
    g_na = (100 * msiemens * cm ** -2) * area
    g_kd = (30 * msiemens * cm ** -2) * area
    VT = -63 * mV
    # Time constants
    taue = 5 * ms
    taui = 10 * ms
    # Reversal potentials
    Ee = 0 * mV
    Ei = -80 * mV
    we = 6 * nS  # excitatory synaptic weight
    wi = 67 * nS  # inhibitory synaptic weight

    # The model
    eqs = Equations('''
    dv/dt = (gl*(El-v)+ge*(Ee-v)+gi*(Ei-v)-
             g_na*(m*m*m)*h*(v-ENa)-
             g_kd*(n*n*n*n)*(v-EK))/Cm : volt
    dm/dt = alpha_m*(1-m)-beta_m*m : 1
    dn/dt = alpha_n*(1-n)-beta_n*n : 1
    dh/dt = alpha_h*(1-h)-beta_h*h : 1
    dge/dt = -ge*(1./taue) : siemens
    dgi/dt = -gi*(1./taui) : siemens
    alpha_m = 0.32*(mV**-1)*(13*mV-v+VT)/
             (exp((13*mV-v+VT)/(4*mV))-1.)/ms : Hz
    beta_m = 0.28*(mV**-1)*(v-VT-40*mV)/
            (exp((v-VT-40*mV)/(5*mV))-1)/ms : Hz
    alpha_h = 0.128*exp((17*mV-v+VT)/(18*mV))/ms : Hz
    beta_h = 4./(1+exp((40*mV-v+VT)/(5*mV)))/ms : Hz
    alpha_n = 0.032*(mV**-1)*(15*mV-v+VT)/
             (exp((15*mV-v+VT)/(5*mV))-1.)/ms : Hz
    beta_n = .5*exp((10*mV-v+VT)/(40*mV))/ms : Hz
    ''')
    namespace = dict(area=area, Cm=Cm, gl=gl, El=El, EK=EK, ENa=ENa, g_na=g_na, g_kd=g_kd,
                     VT=VT, taue=taue, taui=taui, Ee=Ee, Ei=Ei, we=we, wi=wi)

    P = NeuronGroup(4000, model=eqs, threshold='v>-20*mV', refractory=3*ms,
                    method='exponential_euler', namespace=namespace, name=name)
    Pe = P[:3200]
    Pi = P[3200:]
    Ce = Synapses(Pe, P, on_pre='ge+=we', namespace=namespace, name=f"{name}_Ce")
    Ci = Synapses(Pi, P, on_pre='gi+=wi', namespace=namespace, name=f"{name}_Ci")
    if connectivity is None:
        Ce.connect(p=0.02)
        Ci.connect(p=0.02)
    else:
        (ei, ej), (ii, ij) = connectivity
        Ce.connect(i=np.asarray(ei), j=np.asarray(ej))
        Ci.connect(i=np.asarray(ii), j=np.asarray(ij))

    # Initialization
    if initial is None:
        P.v = 'El + (randn() * 5 - 5)*mV'
        P.ge = '(randn() * 1.5 + 4) * 10.*nS'
        P.gi = '(randn() * 12 + 20) * 10.*nS'
    else:
        P.v = np.asarray(initial["v"]) * mV
        P.ge = np.asarray(initial["ge"]) * nS
        P.gi = np.asarray(initial["gi"]) * nS
    return P, Ce, Ci
