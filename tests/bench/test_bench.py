"""The benchmark command runs end to end (its figures are checked by reading them, not here)."""

import json

from workbench import bench


def test_bench_quick_writes_every_figure(tmp_path):
    out = tmp_path / "bench.json"
    assert bench.main(["--quick", "--only", "pefs,fit", "--repeats", "1", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    names = [f["name"] for f in report["figures"]]
    assert any(n.startswith("PEFs embedded model: examples/s") for n in names)
    assert {"LRM-NPEFF, primal: s per iteration", "LRM-NPEFF, dual: s per iteration"} <= set(names)
    assert any(n.startswith("D-NPEFF vs sklearn") for n in names)
    for figure in report["figures"]:
        assert figure["value"] > 0
    pefs = next(f for f in report["figures"] if f["name"].startswith("PEFs embedded model: examples/s"))
    assert pefs["floor"] > 0 and pefs["plain"] > 0 and pefs["ratio_to_plain"] > 0
    assert report["environment"]["torch"] and report["environment"]["cpu"]


def test_timings_take_the_calls_in_turn_and_flag_repeats_that_disagree():
    """The floors and our run are timed in turn (each repeat of one beside a repeat of the
    others, so a burst of load hits them alike), and a figure whose repeats spread (median
    over best) more than SPREAD_LIMIT is flagged in its note."""
    import torch

    from workbench.bench.figures import SPREAD_LIMIT, reliability, spread, timings

    order = []
    seconds = timings({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, 3, torch.device("cpu"),
                      before=lambda: order.append("-"))
    assert order == ["-", "a", "-", "b"] + ["-", "a", "-", "b"] * 3
    assert {k: len(v) for k, v in seconds.items()} == {"a": 3, "b": 3}
    assert spread([2.0, 1.0, 3.0]) == 2.0
    assert reliability([1.0, 1.05, SPREAD_LIMIT * 0.99]) == ""
    assert reliability([1.0, 2.0, 2.0]).startswith("UNRELIABLE: repeats spread 2x")
