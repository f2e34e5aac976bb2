"""load_artifact: verification of marker, metadata, digests and types."""

from __future__ import annotations

import json
import operator
import shutil
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from modelfactory_artifacts.metadata import (
    COMPLETE_MARKER,
    METADATA_FILENAME,
    MODEL_FILENAME,
    untrusted_types,
)
from modelfactory_artifacts.read import ArtifactError, load_artifact
from tests.serving.conftest import Artifact, numeric_data, numeric_features, write_artifact

pytestmark = pytest.mark.unit


def copy(art: Artifact, tmp_path: Path) -> Path:
    dest = tmp_path / "copy" / "1"
    shutil.copytree(art.uri, dest)
    return dest


def test_loads_and_verifies(artifacts: dict[str, Artifact]) -> None:
    art = artifacts["rf"]
    loaded = load_artifact(art.uri, art.digest)
    assert loaded.digest == art.digest
    assert loaded.metadata.task == "multiclass"
    assert "sklearn.tree._tree.Tree" in loaded.trusted_types
    X = np.asarray(art.X[:5])
    assert (loaded.estimator.predict(X) == art.estimator.predict(X)).all()


def test_digest_is_optional_but_metadata_digest_is_checked(artifacts: dict[str, Artifact]) -> None:
    assert load_artifact(artifacts["lr"].uri, None).digest == artifacts["lr"].digest


def test_file_url(artifacts: dict[str, Artifact]) -> None:
    art = artifacts["lr"]
    assert load_artifact(f"file://{art.uri}", art.digest).digest == art.digest


def test_wrong_expected_digest(artifacts: dict[str, Artifact]) -> None:
    with pytest.raises(ArtifactError) as err:
        load_artifact(artifacts["lr"].uri, "sha256:" + "0" * 64)
    assert err.value.reason == "DigestMismatch"
    assert "expected sha256:000" in err.value.message


def test_invalid_digest_string(artifacts: dict[str, Artifact]) -> None:
    with pytest.raises(ArtifactError) as err:
        load_artifact(artifacts["lr"].uri, "md5:abc")
    assert err.value.reason == "InvalidDigest"


def test_tampered_model_file(artifacts: dict[str, Artifact], tmp_path: Path) -> None:
    dest = copy(artifacts["lr"], tmp_path)
    data = bytearray((dest / MODEL_FILENAME).read_bytes())
    data[-10] ^= 0xFF
    (dest / MODEL_FILENAME).write_bytes(bytes(data))
    with pytest.raises(ArtifactError) as err:
        load_artifact(str(dest), None)
    assert err.value.reason == "DigestMismatch"
    assert "metadata.json says" in err.value.message


def test_the_digest_covers_the_metadata(artifacts: dict[str, Artifact], tmp_path: Path) -> None:
    """A profile or feature list edited after training is refused before anything is read."""
    dest = copy(artifacts["lr"], tmp_path)
    meta = json.loads((dest / METADATA_FILENAME).read_text())
    meta["metrics"]["cv_mean"] = 1.0
    (dest / METADATA_FILENAME).write_text(json.dumps(meta))
    with pytest.raises(ArtifactError) as err:
        load_artifact(str(dest), artifacts["lr"].digest)
    assert err.value.reason == "DigestMismatch"
    assert err.value.message.startswith("metadata.json has sha256:")


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError) as err:
        load_artifact(str(tmp_path / "nope"), None)
    assert err.value.reason == "MissingArtifact"


def test_incomplete_without_marker(artifacts: dict[str, Artifact], tmp_path: Path) -> None:
    dest = copy(artifacts["lr"], tmp_path)
    (dest / COMPLETE_MARKER).unlink()
    with pytest.raises(ArtifactError) as err:
        load_artifact(str(dest), None)
    assert err.value.reason == "IncompleteArtifact"


def test_missing_model_file(artifacts: dict[str, Artifact], tmp_path: Path) -> None:
    dest = copy(artifacts["lr"], tmp_path)
    (dest / MODEL_FILENAME).unlink()
    with pytest.raises(ArtifactError) as err:
        load_artifact(str(dest), None)
    assert err.value.reason == "MissingArtifact"
    assert MODEL_FILENAME in err.value.message


@pytest.mark.parametrize(
    "mutate",
    [
        lambda m: m.pop("features"),
        lambda m: m.update(task="clustering"),
        lambda m: m.update(modelSha256="xyz"),
        lambda m: m.update(features=[]),
        lambda m: m.update(modelFile="../../etc/passwd"),
    ],
)
def test_invalid_metadata(artifacts: dict[str, Artifact], tmp_path: Path, mutate: object) -> None:
    dest = copy(artifacts["lr"], tmp_path)
    meta = json.loads((dest / METADATA_FILENAME).read_text())
    mutate(meta)  # type: ignore[operator]
    (dest / METADATA_FILENAME).write_text(json.dumps(meta))
    with pytest.raises(ArtifactError) as err:
        load_artifact(str(dest), None)
    assert err.value.reason == "InvalidMetadata"


def test_metadata_not_json(artifacts: dict[str, Artifact], tmp_path: Path) -> None:
    dest = copy(artifacts["lr"], tmp_path)
    (dest / METADATA_FILENAME).write_text("{not json")
    with pytest.raises(ArtifactError) as err:
        load_artifact(str(dest), None)
    assert err.value.reason == "InvalidMetadata"


def test_untrusted_type_is_refused_by_name(tmp_path: Path) -> None:
    X, y = numeric_data(n_features=2)
    pipe = Pipeline([("neg", FunctionTransformer(operator.neg)), ("lr", LogisticRegression())])
    art = write_artifact(tmp_path / "evil" / "1", pipe, X, y, numeric_features(2), "binary")
    with pytest.raises(ArtifactError) as err:
        load_artifact(art.uri, art.digest)
    assert err.value.reason == "UntrustedType"
    assert "_operator.neg" in err.value.message


def test_not_a_skops_file(artifacts: dict[str, Artifact], tmp_path: Path) -> None:
    import hashlib

    dest = copy(artifacts["lr"], tmp_path)
    junk = b"definitely not a zip file"
    (dest / MODEL_FILENAME).write_bytes(junk)
    meta = json.loads((dest / METADATA_FILENAME).read_text())
    meta["modelSha256"] = hashlib.sha256(junk).hexdigest()
    (dest / METADATA_FILENAME).write_text(json.dumps(meta))
    with pytest.raises(ArtifactError) as err:
        load_artifact(str(dest), None)
    assert err.value.reason == "LoadFailed"


@pytest.mark.parametrize(
    "name",
    [
        "numpy.load",
        "numpy.lib.npyio.NpzFile",
        "builtins.eval",
        "os.system",
        "sklearnx.Evil",
        "_operator.neg",
        "numpy.fromregex",
        "scipy.io.loadmat",
    ],
)
def test_functions_and_foreign_types_are_not_on_the_allow_list(name: str) -> None:
    assert untrusted_types([name, "sklearn.tree._tree.Tree", "numpy.ndarray"]) == [name]


def rewrite_features(dest: Path, change: object) -> None:
    meta = json.loads((dest / METADATA_FILENAME).read_text())
    meta["features"] = change(meta["features"])  # type: ignore[operator]
    (dest / METADATA_FILENAME).write_text(json.dumps(meta))


def test_metadata_that_permutes_the_features_of_a_frame_model_is_refused(
    artifacts: dict[str, Artifact], tmp_path: Path
) -> None:
    dest = copy(artifacts["mixed"], tmp_path)
    rewrite_features(dest, lambda fs: [fs[1], fs[0], fs[2]])
    with pytest.raises(ArtifactError) as err:
        load_artifact(str(dest), None)
    assert err.value.reason == "FeatureMismatch"
    assert "['age', 'income', 'city']" in err.value.message
    assert "['income', 'age', 'city']" in err.value.message


def test_metadata_that_renames_a_feature_is_refused(
    artifacts: dict[str, Artifact], tmp_path: Path
) -> None:
    dest = copy(artifacts["mixed"], tmp_path)
    rewrite_features(dest, lambda fs: [{**fs[0], "name": "salary"}, *fs[1:]])
    with pytest.raises(ArtifactError) as err:
        load_artifact(str(dest), None)
    assert err.value.reason == "FeatureMismatch"


@pytest.mark.parametrize("change", [lambda fs: fs[:-1], lambda fs: [*fs, {**fs[0], "name": "x9"}]])
def test_metadata_with_another_feature_count_is_refused(
    artifacts: dict[str, Artifact], tmp_path: Path, change: object
) -> None:
    dest = copy(artifacts["lr"], tmp_path)
    rewrite_features(dest, change)
    with pytest.raises(ArtifactError) as err:
        load_artifact(str(dest), None)
    assert err.value.reason == "FeatureMismatch"
    assert "fitted on 4 features" in err.value.message


@pytest.mark.parametrize(
    "uri",
    [
        "{root}/../1",
        "file://{root}/../../etc",
        "{root}/%2e%2E/1",
    ],
)
def test_uri_with_dot_dot_segments_is_refused(artifacts: dict[str, Artifact], uri: str) -> None:
    with pytest.raises(ArtifactError) as err:
        load_artifact(uri.format(root=artifacts["lr"].uri), None)
    assert err.value.reason == "InvalidUri"
    assert "MF_MODEL_URI" in err.value.message and "'..'" in err.value.message


class _RefusingFS:
    """A file system whose every call is refused, the way s3fs raises a 403."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def isdir(self, path: str) -> bool:
        raise self.exc

    exists = cat_file = isdir


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (
            PermissionError("The request signature we calculated does not match"),
            "StorageAccessDenied",
        ),
        (ConnectionError("connection refused"), "MissingArtifact"),
    ],
)
def test_refused_credentials_are_not_a_missing_artifact(
    monkeypatch: pytest.MonkeyPatch, exc: BaseException, reason: str
) -> None:
    import fsspec

    monkeypatch.setattr(fsspec.core, "url_to_fs", lambda uri: (_RefusingFS(exc), "b/m/1"))
    with pytest.raises(ArtifactError) as err:
        load_artifact("s3://b/m/1", None)
    assert err.value.reason == reason
    if reason == "StorageAccessDenied":
        assert err.value.message.startswith(
            "cannot read s3://b/m/1: the storage refused the credentials (PermissionError)"
        )
