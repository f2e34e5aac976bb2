"""Reading the training data: bundled scikit-learn datasets or CSV/Parquet through fsspec."""

from __future__ import annotations

import posixpath
from typing import Any

import fsspec
import pandas as pd
from fsspec.core import url_to_fs

from modelfactory_api.trainingjob import TOY_DATASETS, DatasetSpec
from modelfactory_training.errors import SpecError, TransientError

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


def load_frame(spec: DatasetSpec) -> pd.DataFrame:
    """Read the dataset the spec names; errors say what is wrong with the input."""
    if spec.uri.startswith(SKLEARN_SCHEME):
        return load_toy(spec.uri[len(SKLEARN_SCHEME) :])
    fmt = detect_format(spec.uri, spec.format)
    try:
        fs, path = url_to_fs(spec.uri)
    except (ImportError, ValueError) as exc:
        raise SpecError("UnsupportedStorage", f"dataset: cannot open {spec.uri!r}: {exc}") from exc
    try:
        if not fs.exists(path):
            raise SpecError("DataNotFound", f"dataset: {spec.uri} does not exist")
        if fmt == "parquet":
            if fs.isdir(path):
                return pd.read_parquet(path, filesystem=fs)
            with fs.open(path, "rb") as fh:
                return pd.read_parquet(fh)
        sep = "\t" if ".tsv" in path.lower() else ","
        with fsspec.open(spec.uri, "rb", compression="infer") as fh:
            return pd.read_csv(fh, sep=sep)
    except SpecError:
        raise
    except pd.errors.EmptyDataError as exc:
        raise SpecError("EmptyData", f"dataset: {spec.uri} is empty") from exc
    except FileNotFoundError as exc:
        raise SpecError("DataNotFound", f"dataset: {spec.uri} does not exist") from exc
    except IsADirectoryError as exc:
        raise SpecError("DataNotFound", f"dataset: {spec.uri} is a directory") from exc
    except (PermissionError, ConnectionError, TimeoutError, OSError) as exc:
        raise TransientError("DataUnavailable", f"dataset: cannot read {spec.uri}: {exc}") from exc
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise SpecError("InvalidData", f"dataset: {spec.uri} is not valid {fmt}: {exc}") from exc
    except Exception as exc:
        # pyarrow's parse errors are ArrowInvalid (a ValueError), anything else is unexpected.
        raise TransientError("DataUnavailable", f"dataset: cannot read {spec.uri}: {exc}") from exc
