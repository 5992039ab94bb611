"""Hold a spill folder's lock (the one every claim takes) until a line arrives on stdin.

argv: FOLDER. Prints ``locked`` once it holds the lock and ``released`` after.
"""

from __future__ import annotations

import sys

from logship.worker.spill import safefiles as safe


def main() -> None:
    folder = sys.argv[1]
    lock = safe.folder_lock(folder)
    lock.acquire(timeout=10)
    print("locked", flush=True)
    sys.stdin.readline()
    lock.release()
    print("released", flush=True)


main()
