"""What every entry point shares: signal handling, one way of printing errors, and
the ``key=value`` arguments of the pipeline stages.

Signals. The first Ctrl-C (SIGINT) or SIGTERM raises KeyboardInterrupt or
``Terminated`` in the main thread, so that the code in progress unwinds and records
what it has (a run ends as KILLED with every buffered point written). From then on
the process is shutting down: a second signal only prints a note, a third raises
again, so a user who insists can stop at once. The exit code is 128 + the number of
the first signal: 130 for Ctrl-C, 143 for SIGTERM.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import gc
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from .errors import ConfigError, Terminated, UserError


@dataclass
class _SignalState:
    first: int | None = None  # the first signal received
    extra: int = 0  # signals received while already stopping
    guarded: bool = False  # inside ``shutting_down()``
    forward: Callable[[int], None] | None = None  # e.g. to a sweep's workers


_state = _SignalState()


def _exception(signum: int) -> BaseException:
    if signum == signal.SIGINT:
        return KeyboardInterrupt()
    return Terminated(f"signal {signum}")


def _handler(signum: int, frame) -> None:
    if _state.forward is not None:
        _state.forward(signum)
    if _state.first is None and not _state.guarded:
        _state.first = signum
        raise _exception(signum)
    if _state.first is None:
        _state.first = signum
    _state.extra += 1
    if _state.extra == 1:
        print(
            "stopping: still saving what was done; signal again to stop at once",
            file=sys.stderr,
            flush=True,
        )
        return
    raise _exception(signum)


def install_signal_handlers(forward: Callable[[int], None] | None = None) -> None:
    """Route SIGINT and SIGTERM through ``_handler`` (main thread only)."""
    _state.forward = forward
    signal.signal(signal.SIGINT, _handler)
    signal.signal(signal.SIGTERM, _handler)
    sys.unraisablehook = _unraisable


SHELLS = {"sh", "dash", "bash", "zsh", "fish", "ksh", "mksh"}


def handlers_installed() -> bool:
    """Whether SIGTERM goes through ``_handler`` in this process."""
    return signal.getsignal(signal.SIGTERM) is _handler


def end_with_parent(every: float = 0.5) -> None:
    """Send this process SIGTERM once the program that started it is gone: a
    stage whose ``dvc repro`` was killed, even with SIGKILL, ends its runs as
    KILLED within a second instead of training on as an orphan beside a second
    ``dvc repro``. The program watched is the nearest ancestor that is not a
    shell: DVC runs a stage through ``$SHELL -c``, and a shell such as dash
    waits for its command instead of replacing itself with it, so it outlives
    a killed ``dvc``."""
    import psutil

    watched = psutil.Process().parent()
    with contextlib.suppress(psutil.Error):
        while watched is not None and watched.name() in SHELLS:
            above = watched.parent()
            if above is None or above.pid == 1:
                break  # a shell already orphaned: watch the shell
            watched = above
    if watched is None:
        return

    def gone() -> bool:
        try:
            return watched.status() == psutil.STATUS_ZOMBIE or not watched.is_running()
        except psutil.NoSuchProcess:
            return True

    def watch() -> None:
        while not gone():
            time.sleep(every)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="end-with-parent", daemon=True).start()


def _unraisable(unraisable) -> None:
    """A signal whose exception was raised inside a finalizer (a weakref callback,
    ``__del__``) is swallowed by Python: keep quiet; ``check_stop`` raises it again."""
    if issubclass(unraisable.exc_type, KeyboardInterrupt | Terminated):
        return
    sys.__unraisablehook__(unraisable)


def stop_requested() -> bool:
    return _state.first is not None


def check_stop() -> None:
    """Raise the first signal's exception again if it was swallowed on the way."""
    if _state.first is not None and not _state.guarded:
        raise _exception(_state.first)


@contextmanager
def shutting_down():
    """A block that one more signal must not break: it warns, the next one raises.

    A signal that arrived during the block, not raised yet, is raised at its end,
    so that the program still stops.
    """
    if _state.guarded:
        yield
        return
    before = _state.first
    _state.guarded = True
    try:
        yield
    finally:
        _state.guarded = False
    if before is None and _state.first is not None:
        raise _exception(_state.first)


def exit_code(exc: BaseException) -> int:
    """130 for Ctrl-C, 143 for SIGTERM, as a shell reports them."""
    if isinstance(exc, KeyboardInterrupt):
        return 128 + signal.SIGINT
    return 128 + signal.SIGTERM


def print_error(err: UserError) -> None:
    """How every entry point shows a UserError: ``error: <cause and fix>``."""
    print(f"error: {err}", file=sys.stderr, flush=True)


@functools.cache  # once per process
def skip_final_collection() -> None:
    """At exit, after the exit handlers registered later (MLflow's), leave the
    remaining objects to the operating system: the interpreter's final garbage
    collection takes 0.7 s once MLflow, SQLAlchemy and pandas are loaded. Outputs
    are written and closed before then; exit handlers and buffered streams still
    run and flush as usual."""
    atexit.register(gc.freeze)


def main_guard(
    main: Callable[[], object], cleanup: Callable[[], object] | None = None
) -> None:
    """Run an entry point: UserError -> one line and exit 1; signals -> 130 / 143.

    ``cleanup`` runs last in every case, sheltered from one more signal.
    """
    if not handlers_installed():
        install_signal_handlers()
    skip_final_collection()
    try:
        try:
            main()
            check_stop()  # a signal swallowed on the way still ends the program
        finally:
            if cleanup is not None:
                with shutting_down():
                    cleanup()
    except UserError as err:
        print_error(err)
        sys.exit(1)
    except (KeyboardInterrupt, Terminated) as err:
        name = "Ctrl-C" if isinstance(err, KeyboardInterrupt) else "SIGTERM"
        print(f"stopped by {name}", file=sys.stderr)
        # Everything is saved by now. Skip the interpreter's teardown, which
        # restores the default handlers: a signal arriving then would kill the
        # process with the wrong exit status.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(exit_code(err))


def stage_arguments(argv: Sequence[str], doc: str | None) -> list[str]:
    """The ``key=value`` overrides of a stage; ``--help`` prints ``doc`` and exits."""
    if any(arg in ("-h", "--help") for arg in argv):
        print((doc or "").strip())
        print(
            "\nArguments: key=value overrides of params.yaml, e.g. "
            "data.train_size=10000 (the keys are those of params.yaml)."
        )
        sys.exit(0)
    for arg in argv:
        key, sep, _ = arg.partition("=")
        if not sep or not key or key.startswith("-"):
            raise ConfigError(
                f"argument {arg!r} is not key=value; pass overrides of params.yaml "
                "such as data.train_size=10000 (--help lists the usage)"
            )
    return list(argv)


def run_stage(main: Callable[[list[str]], object], doc: str | None) -> None:
    """``python -m mnist_regression.stages.X [key=value ...]``."""
    main_guard(lambda: main(stage_arguments(sys.argv[1:], doc)))
