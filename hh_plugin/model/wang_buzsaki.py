r"""Wang & Buzsaki (1996) interneuron: BrainPy's ``brainpy.state.WangBuzsakiHH``.

Sodium activation is instantaneous, :math:`m = m_\infty(V) = \alpha_m/(\alpha_m+\beta_m)`,
and the kinetic gates :math:`h, n` run :math:`\phi = 5` times faster than their rates:

.. math::
    \begin{align*}
    \alpha_m &= 1/\operatorname{exprel}(-0.1(V+35)), & \beta_m &= 4 e^{-(V+60)/18},\\
    \alpha_h &= 0.07 e^{-(V+58)/20}, & \beta_h &= 1/(e^{-0.1(V+28)} + 1),\\
    \alpha_n &= 0.1/\operatorname{exprel}(-0.1(V+34)), & \beta_n &= 0.125 e^{-(V+44)/80},
    \end{align*}

:math:`\dot x = \phi(\alpha_x(1-x) - \beta_x x)` for :math:`x \in \{h, n\}`, currents
:math:`g_{Na} m_\infty^3 h (V - E_{Na}) + g_K n^4 (V - E_K) + g_L (V - E_L)`. Defaults and
the initial state (:math:`V = -65` mV, :math:`h = 0.6`, :math:`n = 0.32`) are BrainPy's.
"""

from .definition import (ChannelDefinition, GateDefinition, ModelDefinition,
                         ParameterDefinition, VoltageDistribution, register_model)

WANG_BUZSAKI = register_model(ModelDefinition(
    name="wang_buzsaki",
    parameters=(
        ParameterDefinition("ENa", 55.0, "mV", "sodium reversal potential"),
        ParameterDefinition("gNa", 35.0, "mS", "maximal sodium conductance", "nonnegative"),
        ParameterDefinition("EK", -90.0, "mV", "potassium reversal potential"),
        ParameterDefinition("gK", 9.0, "mS", "maximal potassium conductance", "nonnegative"),
        ParameterDefinition("EL", -65.0, "mV", "leak reversal potential"),
        ParameterDefinition("gL", 0.1, "mS", "leak conductance", "nonnegative"),
        ParameterDefinition("V_th", 20.0, "mV", "spike threshold"),
        ParameterDefinition("phi", 5.0, "1", "rate factor of h and n", "positive"),
        ParameterDefinition("C", 1.0, "uF", "membrane capacitance", "positive"),
    ),
    gates=(
        GateDefinition.instantaneous("m", alpha="1/exprel(-0.1*(V + 35))",
                                     beta="4*exp(-(V + 60)/18)"),
        GateDefinition("h", alpha="0.07*exp(-(V + 58)/20)", beta="1/(exp(-0.1*(V + 28)) + 1)",
                       rate_factor="phi"),
        GateDefinition("n", alpha="0.1/exprel(-0.1*(V + 34))", beta="0.125*exp(-(V + 44)/80)",
                       rate_factor="phi"),
    ),
    channels=(
        ChannelDefinition("Na", "gNa*m**3*h", "ENa"),
        ChannelDefinition("K", "gK*n**4", "EK"),
        ChannelDefinition("L", "gL", "EL"),
    ),
    initial_voltage=VoltageDistribution.constant(-65.0),
    initial_gates={"h": 0.6, "n": 0.32},
    max_dt=0.1,
    # rk4 (DOP853 reference, 100 ms at 1 and 5 uA, docs/accuracy.md): spike times within
    # 0.0089 ms at 0.05 ms, 0.027 ms at 0.075 ms, 0.098 ms at 0.1 ms; a spike lost at 0.2 ms
    max_dt_by_method={"rk4": 0.05},
    area=1e8,  # um2: the values are per cm2 (Wang & Buzsaki 1996)
    reference="brainpy.state.WangBuzsakiHH (BrainPy); Wang & Buzsaki, J. Neurosci. 16 (1996)",
))
