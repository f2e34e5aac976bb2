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


def test_only_the_features_and_the_target_are_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyarrow.csv as pacsv

    frame = pd.DataFrame({"a": [1.0, 2.0], "unused": ["x" * 50, "y"], "b": [3, 4], "y": [0, 1]})
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.to_parquet(tmp_path / "t.parquet")
    parsed: list[object] = []
    real = pacsv.read_csv

    def watch(*args: object, **kwargs: object) -> object:
        parsed.append(kwargs["convert_options"].include_columns)  # type: ignore[attr-defined]
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pacsv, "read_csv", watch)
    for name in ("t.csv", "t.parquet"):
        loaded = load_frame(spec(str(tmp_path / name), target="y", features=["b", "a"]))
        assert list(loaded.columns) == ["b", "a", "y"]
    assert parsed == [["b", "a", "y"]]  # the unused column was never converted
    # Without a feature list every column is a feature.
    assert list(load_frame(spec(str(tmp_path / "t.csv"), target="y")).columns) == list(frame)


def test_a_missing_feature_is_left_for_the_spec_check_to_name(tmp_path: Path) -> None:
    pd.DataFrame({"a": [1.0], "y": [0]}).to_csv(tmp_path / "t.csv", index=False)
    loaded = load_frame(spec(str(tmp_path / "t.csv"), target="y", features=["a", "nope"]))
    assert list(loaded.columns) == ["a", "y"]  # all columns, so the error can list them


def test_csv_types_match_what_pandas_reads(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text(
        "n,i,s,d,y\n1.5,1,x,2026-01-02,0\n,2,,2026-01-03,1\n2.5,,z,2026-01-04,0\n"
    )
    loaded = load_frame(spec(str(tmp_path / "t.csv"), target="y"))
    assert str(loaded["n"].dtype) == "float64" and str(loaded["i"].dtype) == "float64"
    # Empty text is missing, and dates stay text (a category, not a number).
    assert loaded["s"].isna().tolist() == [False, True, False]
    assert loaded["d"].tolist() == ["2026-01-02", "2026-01-03", "2026-01-04"]
    assert not pd.api.types.is_numeric_dtype(loaded["d"])


def test_ragged_csv_is_invalid_data(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("a,y\n1,0\n2,1,5\n")
    with pytest.raises(SpecError) as err:
        load_frame(spec(str(tmp_path / "t.csv"), target="y"))
    assert err.value.reason == "InvalidData"
