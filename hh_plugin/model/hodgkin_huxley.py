r"""The reference model: BrainPy's ``brainpy.state.HH`` (Hodgkin & Huxley, 1952).

Rates in 1/ms with V in mV:

.. math::
    \begin{align*}
    \alpha_m &= 1/\operatorname{exprel}(-(V+40)/10), & \beta_m &= 4 e^{-(V+65)/18},\\
    \alpha_h &= 0.07 e^{-(V+65)/20}, & \beta_h &= 1/(1 + e^{-(V+35)/10}),\\
    \alpha_n &= 0.1/\operatorname{exprel}(-(V+55)/10), & \beta_n &= 0.125 e^{-(V+65)/80},
    \end{align*}

currents :math:`g_{Na} m^3 h (V - E_{Na}) + g_K n^4 (V - E_K) + g_L (V - E_L)`.
Defaults are the reference model's (note :math:`g_L = 0.03` mS, ten times below the
classic value, so rest is about -70.68 mV).
"""

from .definition import (ChannelDefinition, GateDefinition, ModelDefinition,
                         ParameterDefinition, register_model)

HODGKIN_HUXLEY = register_model(ModelDefinition(
    name="hodgkin_huxley",
    parameters=(
        ParameterDefinition("ENa", 50.0, "mV", "sodium reversal potential"),
        ParameterDefinition("gNa", 120.0, "mS", "maximal sodium conductance", "nonnegative"),
        ParameterDefinition("EK", -77.0, "mV", "potassium reversal potential"),
        ParameterDefinition("gK", 36.0, "mS", "maximal potassium conductance", "nonnegative"),
        ParameterDefinition("EL", -54.387, "mV", "leak reversal potential"),
        ParameterDefinition("gL", 0.03, "mS", "leak conductance", "nonnegative"),
        ParameterDefinition("V_th", 20.0, "mV", "spike threshold"),
        ParameterDefinition("C", 1.0, "uF", "membrane capacitance", "positive"),
    ),
    gates=(
        GateDefinition("m", "1/exprel(-(V + 40)/10)", "4*exp(-(V + 65)/18)"),
        GateDefinition("h", "0.07*exp(-(V + 65)/20)", "1/(1 + exp(-(V + 35)/10))"),
        GateDefinition("n", "0.1/exprel(-(V + 55)/10)", "0.125*exp(-(V + 65)/80)"),
    ),
    channels=(
        ChannelDefinition("Na", "gNa*m**3*h", "ENa"),
        ChannelDefinition("K", "gK*n**4", "EK"),
        ChannelDefinition("L", "gL", "EL"),
    ),
    # measured vs dt = 0.001 ms, 200 ms at 5-20 uA: same spike counts up to 0.05 ms; at 0.1 ms
    # 14/14 spikes at 10 uA, at most 1 spike lost, inter-spike intervals 4-5% long; 0.2 ms: -2
    max_dt=0.1,
    # rk4 (DOP853 reference, 100 ms at 10 and 20 uA, docs/accuracy.md): spike times within
    # 0.0029 ms at 0.05 ms, 0.0068 ms at 0.075 ms; at 0.1 ms it is unstable (2 of 7 spikes)
    max_dt_by_method={"rk4": 0.05},
    area=1e8,  # um2: the values are per cm2 (Hodgkin & Huxley's squid axon membrane)
    reference="brainpy.state.HH (BrainPy); Hodgkin & Huxley, J. Physiol. 117 (1952)",
))
