"""Listing the input and checking its schema, before any row is scored."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from modelfactory_api.batchprediction import BatchInput
from modelfactory_artifacts.metadata import FeatureInfo
from modelfactory_training.batch.inputs import check_schema, list_inputs
from modelfactory_training.errors import SpecError

pytestmark = pytest.mark.unit

FEATURES = [
    FeatureInfo(name="x0", dtype="float64", kind="numeric"),
    FeatureInfo(name="city", dtype="object", kind="categorical"),
]


def test_a_prefix_lists_the_formats_files_sorted_with_sizes_and_digests(tmp_path: Path) -> None:
    for name in ["b.csv", "a.csv", "c.parquet", "_staging/x.csv", ".hidden.csv"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x0,city\n1,paris\n")
    found = list_inputs(BatchInput(uri=f"{tmp_path}/", format="csv"))
    assert [Path(f.path).name for f in found.files] == ["a.csv", "b.csv"]
    assert all(f.size == 16 and f.sha256 and f.sha256.startswith("sha256:") for f in found.files)
    assert found.files[0].sha256 == found.files[1].sha256  # same bytes, same digest


def test_nothing_to_read_names_the_uri(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=f"no parquet files .* under {tmp_path}/") as err:
        list_inputs(BatchInput(uri=f"{tmp_path}/", format="parquet"))
    assert err.value.reason == "DataNotFound" and err.value.permanent
    with pytest.raises(SpecError, match="does not exist"):
        list_inputs(BatchInput(uri=f"{tmp_path}/nope.csv", format="csv"))


def test_schema_problems_are_all_named_per_file(tmp_path: Path) -> None:
    pd.DataFrame({"x0": ["1", "two", ""], "id": [1, 2, 3]}).to_csv(tmp_path / "a.csv", index=False)
    pd.DataFrame({"x0": [1.0], "city": ["lyon"], "id": [4]}).to_csv(tmp_path / "b.csv", index=False)
    pd.DataFrame({"x0": ["1"], "city": ["nice"], "id": [5]}).to_parquet(tmp_path / "c.parquet")
    found = list_inputs(BatchInput(uri=f"{tmp_path}/", format="csv"))
    with pytest.raises(SpecError) as err:
        check_schema(found, FEATURES, ["id", "note"])
    message = err.value.message
    assert err.value.reason == "SchemaMismatch"
    assert "a.csv: missing feature column(s) 'city'" in message
    assert "a.csv: missing carried column(s) 'note'" in message
    assert "numeric feature 'x0' holds values that are not double (e.g. 'two')" in message
    assert "b.csv: missing carried column(s) 'note'" in message
    parquet = list_inputs(BatchInput(uri=str(tmp_path / "c.parquet"), format="parquet"))
    with pytest.raises(SpecError, match=r"numeric feature .x0. is of type (large_)?string"):
        check_schema(parquet, FEATURES, [])


def test_csv_read_types_are_fixed_by_the_check(tmp_path: Path) -> None:
    pd.DataFrame({"x0": [1, 2], "city": ["a", None], "id": [7, 8], "empty": [None, None]}).to_csv(
        tmp_path / "a.csv", index=False
    )
    found = list_inputs(BatchInput(uri=str(tmp_path / "a.csv"), format="csv"))
    check_schema(found, FEATURES, ["id", "empty"])
    assert {k: str(v) for k, v in found.column_types.items()} == {
        "x0": "double",
        "city": "string",
        "id": "int64",
        "empty": "string",
    }
    assert found.files[0].rows == 2
