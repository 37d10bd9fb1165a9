"""The distributed paths and the command line refuse mismatched provenance exactly as the API does
(issue 19: the CLI transform of model B's PEFs on model A's decomposition wrote coefficients)."""

import logging

import pytest

from tests.conftest import tiny_bert, tiny_bert_inputs
from tests.distributed import jobs
from workbench import write_pefs
from workbench.app.cli import main
from workbench.distributed import transform_distributed, write_pefs_sharded
from workbench.npeff import LrmNpeff
from workbench.store import PefStore, StoreError


@pytest.fixture
def two_models(tmp_path):
    inputs = tiny_bert_inputs(9)
    for seed in (0, 1):  # the same architecture, other weights
        write_pefs(tmp_path / f"pefs{seed}", tiny_bert(3, seed=seed), inputs, n_values=200, batch_size=4, progress=False)
    LrmNpeff(2, n_iters_g_only=2, n_iters_joint=2, progress=False).fit(PefStore(tmp_path / "pefs0").load()) \
        .save(tmp_path / "decomposition.safetensors")
    return tmp_path


def test_transform_distributed_refuses_pefs_of_another_model(two_models):
    decomposition = LrmNpeff.load(two_models / "decomposition.safetensors")
    with pytest.raises(StoreError, match="these PEFs come from another model .*compute them with the decomposition's model"):
        transform_distributed(decomposition, two_models / "pefs1")
    assert transform_distributed(decomposition, two_models / "pefs0").shape == (9, 2)


def test_cli_transform_refuses_pefs_of_another_model_and_writes_nothing(two_models, caplog):
    out = two_models / "coefficients.safetensors"
    with caplog.at_level(logging.ERROR):
        code = main(["transform", str(two_models / "decomposition.safetensors"), str(two_models / "pefs1"),
                     "--out", str(out), "--device", "cpu"])
    assert code == 2 and not out.exists()
    assert "StoreError: these PEFs come from another model" in caplog.text
    assert main(["transform", str(two_models / "decomposition.safetensors"), str(two_models / "pefs0"),
                 "--out", str(out), "--device", "cpu"]) == 0 and out.exists()


def test_sharded_writer_refuses_to_resume_a_store_of_other_arguments(tmp_path):
    x, y = jobs.mlp_data()
    write_pefs_sharded(tmp_path / "pefs", jobs.Mlp(), x, y, n_values=40, batch_size=3, device="cpu", progress=False)
    before = {p: p.read_bytes() for p in (tmp_path / "pefs").rglob("*") if p.is_file()}
    with pytest.raises(StoreError, match=r"made with other arguments \(differs: .*n_values.*overwrite=True"):
        write_pefs_sharded(tmp_path / "pefs", jobs.Mlp(), x, y, n_values=30, batch_size=3, device="cpu", progress=False)
    with pytest.raises(StoreError, match=r"made with other arguments \(differs: fingerprints"):
        write_pefs_sharded(tmp_path / "pefs", jobs.Mlp(), x, (y + 1) % 3, n_values=40, batch_size=3, device="cpu",
                           progress=False)
    assert {p: p.read_bytes() for p in (tmp_path / "pefs").rglob("*") if p.is_file()} == before
