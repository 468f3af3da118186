r"""The paper's learning-rate schedule (section 5), and shortened versions of it.

Stage :math:`i = 0 .. 7` runs :math:`3^i` passes over the training set at learning rate
:math:`10^{-3} \cdot 10^{-i/7}`: 3,280 passes in all, the last 2,187 at :math:`10^{-4}`.
"""
import math

import numpy as np

__all__ = ["paper_schedule", "check_schedule"]


def paper_schedule(stages=8, pass_scale=1.0, start_stage=0, lr0=1e-3):
    r"""The paper's learning-rate schedule (section 5), optionally shortened.

    Stage :math:`i` runs :math:`\max(1, \operatorname{round}(3^i \cdot \text{pass\_scale}))` passes
    over the training set at learning rate :math:`\text{lr0} \cdot 10^{-i/7}`, for
    ``i = start_stage .. stages - 1``. The defaults are the paper's: 8 stages, 3,280 passes.
    ``start_stage = 7, stages = 8`` is the 3^7 passes at 1e-4 of the paper's Table 2.
    Returns a list of ``{"stage": i, "passes": n, "lr": lr}``.
    """
    if int(stages) != stages or stages < 1:
        raise ValueError(f"the number of stages must be an integer >= 1, got {stages}")
    if int(start_stage) != start_stage or not 0 <= start_stage < stages:
        raise ValueError(f"start_stage must be an integer in [0, {stages - 1}], got {start_stage}")
    if not (pass_scale > 0 and math.isfinite(pass_scale)):
        raise ValueError(f"pass_scale must be a finite number > 0, got {pass_scale}")
    if not (lr0 > 0 and math.isfinite(lr0)):
        raise ValueError(f"the learning rate must be a finite number > 0, got {lr0}")
    return [{"stage": i, "passes": _passes(i, pass_scale), "lr": lr0 * 10 ** (-i / 7)}
            for i in range(int(start_stage), int(stages))]


def _passes(i, pass_scale):
    try:
        n = 3 ** i * pass_scale
    except OverflowError:  # 3^i beyond the float range
        n = math.inf
    if not math.isfinite(n):
        raise ValueError(f"stage {i} would run 3^{i} x {pass_scale} passes, more than a float holds: "
                         "fewer stages or a smaller pass_scale")
    return max(1, round(n))


def check_schedule(schedule):
    """A schedule as a list of ``{"stage": int, "passes": int >= 1, "lr": finite float > 0}``; ``ValueError`` otherwise."""
    if not isinstance(schedule, (list, tuple)) or not schedule:
        raise ValueError("the schedule must be a non-empty list of {'stage', 'passes', 'lr'}")
    out = []
    for i, st in enumerate(schedule):
        passes, lr = st.get("passes"), st.get("lr")
        if not isinstance(passes, (int, np.integer)) or passes < 1:
            raise ValueError(f"schedule stage {i}: passes must be an integer >= 1, got {passes!r}")
        if not (isinstance(lr, (int, float)) and lr > 0 and math.isfinite(lr)):
            raise ValueError(f"schedule stage {i}: lr must be a finite number > 0, got {lr!r}")
        out.append({"stage": int(st.get("stage", i)), "passes": int(passes), "lr": float(lr)})
    return out
