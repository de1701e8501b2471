"""One rule for how a verb ends when it is asked to: every termination signal becomes Ctrl-C.

Why: Python's default SIGTERM and SIGHUP end the process without running `finally` blocks or
context managers, so a killed `make package` left its partial file and a killed verify-load left
its throwaway dockerd running with its data root. Raising KeyboardInterrupt instead lets the one
cleanup path (finally / __exit__) run however the verb is stopped. SIGINT is restored too: a shell
that starts a job in the background starts it with SIGINT ignored.
"""
from __future__ import annotations

import signal

TERMINATING = (signal.SIGTERM, signal.SIGHUP)


def _interrupt(signum, frame):
    raise KeyboardInterrupt(signal.Signals(signum).name)


def interrupt_on_termination() -> None:
    """Make SIGINT, SIGTERM and SIGHUP raise KeyboardInterrupt in the main thread."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in TERMINATING:
        signal.signal(sig, _interrupt)
