"""Tidy exports: long-format tables that read back equal, and components as safetensors that
plain `safetensors` loads without this package."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from workbench.analysis import top_examples
from workbench.analysis.export import (
    coefficients_frame,
    export_coefficients,
    export_components,
    export_components_safetensors,
    export_perturbations,
    export_top_examples,
    write_table,
)
from workbench.analysis.perturb import perturbation_check


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_export_components_round_trip(tmp_path, embedded, suffix):
    run = embedded[0]
    table = run.components()
    back = pd.read_parquet(export_components(table, tmp_path / f"c{suffix}")) if suffix == ".parquet" else pd.read_csv(
        export_components(table, tmp_path / f"c{suffix}"))
    assert list(back["component"]) == list(table.index)
    for column in ("mass", "label_purity", "strategy_purity"):
        np.testing.assert_allclose(back[column].to_numpy(), table[column].to_numpy(), rtol=1e-12)
    assert list(back["strategy"]) == list(table["strategy"])


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_export_coefficients_long_format(tmp_path, embedded, suffix):
    decomposition = embedded[5]
    path = export_coefficients(decomposition, tmp_path / f"w{suffix}")
    back = pd.read_parquet(path) if suffix == ".parquet" else pd.read_csv(path)
    assert list(back.columns) == ["example", "component", "coefficient"]
    assert len(back) == decomposition.W_.size
    wide = back.pivot(index="example", columns="component", values="coefficient").to_numpy()
    np.testing.assert_allclose(wide, decomposition.W_, rtol=1e-6 if suffix == ".csv" else 0, atol=1e-30 if suffix == ".csv" else 0)
    sparse = coefficients_frame(decomposition, drop_zeros=True)
    assert len(sparse) == np.count_nonzero(decomposition.W_) and (sparse["coefficient"] != 0).all()


def test_export_top_examples_with_token_scores(tmp_path, embedded):
    _, model, tokenizer, _, inputs, decomposition = embedded
    path = export_top_examples(tmp_path / "top.parquet", model, decomposition, inputs, tokenizer, components=[0, 3], n_top=4)
    back = pd.read_parquet(path)
    assert list(back.columns) == ["component", "rank", "example", "coefficient", "token_position", "token", "score", "head_share"]
    assert set(back["component"]) == {0, 3}
    for j in (0, 3):
        ranks = back[back["component"] == j].groupby("rank")["example"].first()
        assert list(ranks) == list(top_examples(decomposition.W_, j, 4))
    for (j, rank), tokens in back.groupby(["component", "rank"]):
        i = int(tokens["example"].iloc[0])
        assert len(tokens) == int(inputs["attention_mask"][i].sum())
        assert list(tokens["token"]) == tokenizer.convert_ids_to_tokens(inputs["input_ids"][i][: len(tokens)].tolist())
        assert tokens["score"].sum() + tokens["head_share"].iloc[0] == pytest.approx(1.0, abs=1e-9)
        assert tokens["coefficient"].iloc[0] == pytest.approx(decomposition.W_[i, j])


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_export_perturbations(tmp_path, embedded, suffix):
    _, model, _, examples, inputs, decomposition = embedded
    top = top_examples(decomposition.W_, 1, 10)
    result = perturbation_check(model, decomposition, 1, inputs, examples["label"].to_numpy(), top, epsilon=0.3)
    path = export_perturbations([result], tmp_path / f"p{suffix}")
    back = pd.read_parquet(path) if suffix == ".parquet" else pd.read_csv(path)
    low, high = result.ratio_interval()  # the spread the panel shows beside the number, exported with it
    expected = result.to_frame().assign(kl_ratio=result.kl_ratio, kl_ratio_low=low, kl_ratio_high=high)
    assert list(back.columns) == list(expected.columns)
    np.testing.assert_allclose(back[["kl_ratio_low", "kl_ratio_high"]].iloc[0], [low, high], rtol=1e-12)
    np.testing.assert_allclose(back["kl"], expected["kl"], rtol=1e-12)
    assert list(back["set"]) == list(expected["set"]) and list(back["sign"]) == list(expected["sign"])


def test_components_safetensors_load_without_this_package(tmp_path, embedded):
    decomposition = embedded[5]
    path = export_components_safetensors(decomposition, tmp_path / "components.safetensors")
    reader = (
        "import json, sys\n"
        "sys.modules['workbench'] = None  # this package must not be needed\n"
        "from safetensors import safe_open\n"
        "from safetensors.numpy import load_file\n"
        f"tensors = load_file({str(path)!r})\n"
        f"with safe_open({str(path)!r}, framework='np') as f: meta = f.metadata()\n"
        "print(json.dumps({'shapes': {k: list(v.shape) for k, v in tensors.items()}, 'meta': meta,\n"
        "                  'q': tensors['bert.encoder.layer.0.attention.self.query.weight'][2].ravel()[:50].tolist()}))\n"
    )
    out = json.loads(subprocess.run([sys.executable, "-c", reader], capture_output=True, text=True, check=True).stdout)
    r = decomposition.n_components
    layout = decomposition.layout_
    assert out["shapes"] == {name: [r, *shape] for name, shape in zip(layout.names, layout.shapes)}
    assert out["meta"]["format"] == "npeff-workbench/components" and out["meta"]["kind"] == "lrm"
    expected = decomposition.component_by_parameter(2)["bert.encoder.layer.0.attention.self.query.weight"]
    np.testing.assert_array_equal(out["q"], expected.ravel()[:50])

    from safetensors.numpy import load_file

    tensors = load_file(str(path))
    for j in (0, r - 1):
        flat = np.concatenate([tensors[name][j].ravel() for name in layout.names])
        np.testing.assert_array_equal(flat, decomposition.component(j))


def test_write_table_refuses_unknown_suffix(tmp_path):
    with pytest.raises(ValueError, match=r"choose a \.parquet or \.csv"):
        write_table(pd.DataFrame({"a": [1]}), tmp_path / "x.xlsx")
    assert not list(tmp_path.iterdir())


def test_write_table_multi_valued_cells(tmp_path):
    frame = pd.DataFrame({"strategy": [("negation", "lexical"), ("marker",)], "n": [1, 2]})
    assert list(pd.read_parquet(write_table(frame, tmp_path / "t.parquet"))["strategy"].map(list)) == [["negation", "lexical"], ["marker"]]
    assert list(pd.read_csv(write_table(frame, tmp_path / "t.csv"))["strategy"]) == ["negation|lexical", "marker"]


def test_csv_text_cells_do_not_run_as_spreadsheet_formulas(tmp_path):
    """Texts and tokens come from data sets: "=HYPERLINK(...)" in a CSV runs when Excel opens it."""
    texts = ["=HYPERLINK(\"http://x\")", "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)", "\tx", "plain", "-", "-0.5", None]
    frame = pd.DataFrame({"text": texts, "tokens": [("=1+1", "ok")] + [("a",)] * 8, "score": np.arange(9.0)})
    back = pd.read_csv(write_table(frame, tmp_path / "t.csv"), keep_default_na=False)
    assert list(back["text"]) == ["'=HYPERLINK(\"http://x\")", "'+cmd|' /C calc'!A0", "'-2+3", "'@SUM(A1)", "'\tx",
                                  "plain", "-", "-0.5", ""]
    assert back["tokens"][0] == "'=1+1|ok"
    assert list(back["score"]) == list(np.arange(9.0))
    categorical = pd.DataFrame({"=cmd|' /C calc'!A0": pd.Categorical(["=1+1", "web"])})
    back = pd.read_csv(write_table(categorical, tmp_path / "c.csv"))
    assert list(back.columns) == ["'=cmd|' /C calc'!A0"] and list(back.iloc[:, 0]) == ["'=1+1", "web"]
    parquet = pd.read_parquet(write_table(frame, tmp_path / "t.parquet"))
    assert list(parquet["text"][:8]) == texts[:8]  # Parquet is read by programs, not spreadsheets: kept as it is


def test_top_example_tokens_are_the_scored_ones_also_with_left_padding():
    """Prompts for language models are padded on the left: each score goes with its own token."""
    import torch

    from workbench import compute_pefs
    from workbench.analysis.export import top_examples_frame
    from workbench.models.architectures import build
    from workbench.npeff import LrmNpeff

    model = build("GPT-2")
    ids = torch.randint(3, 90, (8, 6), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    for i in range(8):
        mask[i, : i % 3], ids[i, : i % 3] = 0, 0  # pad id 0 is no real token here
    inputs = {"input_ids": ids, "attention_mask": mask}
    decomposition = LrmNpeff(2, n_iters_g_only=2, n_iters_joint=2, progress=False).fit(
        compute_pefs(model, inputs, n_values=500, progress=False))
    frame = top_examples_frame(model, decomposition, inputs, n_top=8)
    assert len(frame) and "0" not in set(frame["token"].astype(str))
    for (_, example), rows in frame.groupby(["component", "example"]):
        assert rows["token"].astype(int).tolist() == ids[example, mask[example].bool()].tolist()


def test_a_single_export_replaces_its_own_file_and_refuses_the_user_s(tmp_path):
    """export_components(table, "notes.csv") replaced the user's notes.csv, and export_components_safetensors their
    model's components.safetensors, without a word: a file no export wrote is refused by name, as export_run
    refuses it; an export's own file is replaced, also after export_run wrote into the folder."""
    from workbench.analysis.export import export_run
    from workbench.npeff import LrmNpeff
    from workbench.npeff.planted import planted_lrm

    table = pd.DataFrame({"purity": [0.5, 1.0]}, index=pd.Index([0, 1], name="component"))
    notes = tmp_path / "notes.csv"
    notes.write_text("my notes\n")
    with pytest.raises(FileExistsError, match=r"notes\.csv is not a file an export wrote .*notes-export\.csv"):
        export_components(table, notes)
    assert notes.read_text() == "my notes\n"
    weights = tmp_path / "components.safetensors"
    weights.write_bytes(b"the user's own tensors")
    decomposition = LrmNpeff(2, n_iters_g_only=2, n_iters_joint=2, progress=False).fit(planted_lrm(8, 20, 2).pefs)
    with pytest.raises(FileExistsError, match="components.safetensors is not a file an export wrote"):
        export_components_safetensors(decomposition, weights)
    assert weights.read_bytes() == b"the user's own tensors"
    weights.unlink()

    path = export_components(table, tmp_path / "c.csv")
    export_components(table.assign(purity=[0.25, 0.75]), path)  # its own file, replaced
    assert list(pd.read_csv(path)["purity"]) == [0.25, 0.75]
    export_components_safetensors(decomposition, weights)
    export_run(tmp_path, table, decomposition.W_, decomposition, format="csv")  # over the single export's own
    export_components(table, path)  # the single export's file stays its own after export_run's record
    path.write_text("edited by hand\n")
    with pytest.raises(FileExistsError, match="or it was changed since"):
        export_coefficients(decomposition, path)


@pytest.mark.parametrize("at", ["rename", "record"])
def test_a_single_export_interrupted_at_any_point_leaves_its_file_replaceable(tmp_path, monkeypatch, at):
    """Interrupted between its record and its rename (or between the rename and the record's last write), the
    file in place is whole and listed as the export's, so the same export runs again."""
    from workbench.analysis import export
    from workbench.store import files

    table = pd.DataFrame({"purity": [0.5, 1.0]}, index=pd.Index([0, 1], name="component"))
    path = export_components(table, tmp_path / "c.csv")
    replace, writes = files.os.replace, []

    def interrupted_replace(source, target):
        if at == "rename" and target == path:
            raise KeyboardInterrupt
        return replace(source, target)

    def interrupted_record(target, obj):
        writes.append(target)
        if at == "record" and len(writes) == 2:
            raise KeyboardInterrupt
        return files.write_json(target, obj)

    monkeypatch.setattr(files.os, "replace", interrupted_replace)
    monkeypatch.setattr(export, "write_json", interrupted_record)
    with pytest.raises(KeyboardInterrupt):
        export_components(table.assign(purity=[0.25, 0.75]), path)
    monkeypatch.undo()
    assert list(pd.read_csv(path)["purity"]) == ([0.5, 1.0] if at == "rename" else [0.25, 0.75])
    export_components(table.assign(purity=[0.125, 0.5]), path)
    assert list(pd.read_csv(path)["purity"]) == [0.125, 0.5]
