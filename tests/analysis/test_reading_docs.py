"""docs/reading.md lists every definition the panels show, and is linked from the README."""

from pathlib import Path

from workbench.analysis.definitions import DEFINITIONS

ROOT = Path(__file__).resolve().parents[2]


def test_reading_page_defines_every_column_and_number():
    page = (ROOT / "docs" / "reading.md").read_text()
    missing = [name for name in DEFINITIONS if f"| `{name}` |" not in page]
    assert not missing, f"docs/reading.md lacks {missing}"
    # the page is a copy of the definitions: a copy the test checked only by name had drifted from the tooltip
    rows = {line.split(" | ", 1)[0][len("| `"):-1]: line.split(" | ", 1)[1][:-len(" |")]
            for line in page.splitlines() if line.startswith("| `")}
    drifted = [name for name, text in DEFINITIONS.items() if rows[name] != text.replace("|", "\\|")]
    assert not drifted, f"docs/reading.md says otherwise than analysis/definitions.py of {drifted}"
    assert "| `<attribute>_purity` |" in page and "| `<attribute>_entropy` |" in page
    assert "![" in page and (ROOT / "docs" / "workbench.png").exists()


def test_readme_links_the_reading_page():
    assert "(docs/reading.md)" in (ROOT / "README.md").read_text()
