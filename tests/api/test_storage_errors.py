"""Storage exceptions in, what they mean out: refused credentials, lost conditional writes,
anything else; and messages that never carry a secret."""

from __future__ import annotations

import errno

import pytest
from botocore.exceptions import ClientError, NoCredentialsError, PartialCredentialsError
from gcsfs.retry import HttpError as GcsHttpError
from gcsfs.retry import validate_response
from s3fs.errors import translate_boto_error

from modelfactory_api.storage_errors import access_denied_message, classify, error_code

pytestmark = pytest.mark.unit


def client_error(code: str, status: int, condition: str | None = None) -> ClientError:
    error = {"Code": code, "Message": f"{code} said the server"}
    if condition:
        error["Condition"] = condition
    return ClientError(
        {"Error": error, "ResponseMetadata": {"HTTPStatusCode": status}},  # type: ignore[typeddict-item]
        "PutObject",
    )


def as_s3fs(code: str, status: int, condition: str | None = None) -> BaseException:
    """What s3fs raises for that answer: its own translation, the ClientError as the cause."""
    return translate_boto_error(client_error(code, status, condition))


def gcs_http_error(code: int) -> GcsHttpError:
    return GcsHttpError({"code": code, "message": "said the server"})


def gcsfs_answer(status: int, body: bytes) -> BaseException:
    """What gcsfs raises for a JSON API answer."""
    try:
        validate_response(status, body, "b/models/1")
    except BaseException as exc:
        return exc
    raise AssertionError("no exception")


class DefaultCredentialsError(Exception):
    """google.auth.exceptions.DefaultCredentialsError, by name."""


@pytest.mark.parametrize(
    "exc",
    [
        as_s3fs("InvalidAccessKeyId", 403),
        as_s3fs("SignatureDoesNotMatch", 403),
        as_s3fs("AccessDenied", 403),
        as_s3fs("ExpiredToken", 400),
        as_s3fs("403", 403),  # a HEAD answer has no body: s3fs uses the status as the code
        client_error("InvalidAccessKeyId", 403),
        NoCredentialsError(),
        PartialCredentialsError(provider="env", cred_var="AWS_SECRET_ACCESS_KEY"),
        PermissionError("Forbidden"),
        gcs_http_error(401),
        gcs_http_error(403),
        gcsfs_answer(403, b'{"error": {"code": 403, "message": "x does not have access"}}'),
        gcsfs_answer(401, b'{"error": {"code": 401, "message": "Invalid Credentials"}}'),
        DefaultCredentialsError("Your default credentials were not found"),
    ],
    ids=lambda e: f"{type(e).__name__}-{error_code(e)}",
)
def test_refused_credentials_are_access_denied(exc: BaseException) -> None:
    assert classify(exc) == "AccessDenied"


@pytest.mark.parametrize(
    "exc",
    [
        # AWS names the condition: s3fs raises FileExistsError.
        as_s3fs("PreconditionFailed", 412, "If-None-Match"),
        # MinIO does not: s3fs raises OSError(EINVAL) with the ClientError as its cause.
        as_s3fs("PreconditionFailed", 412),
        FileExistsError("x"),
        gcs_http_error(412),
        gcsfs_answer(412, b""),
    ],
)
def test_lost_conditional_writes_are_precondition_failed(exc: BaseException) -> None:
    assert classify(exc) == "PreconditionFailed"


def test_minio_precondition_is_einval_from_s3fs() -> None:
    exc = as_s3fs("PreconditionFailed", 412)
    assert isinstance(exc, OSError) and not isinstance(exc, FileExistsError)
    assert exc.errno == errno.EINVAL


@pytest.mark.parametrize(
    "exc",
    [
        as_s3fs("NoSuchKey", 404),
        as_s3fs("NoSuchBucket", 404),
        as_s3fs("SlowDown", 503),
        FileNotFoundError("gone"),
        ConnectionError("refused"),
        TimeoutError(),
        gcs_http_error(500),
        gcsfs_answer(404, b""),
        OSError("Forbidden words in a file name"),
        ValueError("bug"),
    ],
)
def test_other_failures_are_not_classified(exc: BaseException) -> None:
    assert classify(exc) is None


def test_the_cause_chain_is_followed() -> None:
    try:
        try:
            raise NoCredentialsError()
        except NoCredentialsError as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        assert classify(outer) == "AccessDenied"


def test_message_names_the_uri_and_code_never_the_secret() -> None:
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    exc = client_error("SignatureDoesNotMatch", 403)
    exc.response["Error"]["Message"] = f"signature for {secret} did not match"
    msg = access_denied_message("s3://bucket/models/1", translate_boto_error(exc))
    assert "s3://bucket/models/1" in msg
    assert "refused the credentials (SignatureDoesNotMatch)" in msg
    assert secret not in msg


def test_message_for_missing_credentials() -> None:
    msg = access_denied_message("gs://b/m", NoCredentialsError(), "write")
    assert msg.startswith("cannot write gs://b/m: no credentials were found")


def test_a_file_systems_refusal_is_not_called_a_credential() -> None:
    exc = PermissionError(errno.EACCES, "Permission denied", "/models/1/model.skops")
    assert classify(exc) == "AccessDenied"
    msg = access_denied_message("pvc://models/1", exc)
    assert msg == "cannot read pvc://models/1: permission denied by the file system"
