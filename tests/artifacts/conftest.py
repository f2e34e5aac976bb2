"""The serving tests' hand-made artifacts serve the reader's tests too."""

from tests.serving.conftest import artifacts  # noqa: F401
