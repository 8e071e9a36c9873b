"""Planning beside the pipeline: estimate memory, time and cost of a training setting; advise a route.

Public API:
    estimate(cfg, *, num_params=None, arch=None, tokens=None, **setting) -> Estimate   (.to_dict(), .fits)
    check_fits(cfg, *, num_params=None, arch=None) -> dict      raises DoesNotFitError saying what to change
    compare(cfg, ...) -> list[Estimate]                          full FT, LoRA, QLoRA, prefix tuning
    DoesNotFitError(UserError, ValueError)
"""

from verticalize.plan.estimator import DoesNotFitError, Estimate, check_fits, compare, estimate

__all__ = ["DoesNotFitError", "Estimate", "check_fits", "compare", "estimate"]
