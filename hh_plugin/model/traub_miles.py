r"""Traub & Miles (1991) neuron as in Brian2's ``examples/COBAHH.py`` (Brette et al. 2007).

Rates (1/ms) are shifted by :math:`V_T`; with :math:`u = V - V_T` (mV):

.. math::
    \begin{align*}
    \alpha_m &= 0.32 \cdot 4/\operatorname{exprel}((13 - u)/4), &
    \beta_m &= 0.28 \cdot 5/\operatorname{exprel}((u - 40)/5), \\
    \alpha_h &= 0.128\, e^{(17 - u)/18}, & \beta_h &= 4/(1 + e^{(40 - u)/5}), \\
    \alpha_n &= 0.032 \cdot 5/\operatorname{exprel}((15 - u)/5), &
    \beta_n &= 0.5\, e^{(10 - u)/40},
    \end{align*}

(the example's :math:`0.32 (13 - u)/(e^{(13-u)/4} - 1)`, written without its removable
singularity), currents :math:`g_{Na} m^3 h (V - E_{Na}) + g_{Kd} n^4 (V - E_K) + g_l (V - E_l)`.
Defaults are the example's values for its 20,000 um2 patch in the plugin's units
(:math:`C_m` = 0.2 nF = 2e-4 uF, :math:`g_l` = 10 nS, :math:`g_{Na}` = 20 uS,
:math:`g_{Kd}` = 6 uS), its :math:`V_T = -63` mV and spike threshold -20 mV. The example's
initial potential :math:`E_l + (5\,\xi - 5)` mV, :math:`\xi \sim \mathcal N(0, 1)`, is the
default distribution :math:`\mathcal N(-65, 5)` mV; gates start at steady state (the
example leaves them at 0: pass ``m=0, h=0, n=0`` to reproduce it).
"""

from .definition import (ChannelDefinition, GateDefinition, ModelDefinition,
                         ParameterDefinition, VoltageDistribution, register_model)

TRAUB_MILES = register_model(ModelDefinition(
    name="traub_miles",
    parameters=(
        ParameterDefinition("El", -60.0, "mV", "leak reversal potential"),
        ParameterDefinition("EK", -90.0, "mV", "potassium reversal potential"),
        ParameterDefinition("ENa", 50.0, "mV", "sodium reversal potential"),
        ParameterDefinition("gl", 1e-5, "mS", "leak conductance", "nonnegative"),
        ParameterDefinition("g_na", 0.02, "mS", "maximal sodium conductance", "nonnegative"),
        ParameterDefinition("g_kd", 0.006, "mS", "maximal delayed-rectifier K conductance",
                            "nonnegative"),
        ParameterDefinition("Cm", 2e-4, "uF", "membrane capacitance", "positive"),
        ParameterDefinition("VT", -63.0, "mV", "threshold shift of the rates"),
        ParameterDefinition("V_th", -20.0, "mV", "spike threshold"),
    ),
    gates=(
        GateDefinition("m", alpha="0.32*4/exprel((13 - V + VT)/4)",
                       beta="0.28*5/exprel((V - VT - 40)/5)"),
        GateDefinition("n", alpha="0.032*5/exprel((15 - V + VT)/5)",
                       beta="0.5*exp((10 - V + VT)/40)"),
        GateDefinition("h", alpha="0.128*exp((17 - V + VT)/18)",
                       beta="4/(1 + exp((40 - V + VT)/5))"),
    ),
    channels=(
        ChannelDefinition("Na", "g_na*m**3*h", "ENa"),
        ChannelDefinition("Kd", "g_kd*n**4", "EK"),
        ChannelDefinition("l", "gl", "El"),
    ),
    threshold="V_th",
    capacitance="Cm",
    initial_voltage=VoltageDistribution.normal(-65.0, 5.0),
    max_dt=0.1,
    # rk4 (DOP853 reference, 100 ms at 0.5 and 2 nA, docs/accuracy.md): spike times within
    # 0.0045 ms at 0.04 ms, 0.025 ms at 0.06 ms; at 0.075 ms it is unstable (1 of 8 spikes)
    max_dt_by_method={"rk4": 0.04},
    area=2e4,  # um2: COBAHH's patch, 20,000 um2
    reference="Brian2 examples/COBAHH.py (Brette et al., J. Comput. Neurosci. 23, 2007); "
              "Traub & Miles (1991)",
))
