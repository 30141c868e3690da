"""The roles of an experiment's arms: one place for the names every stage and report uses.

Every experiment trains the two peer arms beside its DML arm (``dvc.yaml``'s train matrix). An arm's
*kind* says who trains it: ``baseline`` (CCE alone), ``setfit`` (the setfit library's recipe) or
``dml`` (CCE + a DML loss). Reports and metric keys name an arm by its *role*: ``cce``, ``setfit``
or ``dml`` (the experiment's DML loss, whatever it is).
"""

from __future__ import annotations

BASELINE = "cce"  # the baseline arm's loss name and role
SETFIT = "setfit"  # the SetFit peer arm's loss name and role
DML = "dml"  # the role of the experiment's DML arm
PEERS = (BASELINE, SETFIT)  # the arms every experiment trains beside its DML arm
ROLES = (BASELINE, SETFIT, DML)

# Arm kinds (LossSpec.kind): who trains the arm.
KIND_BASELINE = "baseline"
KIND_SETFIT = "setfit"
KIND_DML = "dml"
KINDS = (KIND_BASELINE, KIND_SETFIT, KIND_DML)
