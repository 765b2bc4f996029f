"""What the SDK check scripts share: each check prints `ok NAME` or
`FAIL NAME: reason` (its traceback on stderr), and the last line is
`N passed, M failed`, which crates/test-support's `run_sdk_checks` reads.
"""

import asyncio
import sys
import time
import traceback

results = []


def _record(name, err):
    results.append((name, err))
    if err is None:
        print(f"ok {name}", flush=True)
    else:
        print(f"FAIL {name}: {err!r}", flush=True)
        traceback.print_exception(err)


def run(name, test):
    """Runs one check."""
    try:
        test()
    except Exception as err:  # noqa: BLE001 - any failure is reported
        _record(name, err)
    else:
        _record(name, None)


async def run_async(name, test):
    """Runs one check that is a coroutine function."""
    try:
        await test()
    except Exception as err:  # noqa: BLE001 - any failure is reported
        _record(name, err)
    else:
        _record(name, None)


def until(what, condition, within, pause=0.1):
    """`condition()`'s first truthy value, asked every `pause` s for up to
    `within` s."""
    deadline = time.monotonic() + within
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within} s")
        time.sleep(pause)


async def until_async(what, condition, within, pause=0.2):
    """`until` for a coroutine function."""
    deadline = time.monotonic() + within
    while True:
        value = await condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within} s")
        await asyncio.sleep(pause)


def summary():
    """Prints the last line; the exit status (1 if a check failed)."""
    failed = sum(1 for _, err in results if err is not None)
    print(f"{len(results) - failed} passed, {failed} failed", flush=True)
    return 1 if failed else 0


def finish():
    """Prints the last line and exits with its status."""
    sys.exit(summary())
