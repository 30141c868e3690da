"""A loss is one file: adding one retrains nothing, editing one retrains only its arm (through DVC itself).

A temporary repository with the README's own CSV set, one seed and the tiny model trains the three
arms; then the README's "Adding a loss" example is added as a new file, a loss of our own (a plain
``torch.nn.Module``, not from pytorch-metric-learning) trains through the same contract, and
``dvc status`` after ``dvc repro check`` names exactly the stages that must rerun.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from dvc_helpers import CHECK, copy_project, init_repo, run

ROOT = Path(__file__).resolve().parents[1]
LOSSES = Path("src/fewshot_dml/losses")

pytestmark = pytest.mark.slow

OWN_LOSS = '''"""Mean cosine to the batch's class means: a loss of our own, not from pytorch-metric-learning."""

from __future__ import annotations

from typing import Any


def build(num_classes: int, emb_dim: int, hparams: Any) -> Any:
    import torch
    import torch.nn.functional as F

    class MeanCosine(torch.nn.Module):
        def __init__(self, scale: float) -> None:
            super().__init__()
            self.scale = scale

        def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            e = F.normalize(embeddings, dim=1)
            classes = labels.unique()
            means = torch.stack([e[labels == c].mean(0) for c in classes])
            target = (labels[:, None] == classes[None, :]).float()
            return F.cross_entropy(self.scale * e @ F.normalize(means, dim=1).T, target)

    return MeanCosine(float(hparams["scale"]))


from fewshot_dml.catalog.loss_spec import LossSpec, positive  # noqa: E402

SPEC = LossSpec(name="meancos", doc="Mean cosine to class means (ours).", hparams={"scale": positive()},
                factory=build, needs_pairs=True)
'''


def readme_block(heading: str, language: str) -> str:
    section = (ROOT / "README.md").read_text(encoding="utf-8").split(heading, 1)[1].split("\n## ", 1)[0]
    return re.search(rf"```{language}\n(.*?)```", section, re.S).group(1)


def stale(repo: Path) -> set[str]:
    """The fetch, sample and train stages `dvc status` lists after `check` has recorded the sources (check
    always runs; the stages after train were never run here)."""
    run(["dvc", "repro", "--single-item", CHECK], repo)
    out = run(["dvc", "status", "train"], repo)
    return {s for s in re.findall(r"^(\S+):\s*$", out, re.M) if s.startswith(("fetch@", "sample@", "train@"))}


def set_params(repo: Path, update) -> None:
    raw = yaml.safe_load((repo / "params.yaml").read_text(encoding="utf-8"))
    update(raw)
    (repo / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, tiny_bert_dir: Path) -> Path:
    repo = tmp_path_factory.mktemp("losses")
    copy_project(ROOT, repo, ("stages", "src", "tests/data/own"), model=tiny_bert_dir)
    raw = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    own = yaml.safe_load(readme_block("## Your own data", "yaml"))["own_datasets"]
    raw.update(datasets=["intents"], own_datasets={"intents": own["intents"]}, sample_sizes=[12], seeds=[0], loss="supcon")
    raw["sample"]["eval_max"] = 24
    raw["train"].update(
        model="models/tiny", steps=1, batch_size=8, eval_batch_size=32, max_length=24, warmup_steps=0, threads=1, save_weights=False
    )
    (repo / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    init_repo(repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "init"], repo)
    run(["dvc", "repro", "train"], repo)
    assert stale(repo) == set()
    return repo


@pytest.fixture(autouse=True)
def restored(repo: Path) -> Iterator[None]:
    """Each test starts from the committed study, whatever ran before it (any order, or alone)."""
    params = (repo / "params.yaml").read_bytes()
    yield
    (repo / "params.yaml").write_bytes(params)
    run(["git", "checkout", "--", "src"], repo)
    run(["git", "clean", "-fdq", "src"], repo)  # a loss file a test added
    if stale(repo):
        run(["dvc", "repro", "train"], repo)  # from the run-cache


def test_editing_one_loss_file_marks_only_its_arms_train_stages(repo: Path) -> None:
    path = repo / LOSSES / "supcon.py"
    original = path.read_text(encoding="utf-8")
    path.write_text(original + "\n# an edit\n", encoding="utf-8")
    try:
        assert stale(repo) == {"train@intents-12-supcon"}
        other = repo / LOSSES / "triplet.py"  # a loss no arm of the grid uses
        path.write_text(original, encoding="utf-8")
        other.write_text(other.read_text(encoding="utf-8") + "\n# an edit\n", encoding="utf-8")
        assert stale(repo) == set()
    finally:
        run(["git", "checkout", "--", "src"], repo)
    assert stale(repo) == set()


def test_a_new_loss_file_retrains_nothing_until_it_is_the_experiments_loss(repo: Path) -> None:
    (repo / LOSSES / "lifted.py").write_text(readme_block("## Adding a loss", "python"), encoding="utf-8")
    section = yaml.safe_load(readme_block("## Adding a loss", "yaml"))
    set_params(repo, lambda raw: raw["losses"].update(section))
    assert stale(repo) == set()  # a new file and its section: nothing to rerun
    set_params(repo, lambda raw: raw.update(loss="lifted"))
    assert stale(repo) == {"train@intents-12-lifted"}


def test_a_loss_of_our_own_trains_through_the_same_contract(repo: Path) -> None:
    (repo / LOSSES / "meancos.py").write_text(OWN_LOSS, encoding="utf-8")
    set_params(
        repo, lambda raw: (raw["losses"].update(meancos={"beta": 0.4, "dml_on": "pooled", "scale": 10.0}), raw.update(loss="meancos"))
    )
    out = run(["dvc", "repro", "train"], repo)
    ran = re.findall(r"Running stage '([^']+)'", out)
    assert [s for s in ran if s.startswith("train@")] == ["train@intents-12-meancos"], ran
    record = yaml.safe_load((repo / "data/raw/arms/meancos.json").read_text())
    assert record["loss"] == "meancos" and record["file"] == "losses/meancos.py"
    assert (repo / "data/runs/intents-12-meancos/0/metrics.json").is_file()
