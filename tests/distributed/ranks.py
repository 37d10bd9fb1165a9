"""Starting several gloo processes on this machine, the way torchrun would, for the tests.

``run_ranks(job, world_size, folder)`` starts ``world_size`` spawned processes with
torchrun's environment variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT),
each running ``job(folder, rank)`` from :mod:`tests.distributed.jobs` inside
:func:`workbench.distributed.process_group`, and waits for all of them with a deadline.
A rank that raises writes its message to ``folder/rank<r>.error`` and exits with 1.
"""

from __future__ import annotations

import os
import socket
import time
import traceback
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import torch.multiprocessing as mp

#: Collectives give up after this long, so a dead peer cannot hang the suite.
COLLECTIVE_TIMEOUT = timedelta(seconds=30)


@dataclass
class Outcome:
    exit_codes: list[int | None]  # None: still running at the deadline (then killed)
    errors: dict[int, str]  # rank -> the message it raised


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(job_name: str, folder: str, rank: int, world_size: int, port: int, as_nodes: bool = False) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_WORLD_SIZE=str(world_size),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    if as_nodes:  # each rank as its own torchrun "node" on this machine: torchrun sets no OMP_NUM_THREADS there
        os.environ.update(LOCAL_RANK="0", LOCAL_WORLD_SIZE="1")
        del os.environ["OMP_NUM_THREADS"]
    import torch

    if not as_nodes:
        torch.set_num_threads(1)  # the ranks share this machine's cores
    from workbench.distributed import process_group

    from . import jobs

    try:
        with process_group("cpu", timeout=COLLECTIVE_TIMEOUT):
            getattr(jobs, job_name)(Path(folder), rank)
    except BaseException as err:  # noqa: BLE001 - reported to the test, then the process fails
        Path(folder, f"rank{rank}.error").write_text(f"{type(err).__name__}: {err}\n{traceback.format_exc()}")
        os._exit(1)


def run_ranks(job_name: str, world_size: int, folder: Path, deadline_s: float = 120, as_nodes: bool = False) -> Outcome:
    """``as_nodes``: each rank started as a node of its own (LOCAL_WORLD_SIZE 1, no OMP_NUM_THREADS)."""
    folder.mkdir(parents=True, exist_ok=True)
    context = mp.get_context("spawn")
    port = _free_port()
    processes = [context.Process(target=_entry, args=(job_name, str(folder), r, world_size, port, as_nodes))
                 for r in range(world_size)]
    for p in processes:
        p.start()
    end = time.monotonic() + deadline_s
    for p in processes:
        p.join(max(0.0, end - time.monotonic()))
    codes = []
    for p in processes:
        if p.is_alive():
            p.kill()
            p.join()
            codes.append(None)
        else:
            codes.append(p.exitcode)
    errors = {r: Path(folder, f"rank{r}.error").read_text() for r in range(world_size) if Path(folder, f"rank{r}.error").exists()}
    return Outcome(codes, errors)
