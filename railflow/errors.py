"""Expected failures: one-line messages that say what is wrong and how to fix it."""

from __future__ import annotations

import errno
import functools
import signal
import sys
import threading
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


class Terminated(BaseException):
    """SIGTERM arrived: unwind (stopping children, removing partial files), then exit 143."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated


DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def is_disk_full(exc: BaseException) -> bool:
    """A full disk (or quota), as an OSError or wrapped by a native library (polars, arrow and
    DuckDB put the OS message in their own exception types)."""
    if isinstance(exc, OSError) and exc.errno in DISK_FULL:
        return True
    text = str(exc).lower()
    return "no space left on device" in text or "disk quota exceeded" in text


def cli_entrypoint(main: Callable[..., T]) -> Callable[..., T]:
    """Wrap a CLI `main` so expected failures print `error: ...` on one line and exit non-zero.

    Expected failures are RailflowErrors, and file-system errors on a path (a folder that is
    read-only, a file where a folder should be): those come from the paths users set.
    """

    @functools.wraps(main)
    def wrapper(*args: object, **kwargs: object) -> T:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _raise_terminated)
        try:
            return main(*args, **kwargs)
        except RailflowError as exc:
            hint = " (retryable)" if exc.retryable else ""
            print(f"error: {exc}{hint}", file=sys.stderr)
            raise SystemExit(exc.exit_code) from None
        except OSError as exc:
            if is_disk_full(exc):
                where = f" writing {exc.filename}" if exc.filename else ""
                print(
                    f"error: no space left on the device{where}; free some space or point "
                    "RAILFLOW_DATA_DIR at a larger disk, then run again",
                    file=sys.stderr,
                )
                raise SystemExit(1) from None
            if exc.filename is None:  # not about a path the user gave: a bug, keep the traceback
                raise
            where = exc.filename if exc.filename2 is None else f"{exc.filename} -> {exc.filename2}"
            print(
                f"error: {where}: {exc.strerror or exc}; check the path (and the setting or "
                "argument that points there) and its permissions",
                file=sys.stderr,
            )
            raise SystemExit(1) from None
        except KeyboardInterrupt:
            print("error: interrupted", file=sys.stderr)
            raise SystemExit(130) from None
        except Terminated:
            print("error: terminated", file=sys.stderr)
            raise SystemExit(143) from None

    return wrapper
