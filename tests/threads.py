"""Threads hammering one object at once, for the tests of what is shared between request threads."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable


def run_at_once(work: Callable[[int], None], count: int = 4) -> None:
    """`work(seed)` for seeds 0..count-1 in as many threads at once, switching as often as the interpreter can (every
    microsecond), until all have ended."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=work, args=(seed,)) for seed in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(previous)
