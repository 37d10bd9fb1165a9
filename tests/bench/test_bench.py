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
