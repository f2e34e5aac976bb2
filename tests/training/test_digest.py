"""The data digest: file bytes streamed, object listings, and hashing while a parser reads."""

from __future__ import annotations

import gzip
import hashlib
import io
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pandas as pd
import pytest

from modelfactory_api.trainingjob import DatasetSpec
from modelfactory_training import data as data_module
from modelfactory_training.data import load_data
from modelfactory_training.digest import (
    HashingReader,
    file_digest,
    frame_digest,
    manifest_digest,
    object_identity,
    prefix_digest,
    stream_digest,
)

pytestmark = pytest.mark.unit


def sha(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


class CountingReader(io.BytesIO):
    """Records the largest single read, to show the file is never read whole."""

    largest = 0

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self.largest = max(self.largest, len(data))
        return data


def test_a_file_digest_is_its_bytes_sha256_and_stable(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes(b"a,b\n1,2\n")
    fs = fsspec.filesystem("file")
    assert file_digest(fs, str(path)) == sha(b"a,b\n1,2\n")
    assert file_digest(fs, str(path)) == file_digest(fs, str(path))


def test_one_changed_byte_changes_the_digest(tmp_path: Path) -> None:
    fs = fsspec.filesystem("file")
    path = tmp_path / "d.csv"
    path.write_bytes(b"a,b\n1,2\n")
    before = file_digest(fs, str(path))
    path.write_bytes(b"a,b\n1,3\n")
    assert file_digest(fs, str(path)) != before


def test_a_large_file_is_streamed_in_chunks() -> None:
    payload = np.random.default_rng(0).bytes(5 * 1024 * 1024 + 17)
    reader = CountingReader(payload)
    assert stream_digest(reader, chunk_bytes=64 * 1024) == sha(payload)
    assert reader.largest == 64 * 1024


@pytest.mark.parametrize(
    ("info", "identity"),
    [
        ({"ETag": '"abc"', "size": 3}, "etag:abc"),
        ({"generation": 1712, "size": 3, "updated": "t"}, "generation:1712"),
        ({"size": 3, "mtime": 1.5}, "size:3,mtime:1.5"),
        ({"size": 3, "LastModified": "2024-01-01"}, "size:3,mtime:2024-01-01"),
    ],
)
def test_object_identity(info: dict[str, Any], identity: str) -> None:
    assert object_identity(info) == identity


def test_a_manifest_digest_ignores_listing_order_and_sees_any_change() -> None:
    entries = [("part-1.parquet", "etag:a"), ("part-0.parquet", "etag:b")]
    assert manifest_digest(entries) == manifest_digest(list(reversed(entries)))
    assert manifest_digest(entries) != manifest_digest([entries[0], ("part-0.parquet", "etag:c")])
    assert manifest_digest(entries) != manifest_digest(entries[:1])


def test_a_prefix_of_several_files(tmp_path: Path) -> None:
    fs = fsspec.filesystem("file")
    (tmp_path / "ds" / "year=2024").mkdir(parents=True)
    (tmp_path / "ds" / "year=2024" / "a.parquet").write_bytes(b"one")
    (tmp_path / "ds" / "b.parquet").write_bytes(b"two")
    first = prefix_digest(fs, str(tmp_path / "ds"))
    assert first == prefix_digest(fs, f"{tmp_path / 'ds'}/")
    assert first.startswith("sha256:") and len(first) == 71
    (tmp_path / "ds" / "b.parquet").write_bytes(b"two, longer")
    assert prefix_digest(fs, str(tmp_path / "ds")) != first


def test_prefix_digest_names_objects_relative_to_the_prefix() -> None:
    fs = fsspec.filesystem("memory")
    for root in ("/x", "/y"):
        fs.pipe(f"{root}/ds/a.parquet", b"same")
    # Same objects under another prefix: the memory filesystem has no mtime, sizes match.
    assert prefix_digest(fs, "/x/ds") == prefix_digest(fs, "/y/ds")


def test_frame_digest_follows_content() -> None:
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    assert frame_digest(frame) == frame_digest(frame.copy())
    assert frame_digest(frame) != frame_digest(frame.assign(a=[1, 3]))
    assert frame_digest(frame) != frame_digest(frame.rename(columns={"a": "c"}))


def test_hashing_reader_hashes_what_is_read_and_the_rest() -> None:
    payload = b"0123456789" * 1000
    reader = HashingReader(io.BytesIO(payload))
    reader.read(10)
    reader.seek(5)  # a re-read of hashed bytes is not hashed twice
    reader.read(100)
    assert reader.finish(chunk_bytes=7) == sha(payload)


def test_hashing_reader_gives_up_when_bytes_are_skipped() -> None:
    reader = HashingReader(io.BytesIO(b"x" * 100))
    reader.seek(50)
    reader.read(10)
    assert reader.finish() is None


def test_a_csv_is_hashed_while_it_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    frame = pd.DataFrame({"a": np.arange(50_000), "y": ["p", "q"] * 25_000})
    plain, packed = tmp_path / "d.csv", tmp_path / "d.csv.gz"
    frame.to_csv(plain, index=False)
    packed.write_bytes(gzip.compress(plain.read_bytes()))

    def no_second_pass(*_: Any) -> str:
        raise AssertionError("the CSV was read twice")

    monkeypatch.setattr(data_module, "file_digest", no_second_pass)
    for path in (plain, packed):
        for features in (None, ["a"]):
            loaded = load_data(DatasetSpec(uri=str(path), target="y", features=features))
            assert loaded.digest == sha(path.read_bytes())  # the stored, compressed bytes
            assert len(loaded.frame) == 50_000


def test_parquet_file_and_directory_digests(tmp_path: Path) -> None:
    frame = pd.DataFrame({"a": [1, 2, 3], "y": [0, 1, 0]})
    frame.to_parquet(tmp_path / "d.parquet")
    (tmp_path / "ds").mkdir()
    frame.to_parquet(tmp_path / "ds" / "part-0.parquet")
    single = load_data(DatasetSpec(uri=str(tmp_path / "d.parquet"), target="y"))
    assert single.digest == sha((tmp_path / "d.parquet").read_bytes())
    spec = DatasetSpec(uri=str(tmp_path / "ds"), target="y", format="parquet")
    assert load_data(spec).digest == prefix_digest(fsspec.filesystem("file"), str(tmp_path / "ds"))


def test_a_bundled_dataset_has_a_content_digest() -> None:
    first = load_data(DatasetSpec(uri="sklearn://iris"))
    assert first.digest == load_data(DatasetSpec(uri="sklearn://iris")).digest
    assert first.digest != load_data(DatasetSpec(uri="sklearn://wine")).digest
