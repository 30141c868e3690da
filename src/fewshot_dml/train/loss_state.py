"""The trained DML loss module of a run, rebuilt from its ``run.json`` and ``loss_state.pt``.

The analysis (the learned centres) and the attributions (the loss's own class scores) both need it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fewshot_dml.core import rundir
from fewshot_dml.losses import get_spec


def load_loss_module(run_dir: Path, run: Mapping[str, Any]) -> Any:
    """The run's loss module with its trained state, in float32 eval mode; None for a loss without centres."""
    import torch

    spec = get_spec(run["loss"]["base"])
    if spec.centres is None:
        return None
    with torch.random.fork_rng(devices=[]):  # building draws initial centres; the state replaces them
        module = spec.build(int(run["num_classes"]), int(run["embedding_size"]), run["loss"]["hparams"])
    module.load_state_dict(torch.load(rundir.require(Path(run_dir) / rundir.LOSS_STATE), weights_only=True))
    return module.float().eval()
