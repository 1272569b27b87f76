"""How many torch CPU threads the app and the CLI use.

On a machine shared with other work (a Hugging Face Space's 2-vCPU tier, a laptop, CI) torch's default of one
thread per core oversubscribes: when another process keeps a core busy, OpenMP's threads wait on each other and a
generation that takes 18 s on one thread took 3 min on two (measured beside a multi-threaded torch job). Half the
cores, at least one, keeps a loaded run within a small factor of an idle one, at the price of some speed on an idle
many-core machine. `HARIVO_THREADS` overrides the choice; training scripts have their own `--num-threads`.
"""

from __future__ import annotations

import os

import torch

ENV = "HARIVO_THREADS"


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity where the OS reports one, else the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_num_threads(cpus: int | None = None, env: dict | None = None) -> int:
    """`HARIVO_THREADS` if set (a positive integer), else half the CPUs this process may use, at least 1."""
    env = os.environ if env is None else env
    if env.get(ENV, "").strip():
        text = env[ENV].strip()
        if not text.isdigit() or int(text) < 1:
            raise ValueError(f"{ENV}: expected a positive integer, got {text!r}")
        return int(text)
    return max(1, int(usable_cpus() if cpus is None else cpus) // 2)


def apply(num_threads: int | None = None) -> int:
    """Set torch's intra-op threads (default: `default_num_threads()`); returns the number set."""
    n = default_num_threads() if num_threads is None else int(num_threads)
    if n < 1:
        raise ValueError(f"num_threads: expected an integer >= 1, got {num_threads!r}")
    torch.set_num_threads(n)
    return n
