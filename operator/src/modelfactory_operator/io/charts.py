"""The charts the operator installs, read from disk."""

from __future__ import annotations

from pathlib import Path

from modelfactory_operator.logic import release


def digest(chart_dir: Path) -> str:
    """The digest of what a chart directory renders (see logic.release.chart_digest)."""
    files = {
        p.relative_to(chart_dir).as_posix(): p.read_bytes()
        for p in chart_dir.rglob("*")
        if p.is_file() and release.chart_input(p.relative_to(chart_dir).as_posix())
    }
    return release.chart_digest(files)
