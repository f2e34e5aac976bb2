"""The input of a scoring run, checked before any row is scored.

`list_inputs` finds the files (one file, or every file of the format under a prefix ending in
'/', sorted by name), their sizes and identities (the store's ETag or generation, else the
sha256 of the bytes, streamed). `check_schema` reads each file's schema (a Parquet footer; a
CSV's header and its first rows) and fails the run with SchemaMismatch naming every missing
feature or carried column, and every numeric feature whose column is not numbers, per file.
`diagnose_csv` finds the bad value when one appears later in a file, past the sample.
"""

from __future__ import annotations

import hashlib
import logging
import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from fsspec.core import url_to_fs

from modelfactory_api.batchprediction import BatchInput
from modelfactory_api.storage_errors import access_denied_message, classify
from modelfactory_artifacts.batch_manifest import InputFile
from modelfactory_artifacts.metadata import FeatureInfo
from modelfactory_training.batch.model import arrow_type
from modelfactory_training.errors import SpecError, StorageAccessError, TransientError

log = logging.getLogger(__name__)

SAMPLE_ROWS = 1000
CHUNK_BYTES = 1 << 20
_EXTENSIONS = {"csv": (".csv",), "parquet": (".parquet", ".pq")}
_SHOWN = 5  # bad values quoted per column


@dataclass
class InputFileInfo:
    path: str  # as the filesystem names it (no protocol)
    uri: str
    size: int
    etag: str | None = None
    sha256: str | None = None
    rows: int | None = None  # known for Parquet (the footer), estimated for CSV
    columns: list[str] = field(default_factory=list)

    def entry(self) -> InputFile:
        return InputFile(path=self.uri, size=self.size, etag=self.etag, sha256=self.sha256)


@dataclass
class InputSet:
    uri: str
    format: str
    fs: Any
    files: list[InputFileInfo]
    column_types: dict[str, pa.DataType] = field(default_factory=dict)  # CSV: read as

    @property
    def bytes_total(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def paths(self) -> list[str]:
        return [f.path for f in self.files]


def _storage_error(uri: str, exc: Exception) -> Exception:
    if classify(exc) == "AccessDenied":
        return StorageAccessError(f"input: {access_denied_message(uri, exc)}")
    return TransientError("DataUnavailable", f"input: cannot read {uri}: {exc}")


def _etag(info: dict[str, Any]) -> str | None:
    for key in ("ETag", "etag"):
        if info.get(key):
            return str(info[key]).strip('"')
    if info.get("generation"):
        return f"generation:{info['generation']}"
    return None


def _sha256(fs: Any, path: str) -> str:
    hasher = hashlib.sha256()
    with fs.open(path, "rb") as fh:
        while chunk := fh.read(CHUNK_BYTES):
            hasher.update(chunk)
    return f"sha256:{hasher.hexdigest()}"


def list_inputs(spec: BatchInput) -> InputSet:
    """The files to score, sorted, with sizes and identities; DataNotFound names the URI."""
    try:
        fs, root = url_to_fs(spec.uri)
    except (ImportError, ValueError) as exc:
        raise SpecError("UnsupportedStorage", f"input: cannot open {spec.uri!r}: {exc}") from exc
    try:
        if spec.uri.endswith("/"):
            if not fs.isdir(root):
                raise SpecError("DataNotFound", f"input: no folder at {spec.uri}")
            found: dict[str, dict[str, Any]] = fs.find(root, detail=True)
            infos = {
                p: i
                for p, i in found.items()
                if i.get("type", "file") != "directory"
                and posixpath.basename(p).lower().endswith(_EXTENSIONS[spec.format])
                and not any(part.startswith(("_", ".")) for part in p[len(root) :].split("/"))
            }
            if not infos:
                raise SpecError(
                    "DataNotFound",
                    f"input: no {spec.format} files ({', '.join(_EXTENSIONS[spec.format])}) "
                    f"under {spec.uri}",
                )
        else:
            if not fs.exists(root):
                raise SpecError("DataNotFound", f"input: {spec.uri} does not exist")
            if fs.isdir(root):
                raise SpecError(
                    "DataNotFound",
                    f"input: {spec.uri} is a folder; end the URI with '/' to read its files",
                )
            infos = {root: fs.info(root)}
        files = []
        for path in sorted(infos):
            info = infos[path]
            etag = _etag(info)
            files.append(
                InputFileInfo(
                    path=path,
                    uri=fs.unstrip_protocol(path),
                    size=int(info.get("size") or 0),
                    etag=etag,
                    sha256=None if etag else _sha256(fs, path),
                )
            )
    except SpecError:
        raise
    except FileNotFoundError as exc:
        raise SpecError("DataNotFound", f"input: {spec.uri} does not exist") from exc
    except Exception as exc:
        raise _storage_error(spec.uri, exc) from exc
    return InputSet(uri=spec.uri, format=spec.format, fs=fs, files=files)


# ---------------------------------------------------------------------- schema
def _numeric_type(t: pa.DataType) -> bool:
    return (
        pa.types.is_integer(t)
        or pa.types.is_floating(t)
        or pa.types.is_decimal(t)
        or pa.types.is_boolean(t)
        or pa.types.is_null(t)
    )


def _bad_values(column: pa.ChunkedArray | pa.Array) -> list[str]:
    """Values of a text column that are not numbers (empty and null ones are missing)."""
    text = pd.Series(column.to_pandas(), dtype=object).dropna()
    numbers = pd.to_numeric(text, errors="coerce")
    bad = text[numbers.isna() & (text.astype(str).str.strip() != "")]
    return [str(v) for v in pd.unique(bad)[:_SHOWN]]


def _csv_sample(
    fs: Any, f: InputFileInfo, wanted: Sequence[str], text: Sequence[str]
) -> tuple[list[str], pa.Table]:
    """The header and the first SAMPLE_ROWS rows of the wanted columns, the `text` ones read
    as text (checked by the caller), the others as pyarrow infers them."""
    with fs.open(f.path, "rb") as fh:
        reader = pacsv.open_csv(
            fh,
            read_options=pacsv.ReadOptions(block_size=CHUNK_BYTES),
            convert_options=pacsv.ConvertOptions(
                strings_can_be_null=True, column_types={c: pa.string() for c in text}
            ),
        )
        header = reader.schema.names
        present = [c for c in wanted if c in header]
        batches, rows = [], 0
        while rows < SAMPLE_ROWS:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                break
            batches.append(batch.select(present))
            rows += batch.num_rows
        consumed = fh.tell()
    schema = pa.schema([reader.schema.field(c) for c in present])
    table = pa.Table.from_batches(batches, schema=schema)
    if rows and consumed:
        # A CSV's rows are estimated from the sample's bytes per row, for the progress.
        f.rows = max(rows, int(f.size / max(consumed / rows, 1)))
    return header, table.slice(0, SAMPLE_ROWS)


def _csv_problems(
    table: pa.Table, features: Sequence[FeatureInfo], carry_types: dict[str, pa.DataType]
) -> list[str]:
    problems = []
    for feature in features:
        if feature.name not in table.column_names:
            continue
        column = table.column(feature.name)
        want = arrow_type(feature)
        if _numeric_type(column.type) or column.type == want:
            continue
        try:
            pc.cast(column, want)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            shown = _bad_values(column) if feature.kind == "numeric" else []
            what = "numeric feature" if feature.kind == "numeric" else f"{want} feature"
            values = f" (e.g. {', '.join(repr(v) for v in shown)})" if shown else ""
            problems.append(f"{what} {feature.name!r} holds values that are not {want}{values}")
    for name, column in zip(table.column_names, table.columns, strict=True):
        if name in {f.name for f in features}:
            continue
        carry_types.setdefault(name, pa.string() if pa.types.is_null(column.type) else column.type)
    return problems


def _parquet_problems(schema: pa.Schema, features: Sequence[FeatureInfo]) -> list[str]:
    problems = []
    for feature in features:
        if feature.name not in schema.names:
            continue
        t = schema.field(feature.name).type
        if feature.kind == "numeric" and not _numeric_type(t):
            problems.append(f"numeric feature {feature.name!r} is of type {t}, not a number")
    return problems


def check_schema(inputs: InputSet, features: Sequence[FeatureInfo], carry: Sequence[str]) -> None:
    """Every file has every feature and carried column, and numbers where the model needs
    them; otherwise SchemaMismatch naming each problem and its file. For CSV, fixes the types
    the columns are read as (features by the model's metadata, carried columns as the first
    file's sample reads them), so every block of every file has the same schema."""
    wanted = list(dict.fromkeys([*(f.name for f in features), *carry]))
    text = [f.name for f in features if arrow_type(f) != pa.string()]
    problems: list[str] = []
    carry_types: dict[str, pa.DataType] = {}
    for f in inputs.files:
        try:
            if inputs.format == "parquet":
                with inputs.fs.open(f.path, "rb") as fh:
                    meta = pq.ParquetFile(fh)
                    schema = meta.schema_arrow
                    f.rows = meta.metadata.num_rows
                columns = schema.names
                found = _parquet_problems(schema, features)
            else:
                columns, sample = _csv_sample(inputs.fs, f, wanted, text)
                found = _csv_problems(sample, features, carry_types)
        except (pa.ArrowInvalid, UnicodeDecodeError, ValueError) as exc:
            raise SpecError(
                "InvalidData", f"input: {f.uri} is not valid {inputs.format}: {exc}"
            ) from exc
        except FileNotFoundError as exc:
            raise SpecError("DataNotFound", f"input: {f.uri} does not exist") from exc
        except OSError as exc:
            raise _storage_error(f.uri, exc) from exc
        f.columns = columns
        missing_features = [f_.name for f_ in features if f_.name not in columns]
        missing_carry = [c for c in carry if c not in columns]
        if missing_features:
            found.insert(0, f"missing feature column(s) {', '.join(map(repr, missing_features))}")
        if missing_carry:
            found.insert(
                len(missing_features) > 0,
                f"missing carried column(s) {', '.join(map(repr, missing_carry))}",
            )
        problems.extend(f"{f.uri}: {p}" for p in found)
    if problems:
        raise SpecError("SchemaMismatch", "input: " + "; ".join(problems))
    if inputs.format == "csv":
        types = {f.name: arrow_type(f) for f in features}
        inputs.column_types = {**{c: carry_types.get(c, pa.string()) for c in carry}, **types}


# ---------------------------------------------------------------------- late failures
_COLUMN = re.compile(r"CSV column #(\d+)")


def diagnose_csv(inputs: InputSet, columns: Sequence[str]) -> SpecError | None:
    """Re-read the CSV files as the pipeline does, streaming, and name the first value that
    does not convert (file, column, value): what a failed read task does not say."""
    types = dict(inputs.column_types)
    for f in inputs.files:
        convert = pacsv.ConvertOptions(
            column_types=types, include_columns=list(columns), strings_can_be_null=True
        )
        try:
            with inputs.fs.open(f.path, "rb") as fh:
                reader = pacsv.open_csv(fh, convert_options=convert)
                for _ in reader:
                    pass
        except pa.ArrowInvalid as exc:
            message = str(exc)
            match = _COLUMN.search(message)
            if match and f.columns and int(match.group(1)) < len(f.columns):
                name = f.columns[int(match.group(1))]
                want = types.get(name)
                return SpecError(
                    "InvalidData",
                    f"input: {f.uri}: column {name!r} holds a value that is not {want} past the "
                    f"rows the schema check sampled: {message}",
                )
            return SpecError("InvalidData", f"input: {f.uri} is not valid csv: {message}")
        except Exception as exc:  # storage trouble: the caller reports the original failure
            log.warning("cannot re-read the input", extra={"file": f.uri, "error": str(exc)})
            return None
    return None
