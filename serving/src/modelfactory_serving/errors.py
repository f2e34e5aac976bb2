"""Errors the data plane raises; the HTTP layer turns them into status codes."""

from __future__ import annotations


class InferenceError(Exception):
    """A request that cannot be answered; `status` is the HTTP status to report."""

    status = 400

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class BadRequest(InferenceError):
    status = 400


class NotFound(InferenceError):
    status = 404


class PayloadTooLarge(InferenceError):
    status = 413


class UnprocessableInput(InferenceError):
    """Well-formed, but the model refused the values (e.g. an unknown category)."""

    status = 422


class NotReady(InferenceError):
    status = 503

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class Overloaded(InferenceError):
    """Admission control: the server is at its bound; the client should retry later."""

    status = 503

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DeadlineExceeded(InferenceError):
    """The request was not answered within the server's request timeout."""

    status = 504


class ClientGone(InferenceError):
    """The client disconnected before its rows were predicted; nobody reads the answer."""

    status = 499


class PredictFailed(InferenceError):
    """The model (or forming its batch) failed for a reason that is not the request's input."""

    status = 500
