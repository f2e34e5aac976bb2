"""Failures of a training run, each with the CamelCase reason the operator shows."""

from __future__ import annotations

from modelfactory_api.run import ExitCode

EXIT_OK = ExitCode.OK
EXIT_TRANSIENT = ExitCode.TRANSIENT
EXIT_PERMANENT = ExitCode.PERMANENT


class TrainingError(Exception):
    """A failure with a reason; `permanent` ones come from the input and are never retried."""

    permanent = False

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

    @property
    def exit_code(self) -> int:
        return EXIT_PERMANENT if self.permanent else EXIT_TRANSIENT


class SpecError(TrainingError):
    """The spec, the data or the search cannot work as given: retrying would fail the same way."""

    permanent = True


class TransientError(TrainingError):
    """Storage, network or cluster trouble: a retry may succeed."""

    permanent = False


class StorageAccessError(TrainingError):
    """The store refused the credentials, or none were found: a retry with the same Secret,
    ServiceAccount and environment gets the same answer, so the run fails at once."""

    permanent = True

    def __init__(self, message: str) -> None:
        super().__init__("StorageAccessDenied", message)
