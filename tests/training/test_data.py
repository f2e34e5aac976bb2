from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from modelfactory_api.trainingjob import DatasetSpec
from modelfactory_training.data import detect_format, load_frame
from modelfactory_training.errors import SpecError

pytestmark = pytest.mark.unit


def spec(uri: str, **kwargs: object) -> DatasetSpec:
    return DatasetSpec.model_validate({"uri": uri, **kwargs})


@pytest.mark.parametrize(
    ("uri", "fmt"),
    [
        ("s3://b/k/train.csv", "csv"),
        ("gs://b/train.CSV.gz", "csv"),
        ("/d/part.parquet", "parquet"),
        ("file:///d/x.pq", "parquet"),
    ],
)
def test_detect_format(uri: str, fmt: str) -> None:
    assert detect_format(uri, "auto") == fmt


def test_unknown_extension_needs_explicit_format() -> None:
    with pytest.raises(SpecError, match="cannot tell the format"):
        detect_format("/d/data.bin", "auto")
    assert detect_format("/d/data.bin", "csv") == "csv"


@pytest.fixture
def table() -> pd.DataFrame:
    return pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"], "y": [0, 1]})


def test_reads_csv_and_parquet_by_path_and_uri(tmp_path: Path, table: pd.DataFrame) -> None:
    table.to_csv(tmp_path / "t.csv", index=False)
    table.to_parquet(tmp_path / "t.parquet")
    table.to_csv(tmp_path / "t.csv.gz", index=False)
    for uri in (
        str(tmp_path / "t.csv"),
        f"file://{tmp_path}/t.csv",
        f"file://{tmp_path}/t.parquet",
        str(tmp_path / "t.csv.gz"),
    ):
        loaded = load_frame(spec(uri))
        assert loaded["a"].tolist() == [1.0, 2.0] and loaded["b"].tolist() == ["x", "y"]


def test_reads_a_partitioned_parquet_directory(tmp_path: Path, table: pd.DataFrame) -> None:
    (tmp_path / "ds.parquet").mkdir()
    table.to_parquet(tmp_path / "ds.parquet" / "part-0.parquet")
    assert len(load_frame(spec(str(tmp_path / "ds.parquet")))) == 2


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="does not exist") as err:
        load_frame(spec(f"file://{tmp_path}/nope.csv"))
    assert err.value.reason == "DataNotFound"


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "e.csv").write_text("")
    with pytest.raises(SpecError, match="is empty") as err:
        load_frame(spec(str(tmp_path / "e.csv")))
    assert err.value.reason == "EmptyData"


def test_corrupt_parquet(tmp_path: Path) -> None:
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(SpecError) as err:
        load_frame(spec(str(tmp_path / "bad.parquet")))
    assert err.value.reason == "InvalidData"


@pytest.mark.parametrize("name", ["iris", "wine", "breast_cancer", "diabetes", "digits"])
def test_bundled_datasets_have_a_target_column(name: str) -> None:
    loaded = load_frame(spec(f"sklearn://{name}"))
    assert "target" in loaded.columns and len(loaded) > 100


def test_unknown_bundled_dataset() -> None:
    with pytest.raises(SpecError, match="unknown bundled dataset sklearn://mnist") as err:
        load_frame(spec("sklearn://mnist"))
    assert err.value.reason == "DataNotFound"
