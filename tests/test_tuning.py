"""The tuning study: candidates per arm x configuration x inference mode, dev-only selection, held-out tests."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from fewshot_dml.config.sections import AggregateParams
from fewshot_dml.core import layout, rundir
from fewshot_dml.studies.experiments import Experiment
from fewshot_dml.studies.tuning import (
    SETFIT_READS,
    Candidate,
    arm_configs,
    collect,
    compare,
    comparisons,
    flatten,
    mode_accuracies,
    replicate,
    select,
)
from fewshot_dml.studies.tuning_report import one_grid, render, write_figure
from fewshot_dml.train import setfit as setfit_arm

DEFAULTS = {"train": {"lr": 5e-05, "reinit_layers": 0}, "losses": {"supcon": {"temperature": 0.1}, "proxyanchor": {"alpha": 32.0}}}
GRID = tuple((d, 16, seed) for d in ("mr", "cr") for seed in (0, 1, 2))
BASE = {
    "train.lr": "5e-05",
    "train.reinit_layers": "0",
    "infer.knn_k": "1",
    "infer.curve_points": "3",
    "losses.supcon.temperature": "0.1",
    "losses.proxyanchor.alpha": "32",
}

AGG = AggregateParams(confidence=0.95, alpha=0.05, seed=0)


def experiment(name: str, loss: str, **changes: str) -> Experiment:
    return Experiment(name, loss, {}, rev=name, grid=GRID, params={**BASE, "loss": loss, **changes})


def candidate(arm: str, dev: float, eval_: float, config: str = "defaults", mode: str = "classifier", jitter: float = 0.0) -> Candidate:
    values = {cell: eval_ + (jitter * (i % 3 - 1)) for i, cell in enumerate(GRID)}
    return Candidate(arm, config, f"exp-{arm}", mode, {cell: dev for cell in GRID}, values)


def test_mode_accuracies_score_every_mode_on_the_part_given() -> None:
    train = {"embeddings": np.array([[1, 0], [0, 1]], np.float16), "labels": np.array([0, 1])}
    part = {
        "labels": np.array([0, 1, 1]),
        "logits": np.array([[2, 0], [2, 0], [0, 2]], np.float32),
        "embeddings": np.array([[1, 0.1], [0.1, 1], [0, 1]], np.float16),
        "scores": np.array([[0, 9], [0, 9], [0, 9]], np.float32),
    }
    acc = mode_accuracies(part, train, 2, has_proxies=True, knn_k=1, curve_points=3)
    assert acc == pytest.approx({"classifier": 2 / 3, "proxy w=0": 2 / 3, "proxy w=0.5": 2 / 3, "prototype": 1.0, "knn": 1.0})
    assert "proxy w=0" not in mode_accuracies(part, train, 2, has_proxies=False, knn_k=1, curve_points=3)


def test_arm_configs_list_each_configuration_of_an_arm_once_with_what_sets_it_apart() -> None:
    exps = [
        experiment("a", "supcon"),
        experiment("b", "proxyanchor"),
        experiment("c", "supcon", **{"losses.supcon.temperature": "0.05"}),
        experiment("d", "supcon", **{"train.reinit_layers": "1"}),
    ]
    exps = [exps[3], exps[1], exps[2], exps[0]]  # dvc lists the newest first: the order must not matter
    rows = [(arm, config, e.name) for arm, config, e, _ in arm_configs(exps, flatten(DEFAULTS))]
    assert [r for r in rows if r[0] == "cce"] == [("cce", "defaults", "b"), ("cce", "train.reinit_layers=1", "d")]
    assert [r for r in rows if r[0] == "proxyanchor"] == [("proxyanchor", "defaults", "b")]
    assert [r[1] for r in rows if r[0] == "supcon"] == ["defaults", "losses.supcon.temperature=0.05", "train.reinit_layers=1"]
    assert [r for r in rows if r[0] == "setfit"] == [("setfit", "defaults", "d")]  # it reads no reinit_layers


def test_setfit_reads_exactly_the_train_params_the_tuning_study_keys_it_by() -> None:
    source = Path(setfit_arm.__file__).read_text()
    assert tuple(sorted(set(re.findall(r"(?<![.\w])train\.([a-z_]+)", source)))) == tuple(k.removeprefix("train.") for k in SETFIT_READS)


def test_selection_reads_the_development_accuracy_only_and_keeps_the_first_on_ties() -> None:
    first = candidate("supcon", dev=0.70, eval_=0.60, config="first")
    tie = candidate("supcon", dev=0.70, eval_=0.99, config="tie")
    better_on_eval = candidate("supcon", dev=0.65, eval_=0.95, config="eval-only")
    chosen = select([first, tie, better_on_eval])
    assert chosen["supcon"] is first


def test_blocked_comparison_pairs_by_cell_and_refuses_different_grids() -> None:
    treated, base = candidate("supcon", 0.7, 0.66, jitter=0.01), candidate("cce", 0.6, 0.63)
    result = compare(treated, base, AGG)
    assert result.n == 6 and result.gain_pp == pytest.approx(3.0)
    assert result.ci_low_pp < 3.0 < result.ci_high_pp
    partial = Candidate("cce", "defaults", "x", "classifier", base.dev, dict(list(base.eval.items())[:3]))
    with pytest.raises(ValueError, match="different grids"):
        compare(treated, partial, AGG)


def test_the_confirmatory_family_is_the_best_dml_arm_on_dev() -> None:
    chosen = select(
        [
            candidate("cce", 0.6, 0.60, jitter=0.01),
            candidate("setfit", 0.5, 0.50, jitter=0.01),
            candidate("supcon", 0.7, 0.65, jitter=0.01),
            candidate("proxyanchor", 0.65, 0.70, jitter=0.01),
        ]
    )
    best, rows = comparisons(chosen, AGG)
    assert best == "supcon"  # the higher development accuracy, although proxyanchor is better held out
    primary = [(r["treated"], r["baseline"]) for r in rows if r["primary"]]
    assert primary == [("supcon", "cce"), ("supcon", "setfit")]
    assert all(r["p_holm"] >= r["result"].p_value for r in rows)


def write_run(root: Path, exp: str, arm: str, cell: tuple, rng: np.random.Generator, dev_rows: int = 4) -> None:
    run = root / exp / "data/runs" / layout.run_id(*cell, arm)
    run.mkdir(parents=True)
    for name, n in ((rundir.EVAL, 8), (rundir.DEV, dev_rows), (rundir.TRAIN, 4)):
        arrays = {"labels": np.arange(n) % 2, "embeddings": rng.normal(size=(n, 4)).astype(np.float16), "indices": np.arange(n)}
        if name != rundir.TRAIN:
            arrays |= {"logits": rng.normal(size=(n, 2)).astype(np.float32), "scores": rng.normal(size=(n, 2)).astype(np.float32)}
        np.savez(run / name, **arrays)


def reader(root: Path):
    return lambda e, path: (root / e.name / path).read_bytes()


def test_collect_and_render_a_sweep(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    exps = [experiment("tune-supcon", "supcon"), experiment("tune-proxyanchor", "proxyanchor")]
    for e in exps:
        for arm in ("cce", "setfit", e.loss):
            for cell in GRID:
                write_run(tmp_path, e.name, arm, cell, rng)
    candidates = collect(exps, reader(tmp_path), "data/runs")
    # cce and setfit are listed once (the same configuration in both experiments); proxies add w = 0, 0.5.
    assert sorted({(c.arm, c.experiment) for c in candidates}) == [
        ("cce", "tune-supcon"),
        ("proxyanchor", "tune-proxyanchor"),
        ("setfit", "tune-supcon"),
        ("supcon", "tune-supcon"),
    ]
    assert {c.mode for c in candidates if c.arm == "proxyanchor"} == {"classifier", "proxy w=0", "proxy w=0.5", "prototype", "knn"}
    text = render(candidates, exps, ["a note"], "figures/tuning.png", AGG)
    assert "## The issue's goals" in text and "Holm p" in text and "✓" in text and "- a note" in text
    assert text.count("| confirmatory |") == 2
    figure = tmp_path / "tuning.png"
    chosen = select(candidates)
    write_figure(candidates, chosen, figure, AGG)
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_selected_recipes_are_read_again_on_another_protocol(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    sweep = [experiment("tune-supcon", "supcon"), experiment("tune-supcon-t", "supcon", **{"losses.supcon.temperature": "0.05"})]
    per_class = experiment("perclass", "supcon", **{"sample.protocol": "per_class"})
    for e in [*sweep, per_class]:
        for arm in ("cce", "setfit", "supcon"):
            for cell in GRID:
                if not (tmp_path / e.name / "data/runs" / layout.run_id(*cell, arm)).exists():
                    write_run(tmp_path, e.name, arm, cell, rng)
    candidates = collect(sweep, reader(tmp_path), "data/runs")
    again = collect([per_class], reader(tmp_path), "data/runs")
    chosen = select(candidates)
    replicated = replicate(chosen, again)
    assert set(replicated) == {"cce", "setfit"} | ({"supcon"} if chosen["supcon"].experiment == "tune-supcon" else set())
    assert all(replicated[a].mode == chosen[a].mode and replicated[a].experiment == "perclass" for a in replicated)
    text = render(candidates, sweep, [], "t.png", AGG, (again, [per_class]))
    assert "## The tuned recipes on protocol `per_class`" in text


def test_an_empty_development_split_is_refused(tmp_path: Path) -> None:
    e = experiment("tune-supcon", "supcon")
    for arm in ("cce", "setfit", "supcon"):
        for cell in GRID:
            write_run(tmp_path, e.name, arm, cell, np.random.default_rng(0), dev_rows=0)
    with pytest.raises(ValueError, match=r"dev.npz of experiment 'tune-supcon' is empty.*sample.dev_ratio > 0"):
        collect([e], reader(tmp_path), "data/runs")


def test_experiments_of_several_grids_are_refused() -> None:
    other = Experiment("x", "supcon", {}, grid=GRID[:2], params=BASE)
    with pytest.raises(ValueError, match="span 2 grids.*--match"):
        one_grid([experiment("a", "supcon"), other])


@pytest.mark.parametrize("name", [rundir.EVAL, rundir.DEV, rundir.TRAIN])
def test_a_truncated_run_file_names_the_file_and_the_experiment(tmp_path: Path, name: str) -> None:
    e = experiment("tune-supcon", "supcon")
    for arm in ("cce", "setfit", "supcon"):
        for cell in GRID:
            write_run(tmp_path, e.name, arm, cell, np.random.default_rng(0))
    path = tmp_path / e.name / "data/runs" / layout.run_id(*GRID[0], "cce") / name
    path.write_bytes(path.read_bytes()[:100])
    where = re.escape(f"data/runs/{layout.run_id(*GRID[0], 'cce')}/{name} of experiment 'tune-supcon' (rev tune-supcon)")
    with pytest.raises(ValueError, match=rf"^{where}: cannot read it \(truncated or not an npz: BadZipFile: .*dvc exp pull"):
        collect([e], reader(tmp_path), "data/runs")
    np.savez(path, labels=np.arange(4) % 2)
    with pytest.raises(ValueError, match=rf"^{where}: missing arrays \[.*'embeddings'"):
        collect([e], reader(tmp_path), "data/runs")
