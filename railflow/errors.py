"""Expected failures: one-line messages that say what is wrong and how to fix it."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class RailflowError(Exception):
    """An expected failure. Its message is shown to the user as a single line, no traceback."""

    retryable: bool = False
    exit_code: int = 1


class SettingsError(RailflowError):
    """A setting (environment variable or CLI argument) has a bad value."""

    exit_code = 2


class WarehouseError(RailflowError):
    """The warehouse cannot be reached or queried."""


class WarehouseMissingError(WarehouseError):
    """The DuckDB file does not exist yet: the pipeline has not been run."""


class WarehouseLockedError(WarehouseError):
    """Another process (usually a running build) holds the DuckDB write lock. Retry later."""

    retryable = True


def cli_entrypoint(main: Callable[..., T]) -> Callable[..., T]:
    """Wrap a CLI `main` so expected failures print `error: ...` on one line and exit non-zero."""

    @functools.wraps(main)
    def wrapper(*args: object, **kwargs: object) -> T:
        try:
            return main(*args, **kwargs)
        except RailflowError as exc:
            hint = " (retryable)" if exc.retryable else ""
            print(f"error: {exc}{hint}", file=sys.stderr)
            raise SystemExit(exc.exit_code) from None
        except KeyboardInterrupt:
            print("error: interrupted", file=sys.stderr)
            raise SystemExit(130) from None

    return wrapper
