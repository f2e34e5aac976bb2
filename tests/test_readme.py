"""The front door tells the truth where a test can check it: the figures README.md cites are the
benchmarks page's, its links into that page land on a heading, and every install line installs."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
BENCHMARKS = ROOT / "docs" / "benchmarks.md"
PACKAGES = ("api", "artifacts", "operator", "serving", "training")
TIMES = "\N{MULTIPLICATION SIGN}"


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_links_to_the_benchmarks_page_land_on_a_heading() -> None:
    anchors = {slug(h) for h in re.findall(r"^#+ (.+)$", BENCHMARKS.read_text(), re.M)}
    links = re.findall(r"docs/benchmarks\.md#([\w-]+)", README.read_text())
    assert links
    assert [a for a in links if a not in anchors] == []


def test_the_figures_the_readme_cites_are_on_the_benchmarks_page() -> None:
    readme = " ".join(README.read_text().split())
    page = BENCHMARKS.read_text()
    cited = []
    # Ratios (a range such as 57-233 or one figure such as 3.9, then the multiplication sign)
    # and the durations measured on the 2-core machine.
    for low, high in re.findall(r"(\d[\d.,]*)(?:-(\d[\d.,]*))?" + TIMES, readme):
        cited += [low + TIMES] + ([high + TIMES] if high else [])
    cited += [f"{s} s" for s in re.findall(r"(\d[\d,]*) s on 2 cores", readme)]
    assert cited
    assert [c for c in cited if c not in page] == []


def local_dependencies(package: str) -> set[str]:
    project = tomllib.loads((ROOT / package / "pyproject.toml").read_text())["project"]
    deps = {re.split(r"[<>=\[ ;]", d, maxsplit=1)[0] for d in project["dependencies"]}
    return {d.removeprefix("modelfactory-") for d in deps if d.startswith("modelfactory-")}


@pytest.mark.parametrize(
    "doc",
    [README, *sorted((ROOT / "charts").glob("*/README.md"))],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_every_install_line_names_the_local_packages_it_needs(doc: Path) -> None:
    text = " ".join(doc.read_text().split())
    for line in re.findall(r"pip install((?: -e)?(?: \./[\w-]+)+)", text):
        named = set(re.findall(r"\./([\w-]+)", line))
        assert named <= set(PACKAGES), line
        needed = set().union(*(local_dependencies(p) for p in named))
        assert needed <= named, f"pip install{line}: also needs {sorted(needed - named)}"
