"""A rank whose peers never join the job (killed before the rendezvous, or never started): it fails
within the job's timeout with a message that says so, not torch's raw traceback."""

import logging
import time

import pytest

from workbench.app.cli import main

from .ranks import _free_port


@pytest.mark.parametrize("rank", [0, 1])  # rank 0 hosts the rendezvous; rank 1 finds nobody to connect to
def test_a_rank_whose_peer_never_joins_fails_in_bounded_time_with_a_clear_message(tmp_path, monkeypatch, caplog, rank):
    port = _free_port()
    for name, value in dict(RANK=rank, LOCAL_RANK=0, WORLD_SIZE=2, LOCAL_WORLD_SIZE=1, MASTER_ADDR="127.0.0.1",
                            MASTER_PORT=port).items():
        monkeypatch.setenv(name, str(value))
    out = tmp_path / "fit.safetensors"
    started = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="workbench"):
        code = main(["fit", str(tmp_path / "store"), "--out", str(out), "--n-components", "2", "--device", "cpu",
                     "--timeout-minutes", "0.02"])
    assert code == 1
    assert time.monotonic() - started < 30  # the default timeout is 30 minutes
    assert f"rank {rank} of 2: joining the job at 127.0.0.1:{port} failed within 1.2 s" in caplog.text
    assert "another rank was not started, stopped before it joined" in caplog.text
    assert not out.exists()
