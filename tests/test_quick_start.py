"""The README's first result without the local SentEval copy: its quick-preset commands, run as printed in a clean
repository with no `../shared/senteval` beside it, whose `fetch.urls` name a (loopback) mirror of the official files,
end in `results.md`. (The mirror's files are rebuilt from the shared copy, so this test needs that copy on the machine
that runs it; the repository under test does not see it.)

The repository is the shipped pipeline with the shipped params.yaml; only the mirror's addresses and a tiny local
model (for a CPU test in seconds) differ. `fetch.local_dir` stays `../shared/senteval`, which does not exist beside
the test's repository: the automatic source must download, verify against the pinned table checksums and say so.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from dvc_helpers import copy_project, init_repo, run
from fewshot_dml.config.params import load_params
from mirror import official_urls

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def readme_quick_commands() -> list[str]:
    """The bash lines of the README's quick-preset block (the block after "A first result")."""
    quick_start = (ROOT / "README.md").read_text(encoding="utf-8").split("A first result", 1)[1]
    block = re.search(r"```bash\n(.*?)```", quick_start, re.S).group(1)
    return [line for line in block.splitlines() if line.strip()]


@pytest.fixture
def clone(tmp_path: Path, tiny_bert_dir: Path, official: tuple[str, dict[str, bytes]]) -> Path:
    """The shipped pipeline in ``tmp_path/repo`` (no ``tmp_path/shared`` beside it), fetching from the mirror."""
    repo = tmp_path / "repo"
    repo.mkdir()
    raw = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    raw["fetch"]["urls"] = official_urls(official[0])
    raw["train"]["model"] = "models/tiny"
    copy_project(ROOT, repo, ("stages", "src", "presets"), model=tiny_bert_dir)
    (repo / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    assert load_params(repo / "params.yaml").fetch.local_dir == "../shared/senteval"
    assert not (tmp_path / "shared").exists()
    init_repo(repo)
    shutil.copy(ROOT / ".dvcignore", repo / ".dvcignore")
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "a clean clone"], repo)
    return repo


def test_the_readme_quick_preset_downloads_from_a_mirror_and_ends_in_results(clone: Path, official: tuple[str, dict[str, bytes]]) -> None:
    commands = readme_quick_commands()
    assert commands[0].startswith("dvc exp run --temp -n quick $(fewshot-dml preset quick)"), commands
    for command in commands[:-1]:
        run(["bash", "-c", command], clone)
    shown = run(["bash", "-c", commands[-1]], clone)  # ... && git show quick-results:reports/results.md
    results = shown[shown.index("# Results") :]
    assert "| mr | 8 |" in results and "| subj | 8 |" in results, results[:3000]
    # The workspace is as it was: --temp ran the experiment in a copy.
    assert run(["git", "status", "--porcelain", "--untracked-files=no"], clone) == ""
    # Each dataset came from the mirror, verified by its pinned table checksum (the card says which source).
    for name in ("mr", "subj"):
        card_path = clone.parent / f"{name}.card.json"
        run(["dvc", "get", ".", f"data/raw/{name}.card.json", "--rev", "quick-results", "-o", str(card_path)], clone)
        card = json.loads(card_path.read_text())
        assert card["source"] == "official" and card["location"] == [f"{official[0]}/datasmall_NB_ACL12.zip"], card
