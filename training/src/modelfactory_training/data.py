"""Reading the training data: bundled scikit-learn datasets or CSV/Parquet through fsspec.

Files are parsed by pyarrow and only the columns training uses (the features and the target,
when the spec names the features) are read. The data's digest (modelfactory_training.digest) is
taken on the way: a CSV is hashed while it is parsed.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.dataset as pads
import pyarrow.parquet as pq
from fsspec.compression import compr
from fsspec.core import url_to_fs
from fsspec.utils import infer_compression

from modelfactory_api.storage_errors import access_denied_message, classify
from modelfactory_api.trainingjob import TOY_DATASETS, DatasetSpec
from modelfactory_training.digest import (
    HashingReader,
    file_digest,
    frame_digest,
    prefix_digest,
)
from modelfactory_training.errors import SpecError, StorageAccessError, TransientError

SKLEARN_SCHEME = "sklearn://"
TOY_TARGET = "target"

_EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_COMPRESSIONS = (".gz", ".bz2", ".zst", ".xz", ".zip")


def detect_format(uri: str, declared: str) -> str:
    """The file format: the declared one, or the one the extension names."""
    if declared != "auto":
        return declared
    name = posixpath.basename(uri.rstrip("/")).lower()
    for suffix in _COMPRESSIONS:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    for ext, fmt in _EXTENSIONS.items():
        if name.endswith(ext):
            return fmt
    raise SpecError(
        "UnsupportedFormat",
        f"dataset: cannot tell the format of {uri!r} from its extension; "
        "name it .csv or .parquet or set dataset.format",
    )


def load_toy(name: str) -> pd.DataFrame:
    """A bundled scikit-learn dataset as one frame, the target column named `target`."""
    if name not in TOY_DATASETS:
        raise SpecError(
            "DataNotFound",
            f"dataset: unknown bundled dataset sklearn://{name}; "
            f"available: {', '.join(TOY_DATASETS)}",
        )
    from sklearn import datasets

    loader: Any = getattr(datasets, f"load_{name}")
    bunch = loader(as_frame=True)
    frame: pd.DataFrame = bunch.frame
    if TOY_TARGET not in frame.columns:  # pragma: no cover - all bundled sets have it
        frame = frame.assign(**{TOY_TARGET: bunch.target})
    return frame


def wanted_columns(spec: DatasetSpec) -> list[str] | None:
    """The columns training reads (the features and the target); None for all of them."""
    if spec.features is None or spec.target is None:
        return None
    return list(dict.fromkeys([*spec.features, spec.target]))


def prune(available: list[str], wanted: list[str] | None) -> list[str] | None:
    """Columns to read: the wanted ones when the file has them all. Otherwise everything, so
    the spec check names the missing column next to the ones the file has."""
    if wanted is None or not set(wanted) <= set(available):
        return None
    return wanted


def _text_columns(table: pa.Table) -> pa.Table:
    """Dates and times as the text they were: pandas would have read them as strings, and the
    preprocessing treats them as categories, not as numbers."""
    for i, field in enumerate(table.schema):
        if pa.types.is_temporal(field.type):
            table = table.set_column(i, field.name, table.column(i).cast(pa.string()))
    return table


def read_csv(fs: Any, path: str, sep: str, wanted: list[str] | None) -> tuple[pd.DataFrame, str]:
    """A CSV read by pyarrow (multithreaded, compact strings), only the wanted columns parsed,
    and the digest of the file's bytes, hashed as the parser reads them.

    The Arrow table is released column by column while it becomes the frame, so the peak is
    about one copy of the data, not two.
    """
    parse = pacsv.ParseOptions(delimiter=sep)
    # Empty strings are missing values, as in pandas; dates stay text.
    convert = pacsv.ConvertOptions(strings_can_be_null=True)
    codec = infer_compression(path)
    if wanted is not None:
        with fs.open(path, "rb", compression=codec) as fh:
            header = pacsv.open_csv(fh, parse_options=parse).schema.names
        convert.include_columns = prune(header, wanted) or []
    with fs.open(path, "rb") as raw:
        hashing = HashingReader(raw)
        # The stored bytes are hashed, so decompression sits on top of the hashing reader.
        stream = compr[codec](hashing, mode="rb") if codec else hashing
        table = pacsv.read_csv(stream, parse_options=parse, convert_options=convert)
        digest = hashing.finish()
    # A reader that skipped bytes (a zip archive's directory at its end) gets a second pass.
    return arrow_to_frame(_text_columns(table)), digest or file_digest(fs, path)


def arrow_to_frame(table: pa.Table) -> pd.DataFrame:
    # One block per column (no consolidation copy); buffers freed as they are converted.
    return table.to_pandas(split_blocks=True, self_destruct=True)


def read_parquet(fs: Any, path: str, wanted: list[str] | None) -> tuple[pd.DataFrame, str]:
    """A Parquet file or partitioned directory, and its digest: a directory's from its object
    listing, a file's from a second streamed pass (the reader seeks: it cannot hash as it reads).
    """
    if fs.isdir(path):
        dataset = pads.dataset(path, filesystem=fs, format="parquet")
        columns = prune(dataset.schema.names, wanted)
        return arrow_to_frame(dataset.to_table(columns=columns)), prefix_digest(fs, path)
    with fs.open(path, "rb") as fh:
        parquet = pq.ParquetFile(fh)
        columns = prune(parquet.schema_arrow.names, wanted)
        frame = arrow_to_frame(parquet.read(columns=columns))
    return frame, file_digest(fs, path)


@dataclass(frozen=True)
class LoadedData:
    frame: pd.DataFrame
    digest: str  # sha256:<hex>; see modelfactory_training.digest for what it covers


def load_frame(spec: DatasetSpec) -> pd.DataFrame:
    return load_data(spec).frame


def load_data(spec: DatasetSpec) -> LoadedData:
    """Read the dataset the spec names, with its digest; errors say what is wrong with the
    input."""
    if spec.uri.startswith(SKLEARN_SCHEME):
        frame = load_toy(spec.uri[len(SKLEARN_SCHEME) :])
        return LoadedData(frame, frame_digest(frame))
    fmt = detect_format(spec.uri, spec.format)
    try:
        fs, path = url_to_fs(spec.uri)
    except (ImportError, ValueError) as exc:
        raise SpecError("UnsupportedStorage", f"dataset: cannot open {spec.uri!r}: {exc}") from exc
    wanted = wanted_columns(spec)
    try:
        if not fs.exists(path):
            raise SpecError("DataNotFound", f"dataset: {spec.uri} does not exist")
        if fmt == "parquet":
            return LoadedData(*read_parquet(fs, path, wanted))
        sep = "\t" if ".tsv" in path.lower() else ","
        return LoadedData(*read_csv(fs, path, sep, wanted))
    except SpecError:
        raise
    except pd.errors.EmptyDataError as exc:
        raise SpecError("EmptyData", f"dataset: {spec.uri} is empty") from exc
    except pa.ArrowInvalid as exc:
        if "Empty CSV file" in str(exc):
            raise SpecError("EmptyData", f"dataset: {spec.uri} is empty") from exc
        raise SpecError("InvalidData", f"dataset: {spec.uri} is not valid {fmt}: {exc}") from exc
    except FileNotFoundError as exc:
        raise SpecError("DataNotFound", f"dataset: {spec.uri} does not exist") from exc
    except IsADirectoryError as exc:
        raise SpecError("DataNotFound", f"dataset: {spec.uri} is a directory") from exc
    except (PermissionError, ConnectionError, TimeoutError, OSError) as exc:
        if classify(exc) == "AccessDenied":
            raise StorageAccessError(f"dataset: {access_denied_message(spec.uri, exc)}") from exc
        raise TransientError("DataUnavailable", f"dataset: cannot read {spec.uri}: {exc}") from exc
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise SpecError("InvalidData", f"dataset: {spec.uri} is not valid {fmt}: {exc}") from exc
    except Exception as exc:
        # pyarrow's parse errors are ArrowInvalid (a ValueError), anything else is unexpected;
        # botocore's NoCredentialsError is neither.
        if classify(exc) == "AccessDenied":
            raise StorageAccessError(f"dataset: {access_denied_message(spec.uri, exc)}") from exc
        raise TransientError("DataUnavailable", f"dataset: cannot read {spec.uri}: {exc}") from exc
