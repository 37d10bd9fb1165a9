"""python -m workbench.evaluate --quick: every table written, with figures that obey their definitions."""

import re

import pytest

from workbench.app.pipeline import DEFAULT_SCOPE, SCOPES
from workbench.evaluate import main, plan


def _rows(text: str, heading: str) -> list[list[str]]:
    """The cells of the first markdown table under ``## heading``."""
    section = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


def test_plan_covers_every_scope_and_the_defaults():
    settings = plan(["tiny", "minilm"], [0, 1, 2])
    assert {(s.base, s.scope) for s in settings["scope"]} == {(b, s) for b in ("tiny", "minilm") for s in SCOPES}
    assert all(s.highlights and s.perturb for s in settings["scope"])
    assert {(s.base, s.seed) for s in settings["seeds"]} == {(b, s) for b in ("tiny", "minilm") for s in (1, 2)}
    assert all(s.scope == DEFAULT_SCOPE[s.base] for s in settings["seeds"] + settings["multi"] + settings["cross"])
    assert {s.kind for s in settings["multi"]} == {"lrm", "d"} and not any(s.perturb for s in settings["multi"])


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("evaluate") / "evaluation.md"
    assert main(["--quick", "--out", str(out), "--seeds", "0"]) == 0
    return out.read_text()


def test_quick_run_writes_every_table(quick_report):
    assert "Written by `python -m workbench.evaluate --quick --out" in quick_report
    assert "Analysed texts also in the model's training or validation set: tiny BERT seed 0: 0." in quick_report
    scope = _rows(quick_report, "Parameter scope")
    assert len(scope) == 3 * len(SCOPES)  # NPEFF and two baselines per scope
    for row in scope:
        assert 0 <= float(row[3]) <= 1 and re.fullmatch(r"\d/4", row[4])
        assert 0 <= float(row[6]) <= float(row[5]) <= 1  # both found is a subset of one found
        if row[2] == "NPEFF":
            assert float(row[-2].split()[0]) > 0 and 0 <= float(row[-1]) <= 1  # KL ratio, hit rate
        if row[2] == "k-means on gradients":
            assert float(row[6]) == 0  # a hard clustering names one strategy per example
    assert len(_rows(quick_report, "Multi-factor examples: fit settings")) >= 7
    cross = _rows(quick_report, "Does the model use both strategies?")
    assert cross and all(float(v) >= 0 for row in cross for v in row[1:])
    assert re.search(r"tiny BERT \(scope no-head, seed 0\): component \d+, KL ratio [\d.]+", quick_report)


def test_quick_never_replaces_the_cited_figures_and_refuses_what_it_would_drop(monkeypatch, tmp_path, capsys):
    """--quick wrote over docs/evaluation.md, which the docs cite, and dropped --base minilm without a word."""
    import workbench.evaluate as evaluate

    written = []
    monkeypatch.setattr(evaluate, "evaluate", lambda out, **kwargs: written.append((out, kwargs)) or out)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "docs").mkdir()
    assert main(["--quick"]) == 0 and written[-1][0] == "evaluation-quick.md"
    assert written[-1][1]["n_examples"] == evaluate.QUICK_EXAMPLES and written[-1][1]["bases"] == ["tiny"]
    assert main([]) == 0 and written[-1][0] == "docs/evaluation.md" and written[-1][1]["bases"] == ["tiny", "minilm"]
    for wrong in (["--quick", "--base", "minilm"], ["--quick", "--n-examples", "600"]):
        with pytest.raises(SystemExit):
            main(wrong)
        assert "--quick runs the tiny model" in capsys.readouterr().err
