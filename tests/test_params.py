"""Strict params: every problem names the key path, the bad value and what was expected."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from fewshot_dml.catalog.arms import BASELINE, SETFIT
from fewshot_dml.config.params import load_params, parse_params
from fewshot_dml.core.errors import ParamsError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))


def edited(raw: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of ``raw`` with the dotted ``path`` set to ``value`` (``...`` deletes it)."""
    out = copy.deepcopy(raw)
    *parents, last = path.split(".")
    node = out
    for key in parents:
        node = node[key]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return out


@pytest.mark.parametrize("name", ["params.yaml"])
def test_shipped_params_load(name: str) -> None:
    params = load_params(ROOT / name)
    assert params.arms == (BASELINE, SETFIT, params.loss)
    assert params.losses[BASELINE].beta is None


def test_values_are_typed_and_frozen(raw: dict[str, Any]) -> None:
    params = parse_params(raw)
    assert isinstance(params.seeds, tuple) and isinstance(params.train.lr, float)
    assert params.losses["proxyanchor"].proxy_lr == pytest.approx(raw["losses"]["proxyanchor"]["proxy_lr"])
    assert params.losses["supcon"].proxy_lr is None  # no proxies -> no proxy_lr
    assert params.losses["softtriple"].hparams["centers_per_class"] == 2
    with pytest.raises(AttributeError):
        params.train.lr = 1.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        params.losses["softtriple"].hparams["la"] = 1.0  # type: ignore[index]


def test_an_int_is_accepted_where_a_float_is_expected(raw: dict[str, Any]) -> None:
    params = parse_params(edited(raw, "train.weight_decay", 0))
    assert params.train.weight_decay == 0.0 and isinstance(params.train.weight_decay, float)


@pytest.mark.parametrize(("value", "kept"), [(True, {"mr", "sst2"}), (False, set()), (["sst2"], {"sst2"}), ([], set())])
def test_save_weights_is_all_none_or_the_listed_datasets(raw: dict[str, Any], value: Any, kept: set[str]) -> None:
    train = parse_params(edited(raw, "train.save_weights", value)).train
    assert {d for d in ("mr", "sst2") if train.keeps_weights(d)} == kept
    assert isinstance(train.save_weights, bool if isinstance(value, bool) else tuple)


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("train.lrr", 1e-5, r"train\.lrr: unknown key; expected one of \[.*'lr'"),
        ("train.lr", ..., r"train\.lr: missing key"),
        ("train.lr", "fast", r"train\.lr: 'fast' is not a number; expected float"),
        ("train.lr", 0.0, r"train\.lr: 0\.0 is out of range; expected \(0, 1\]"),
        ("train.llrd", 1.5, r"train\.llrd: 1\.5 is out of range; expected \(0, 1\]"),
        ("train.reinit_layers", -1, r"train\.reinit_layers: -1 is out of range; expected \[0, 1000\]"),
        ("train.epochs", 2.5, r"train\.epochs: 2\.5 is not an integer"),
        ("train.steps", 2.5, r"train\.steps: 2\.5 is not an integer"),
        ("train.steps", True, r"train\.steps: True is not a number"),
        ("train.pooling", "max", r"train\.pooling: 'max' is not allowed; expected one of \['cls', 'mean'\]"),
        ("train.save_weights", "no", r"train\.save_weights: 'no' is not allowed; expected true/false or a list"),
        ("train.save_weights", ["sst"], r"train\.save_weights\[0\]: unknown dataset 'sst'; expected one of \['mr'"),
        ("train.save_weights", [1], r"train\.save_weights: \[1\] is not allowed; expected true/false or a list"),
        ("analyze.distance_to", "median", r"analyze\.distance_to: 'median' is not allowed; expected one of \['mean', "),
        ("analyze.bins", 1, r"analyze\.bins: 1 is out of range; expected \[2, 100\]"),
        ("explain.steps", 1, r"explain\.steps: 1 is out of range; expected \[2, 1000\]"),
        ("train.model", "", r"train\.model: '' is not a non-empty string"),
        ("sample.protocol", "random", r"sample\.protocol: 'random' is not allowed"),
        ("sample.folds", 1, r"sample\.folds: 1 is out of range; expected \[2, 100\]"),
        ("infer.proxy_weight", 1.5, r"infer\.proxy_weight: 1\.5 is out of range; expected \[0, 1\]"),
        ("datasets", ["mr", "imdb"], r"datasets\[1\]: unknown dataset 'imdb'; expected one of \['mr'"),
        ("datasets", ["mr", "mr"], r"datasets: duplicate values"),
        ("datasets", [], r"datasets: must list at least one value"),
        ("seeds", "0", r"seeds: '0' is not a list"),
        ("seeds", [0, -1], r"seeds\[1\]: -1 is negative"),
        ("sample_sizes", [0], r"sample_sizes\[0\]: 0 is not a positive integer"),
        ("loss", "cce", r"loss: 'cce' is a peer arm that always runs; expected a DML loss"),
        ("loss", "setfit", r"loss: 'setfit' is a peer arm that always runs; expected a DML loss"),
        ("loss", "magic", r"losses\.magic: missing section"),
        ("losses.supcon", ..., r"losses\.supcon: missing section for the configured loss"),
        ("losses.proxyanchor.alpha", ..., r"losses\.proxyanchor\.alpha: missing key"),
        ("losses.proxyanchor.alfa", 3.0, r"losses\.proxyanchor\.alfa: unknown key; expected one of \["),
        ("losses.proxyanchor.beta", 1.5, r"losses\.proxyanchor\.beta: 1\.5 is out of range; expected \[0\.0, 1\.0\]"),
        ("losses.supcon.proxy_lr", 0.01, r"losses\.supcon\.proxy_lr: unknown key"),
        ("losses.cce.beta", 0.5, r"losses\.cce\.beta: unknown key"),
        ("losses.softtriple.centers_per_class", 2.5, r"losses\.softtriple\.centers_per_class: 2\.5 is not an integer"),
        ("losses.fancy", {"beta": 0.5}, r"losses\.fancy: unknown loss 'fancy'; expected one of \["),
        ("fetch", "x", r"fetch: expected a mapping, got str"),
        (
            "losses.contrastive-metrix.metrix.alpha",
            0.0,
            r"losses\.contrastive-metrix\.metrix\.alpha: 0\.0 is out of range; expected \(0, inf\]",
        ),
        (
            "losses.contrastive-metrix.metrix.point",
            "logits",
            r"losses\.contrastive-metrix\.metrix\.point: 'logits' is not allowed; expected one of \['input', 'feature', 'embedding'\]",
        ),
        ("losses.contrastive-metrix.metrix.layer", 0, r"losses\.contrastive-metrix\.metrix\.layer: 0 is out of range"),
        ("losses.contrastive-metrix.metrix.mix", 1, r"losses\.contrastive-metrix\.metrix\.mix: unknown key"),
        (
            "losses.contrastive-metrix.variant_of",
            "triplet",
            r"losses\.contrastive-metrix\.neg_margin: unknown key; expected one of \['beta', 'dml_on', 'margin'\]",
        ),
        (
            "losses.tri-metrix",
            {
                "variant_of": "triplet",
                "beta": 0.4,
                "dml_on": "pooled",
                "margin": 0.05,
                "metrix": {"point": "embedding", "layer": 1, "alpha": 2.0, "weight": 0.4},
            },
            r"losses\.tri-metrix\.metrix: loss 'triplet' has no Metrix form; expected a base in \['contrastive', 'multisimilarity', 'proxyanchor', 'supcon'\]",
        ),
        ("losses.odd", {"variant_of": "magic", "beta": 0.4}, r"losses\.odd\.variant_of: unknown loss 'magic'; expected one of \["),
        ("losses.odd", {"beta": 0.4}, r"losses\.odd: unknown loss 'odd'; expected one of \[.*or a variant with a `variant_of` key"),
        ("losses.supcon.variant_of", "supcon", r"losses\.supcon\.variant_of: 'supcon' is a registered loss"),
        ("losses.supcon.dml_on", "words", r"losses\.supcon\.dml_on: 'words' is not allowed; expected one of \['pooled', 'tokens'\]"),
        (
            "losses.supcon-metrix.dml_on",
            "tokens",
            r"losses\.supcon-metrix\.metrix: Metrix mixes sentence embeddings; expected dml_on: pooled",
        ),
        ("fetch.download", "yes", r"fetch\.download: 'yes' is not a boolean"),
        ("fetch.urls.trec", "", r"fetch\.urls\.trec: '' is not a non-empty string"),
        ("fetch.urls.imdb", "http://x", r"fetch\.urls\.imdb: unknown key; expected one of \['mrpc', 'mrpc_dev_ids'"),
        ("extra", 1, r"<root>\.extra: unknown key"),
    ],
)
def test_bad_values_name_key_value_and_expectation(raw: dict[str, Any], path: str, value: Any, message: str) -> None:
    with pytest.raises(ParamsError, match=message):
        parse_params(edited(raw, path, value))


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match="params file not found"):
        load_params(tmp_path / "nope.yaml")


@pytest.mark.parametrize("spelling", ["1e-05", "1e-5", "1.0e-5", "0.00001", "1E-5", "+1e-5", "10e-6"])
def test_every_yaml_float_spelling_loads_as_a_float(tmp_path: Path, spelling: str) -> None:
    # `dvc exp run -S train.lr=0.00001` writes `1e-05`, which YAML 1.1 (PyYAML's default) reads as a string.
    text = (ROOT / "params.yaml").read_text(encoding="utf-8")
    lines = [f"  lr: {spelling}" if line.startswith("  lr: ") else line for line in text.splitlines()]
    (tmp_path / "params.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    params = load_params(tmp_path / "params.yaml")
    assert isinstance(params.train.lr, float) and params.train.lr == pytest.approx(1e-5)


def test_the_loader_keeps_other_scalars_as_yaml_does() -> None:
    from fewshot_dml.core.strict import read_yaml

    assert read_yaml("a: 1\nb: '1e-5'\nc: true\nd: 1.0e+3\ne: .5\nf: abc\ng: .inf") == {
        "a": 1,
        "b": "1e-5",
        "c": True,
        "d": 1000.0,
        "e": 0.5,
        "f": "abc",
        "g": float("inf"),
    }


def test_a_stage_validates_only_the_sections_it_reads(raw: dict[str, Any]) -> None:
    bad = edited(raw, "train.lrr", 1e-5)
    params = parse_params(bad, sections=("fetch",))  # fetch does not read train: no error there
    assert params.fetch.local_dir and params.train is None and dict(params.losses) == {}
    with pytest.raises(ParamsError, match=r"train\.lrr: unknown key"):
        parse_params(bad, sections=("train", "losses.cce"))
    with pytest.raises(ParamsError, match=r"train\.lrr: unknown key"):
        parse_params(bad)  # the check stage validates every section
    only_arm = parse_params(edited(raw, "losses.softtriple.la", "x"), sections=("train", "losses.cce"))
    assert list(only_arm.losses) == ["cce"]


def test_an_unknown_top_level_key_is_an_error_for_every_stage(raw: dict[str, Any]) -> None:
    with pytest.raises(ParamsError, match=r"<root>\.trian: unknown key"):
        parse_params(edited(raw, "trian", {"lr": 1.0}), sections=("infer",))


def test_invalid_yaml_names_the_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text("train:\n  lr: [1\n", encoding="utf-8")
    with pytest.raises(ParamsError, match=r"params\.yaml:\d+: not valid YAML"):
        load_params(tmp_path / "params.yaml")


OWN = {"source": "tests/data/own/intents.csv", "revision": None, "split": "train", "text": "text", "text_pair": None, "label": "intent"}


def with_own(raw: dict[str, Any], **sections: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(raw)
    out["own_datasets"] = sections
    out["datasets"] = [*out["datasets"], *sections]
    return out


def test_an_own_dataset_joins_the_grid_beside_the_built_in_ones(raw: dict[str, Any]) -> None:
    hub = {**OWN, "source": "org/tickets", "revision": "v1.2", "split": "test", "text_pair": "reply"}
    params = parse_params(with_own(raw, intents=OWN, tickets=hub))
    assert params.datasets[-2:] == ("intents", "tickets")
    assert params.own_datasets["intents"].builder == "csv" and params.own_datasets["tickets"].builder is None
    assert params.own_datasets["tickets"].revision == "v1.2"
    # A stage that reads only its own sections still knows the own names of the grid.
    assert parse_params(with_own(raw, intents=OWN), sections=("datasets",)).datasets[-1] == "intents"


@pytest.mark.parametrize(
    ("suffix", "builder"), [(".csv", "csv"), (".tsv", "csv"), (".jsonl", "json"), (".JSON", "json"), (".parquet", "parquet")]
)
def test_the_file_suffix_picks_the_datasets_reader(raw: dict[str, Any], suffix: str, builder: str) -> None:
    params = parse_params(with_own(raw, mine={**OWN, "source": f"data/mine{suffix}"}))
    assert params.own_datasets["mine"].builder == builder


def test_two_datasets_of_one_name_are_an_error(tmp_path: Path) -> None:
    text = (
        (ROOT / "params.yaml")
        .read_text(encoding="utf-8")
        .replace("own_datasets: {}", "own_datasets:\n  mine: {source: a.csv}\n  mine: {source: b.csv}")
    )
    (tmp_path / "params.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(
        ParamsError,
        match=r"params.yaml:\d+: not valid YAML \(found duplicate key 'mine'; expected "
        r"each name once\)",
    ):
        load_params(tmp_path / "params.yaml")


@pytest.mark.parametrize(
    ("name", "section", "match"),
    [
        ("mr", OWN, r"own_datasets.mr: 'mr' is the name of a built-in SentEval dataset; expected a new name"),
        ("My-Data", OWN, r"own_datasets.My-Data: 'My-Data' is not a dataset name; expected lower-case letters"),
        ("mine", {**OWN, "revision": "v1"}, r"own_datasets.mine.revision: 'v1' is set for the local file"),
        ("mine", {**OWN, "split": "test"}, r"own_datasets.mine.split: 'test'; a local file is one split, expected 'train'"),
        ("mine", {**OWN, "source": "org/tickets"}, r"own_datasets.mine.revision: null for the hub dataset 'org/tickets'"),
        ("mine", {**OWN, "source": "data/mine.txt"}, r"own_datasets.mine.source: 'data/mine.txt' is neither a file with"),
        ("mine", {**OWN, "source": "./data/mine"}, r"own_datasets.mine.source: './data/mine' is neither a file with"),
        (
            "mine",
            {**OWN, "text_pair": "text"},
            r"own_datasets.mine: text, text_pair and label name the columns "
            r"\['text', 'text', 'intent'\]; expected distinct columns",
        ),
        ("mine", {k: v for k, v in OWN.items() if k != "text_pair"}, r"own_datasets.mine.text_pair: missing key"),
        ("mine", {**OWN, "labels": ["a"]}, r"own_datasets.mine.labels: unknown key"),
        ("mine", {**OWN, "text": ""}, r"own_datasets.mine.text: '' is not a non-empty string"),
    ],
)
def test_a_bad_own_dataset_section_names_the_key(raw: dict[str, Any], name: str, section: dict, match: str) -> None:
    with pytest.raises(ParamsError, match=match):
        parse_params(with_own(raw, **{name: section}))


def test_an_unknown_dataset_points_to_own_datasets(raw: dict[str, Any]) -> None:
    with pytest.raises(
        ParamsError,
        match=r"datasets\[7\]: unknown dataset 'mydata'; expected one of \[.*'intents'\] "
        r"\(a dataset of your own is declared under own_datasets\)",
    ):
        parse_params({**with_own(raw, intents=OWN), "datasets": [*raw["datasets"], "mydata"]})


# ---- arm names become paths (stages, run folders, files); an unknown loss lists the valid ones ----

ARM_PATTERN = re.escape("[a-z][a-z0-9_]*(?:-[a-z0-9_]+)*")


@pytest.mark.parametrize("name", ["../../x", "a/b", "X", "a--b", "-x", "x.y"])
@pytest.mark.parametrize("key", ["loss", "variant"])
def test_an_arm_name_that_is_no_safe_path_is_refused_naming_key_value_and_pattern(raw: dict[str, Any], name: str, key: str) -> None:
    bad = copy.deepcopy(raw)
    bad["losses"][name] = {**raw["losses"]["supcon-metrix"]}
    if key == "loss":
        bad["loss"] = name

    def match(where: str) -> str:
        return rf"^{re.escape(where)}: {re.escape(repr(name))} is not an arm name; expected a name matching {ARM_PATTERN} \("

    with pytest.raises(ParamsError, match=match(f"losses.{name}")):  # the check stage validates every section
        parse_params(bad)
    if key == "loss":  # the stages that read `loss` but not its section (infer, analyze) refuse it too
        with pytest.raises(ParamsError, match=match("loss")):
            parse_params(bad, sections=("datasets", "sample_sizes", "seeds", "loss", "infer"))
        del bad["losses"][name]
        with pytest.raises(ParamsError, match=match("loss")):
            parse_params(bad)


def test_arm_names_follow_the_dataset_name_rule() -> None:
    from fewshot_dml.config.loss_sections import ARM_NAME
    from fewshot_dml.config.sections import DATASET_NAME

    assert ARM_NAME.pattern.startswith(DATASET_NAME.pattern)
    assert all(ARM_NAME.fullmatch(n) for n in ("supcon", "supcon-metrix", "tri_2-metrix"))


def test_an_unknown_loss_lists_the_valid_ones(raw: dict[str, Any]) -> None:
    declared = sorted(n for n in raw["losses"] if n not in (BASELINE, SETFIT))
    listed = re.escape(str(declared))
    with pytest.raises(
        ParamsError,
        match=rf"^losses\.nosuchloss: missing section for the configured loss: 'nosuchloss' is neither a registered loss nor a variant declared under losses; expected loss set to one of {listed}$",
    ):
        parse_params(edited(raw, "loss", "nosuchloss"))
    no_section = edited(edited(raw, "loss", "triplet"), "losses.triplet", ...)
    with pytest.raises(
        ParamsError, match=r"^losses\.triplet: missing section for the configured loss 'triplet'; expected its section .*one of \['arcface'"
    ):
        parse_params(no_section)


def test_an_unknown_arm_of_the_train_stage_lists_the_declared_ones(tmp_path: Path) -> None:
    from fewshot_dml.config.params import arm_section

    params = load_params(ROOT / "params.yaml", sections=("seeds", "train", "losses.nosuchloss"))
    with pytest.raises(
        ParamsError, match=r"^--arm 'nosuchloss': no losses.nosuchloss section in \S*params.yaml; expected one of \['arcface', 'cce', "
    ):
        arm_section(params, "nosuchloss", ROOT / "params.yaml")
    assert arm_section(load_params(ROOT / "params.yaml", sections=("losses.cce",)), "cce").name == "cce"


def test_an_unknown_loss_of_the_registry_is_one_error_line(capsys: pytest.CaptureFixture[str]) -> None:
    from fewshot_dml.core.cli import run_tool
    from fewshot_dml.losses import get_spec

    with pytest.raises(KeyError):  # still a KeyError for the callers that look a loss up
        get_spec("nope")
    with pytest.raises(SystemExit) as exit_:
        run_tool(lambda argv: get_spec("nope"))
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and re.fullmatch(r"error: unknown loss 'nope'; expected one of \['arcface', .*'triplet'\]\n", err), err
