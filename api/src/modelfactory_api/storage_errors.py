"""What a storage failure means, whichever fsspec backend raised it (local, s3fs, gcsfs).

Pure functions of the exception (and its causes), so training and serving tell a refused
credential from a missing object the same way, without importing botocore or google-auth:

- "AccessDenied": the store refused the credentials, or none were found (a wrong key, a wrong
  secret, an expired token, no permission on the bucket, no credentials configured).
- "PreconditionFailed": a conditional write lost (the object exists): s3fs says FileExistsError
  only when the server names the If-None-Match condition, as AWS does; MinIO and other
  S3-compatible servers answer a bare 412 PreconditionFailed, which s3fs turns into EINVAL.
- None: anything else (missing objects, network trouble, bugs): the caller decides.

The messages built here never include the error text of a credential library: they name the
URI and the store's error code only, so no secret value can leak into a status or a log.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

StorageFailure = Literal["AccessDenied", "PreconditionFailed"]

# S3 error codes (and the HTTP statuses s3fs uses as codes when the body has none) that mean
# the request's identity was refused.
S3_ACCESS_CODES = frozenset(
    {
        "AccessDenied",
        "AccountProblem",
        "AllAccessDisabled",
        "ExpiredToken",
        "InvalidAccessKeyId",
        "InvalidClientTokenId",
        "InvalidSecurity",
        "InvalidToken",
        "NotSignedUp",
        "SignatureDoesNotMatch",
        "TokenRefreshRequired",
        "UnrecognizedClientException",
        "401",
        "403",
    }
)
# Credential-provider failures by class name: botocore, google-auth, and fsspec's gcsfs.
ACCESS_ERROR_CLASSES = frozenset(
    {
        "NoCredentialsError",
        "PartialCredentialsError",
        "CredentialRetrievalError",
        "NoAuthTokenError",
        "UnauthorizedSSOTokenError",
        "TokenRetrievalError",
        "DefaultCredentialsError",
        "RefreshError",
    }
)

# gcsfs answers a 403 with a plain OSError("Forbidden: <path>\n<message>") (and a 401 with its
# HttpError, code 401).
GCSFS_FORBIDDEN = "Forbidden: "


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception, then its causes and contexts (each once)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _s3_error(exc: BaseException) -> tuple[str, int | None]:
    """(error code, HTTP status) of a botocore ClientError-like exception, else ("", None)."""
    response: Any = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return "", None
    error = response.get("Error") or {}
    meta = response.get("ResponseMetadata") or {}
    status = meta.get("HTTPStatusCode")
    return str(error.get("Code") or ""), status if isinstance(status, int) else None


def _http_status(exc: BaseException) -> int | None:
    """gcsfs' HttpError carries `code`; aiohttp's ClientResponseError `status`."""
    for attr in ("code", "status"):
        value = getattr(exc, attr, None)
        if isinstance(value, int) and 100 <= value < 600:
            return value
    return None


def classify(exc: BaseException) -> StorageFailure | None:
    """What a storage exception means; None when it is neither of the known kinds."""
    for e in _chain(exc):
        name = type(e).__name__
        if name in ACCESS_ERROR_CLASSES:
            return "AccessDenied"
        code, status = _s3_error(e)
        if code or status:
            if code in S3_ACCESS_CODES or status in (401, 403):
                return "AccessDenied"
            if code == "PreconditionFailed" or status == 412:
                return "PreconditionFailed"
            return None
        if isinstance(e, PermissionError):
            return "AccessDenied"
        if type(e) is OSError and str(e).startswith(GCSFS_FORBIDDEN):
            return "AccessDenied"
        if isinstance(e, FileExistsError):
            return "PreconditionFailed"
        if name == "HttpError":
            status = _http_status(e)
            if status in (401, 403):
                return "AccessDenied"
            if status == 412:
                return "PreconditionFailed"
    return None


def error_code(exc: BaseException) -> str:
    """A short, secret-free name for what the store said: its error code, or the class name."""
    for e in _chain(exc):
        code, status = _s3_error(e)
        if code and not code.isdigit():
            return code
        if status or code:
            return f"HTTP {status or code}"
        if type(e).__name__ in ACCESS_ERROR_CLASSES:
            return type(e).__name__
        if type(e).__name__ == "HttpError" and _http_status(e):
            return f"HTTP {_http_status(e)}"
        if type(e) is OSError and str(e).startswith(GCSFS_FORBIDDEN):
            return "HTTP 403"
    return type(exc).__name__


def access_denied_message(uri: str, exc: BaseException, action: str = "read") -> str:
    """The "storage refused the credentials" message, naming the URI and the error code only."""
    if any(isinstance(e, PermissionError) and e.errno is not None for e in _chain(exc)):
        # The operating system's refusal (a volume's file modes), not a store's.
        return f"cannot {action} {uri}: permission denied by the file system"
    code = error_code(exc)
    if code in ("NoCredentialsError", "PartialCredentialsError", "DefaultCredentialsError"):
        what = "no credentials were found for it"
    else:
        what = f"the storage refused the credentials ({code})"
    return (
        f"cannot {action} {uri}: {what}; check the Secret, ServiceAccount or environment that "
        "spec.pod gives the pods"
    )
