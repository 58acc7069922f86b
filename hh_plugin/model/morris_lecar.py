r"""Morris & Lecar (1981) barnacle muscle fibre: BrainPy's ``brainpy.state.MorrisLecar``.

Calcium activation is instantaneous and the potassium gate :math:`W` relaxes to its
steady state:

.. math::
    \begin{align*}
    M_\infty &= \tfrac12\big(1 + \tanh((V - V_1)/V_2)\big), &
    W_\infty &= \tfrac12\big(1 + \tanh((V - V_3)/V_4)\big), \\
    \tau_W &= 1/\big(\phi \cosh((V - V_3)/(2 V_4))\big), &
    \dot W &= (W_\infty - W)/\tau_W,
    \end{align*}

:math:`C \dot V = -g_{Ca} M_\infty (V - V_{Ca}) - g_K W (V - V_K) - g_{leak}(V - V_{leak}) + I`.
Defaults and the initial state (:math:`V \sim \mathcal U(-70, -60)` mV, :math:`W = 0.02`)
are BrainPy's; :math:`\phi` is in 1/ms.
"""

from .definition import (ChannelDefinition, GateDefinition, ModelDefinition,
                         ParameterDefinition, VoltageDistribution, register_model)

MORRIS_LECAR = register_model(ModelDefinition(
    name="morris_lecar",
    parameters=(
        ParameterDefinition("V_Ca", 130.0, "mV", "calcium reversal potential"),
        ParameterDefinition("g_Ca", 4.4, "mS", "maximal calcium conductance", "nonnegative"),
        ParameterDefinition("V_K", -84.0, "mV", "potassium reversal potential"),
        ParameterDefinition("g_K", 8.0, "mS", "maximal potassium conductance", "nonnegative"),
        ParameterDefinition("V_leak", -60.0, "mV", "leak reversal potential"),
        ParameterDefinition("g_leak", 2.0, "mS", "leak conductance", "nonnegative"),
        ParameterDefinition("C", 20.0, "uF", "membrane capacitance", "positive"),
        ParameterDefinition("V1", -1.2, "mV", "half-activation potential of M"),
        ParameterDefinition("V2", 18.0, "mV", "slope of M's activation", "nonzero"),
        ParameterDefinition("V3", 2.0, "mV", "half-activation potential of W"),
        ParameterDefinition("V4", 30.0, "mV", "slope of W's activation", "nonzero"),
        ParameterDefinition("phi", 0.04, "1/ms", "rate of W", "positive"),
        ParameterDefinition("V_th", 10.0, "mV", "spike threshold"),
    ),
    gates=(
        GateDefinition.instantaneous("M", x_inf="0.5*(1 + tanh((V - V1)/V2))"),
        GateDefinition.relaxing("W", x_inf="0.5*(1 + tanh((V - V3)/V4))",
                                tau="1/(phi*cosh((V - V3)/(2*V4)))"),
    ),
    channels=(
        ChannelDefinition("Ca", "g_Ca*M", "V_Ca"),
        ChannelDefinition("K", "g_K*W", "V_K"),
        ChannelDefinition("leak", "g_leak", "V_leak"),
    ),
    initial_voltage=VoltageDistribution.uniform(-70.0, -60.0),
    initial_gates={"W": 0.02},
    max_dt=1.0,
    # rk4 (DOP853 reference, 100 ms at 150 and 200 uA, docs/accuracy.md): spike times within
    # 0.0079 ms at 1 ms (0.00015 ms at 0.1 ms); not measured beyond exponential Euler's bound
    max_dt_by_method={"rk4": 1.0},
    area=1e8,  # um2: the values are per cm2 (Morris & Lecar 1981: C = 20 uF/cm2)
    reference="brainpy.state.MorrisLecar (BrainPy); Morris & Lecar, Biophys. J. 35 (1981)",
))
