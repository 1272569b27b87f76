"""How many torch CPU threads the app and the CLI use.

On a machine shared with other work (a Hugging Face Space's 2-vCPU tier, a laptop, CI) torch's default of one
thread per core oversubscribes: when another process keeps a core busy, OpenMP's threads wait on each other and a
generation that takes 18 s on one thread took 3 min on two (measured beside a multi-threaded torch job). On an idle
machine, though, every core helps (2 threads: 1.4× faster than 1 on the 2-core machine). So the choice follows the
load: `LoadMonitor` reads how many cores *other* processes keep busy (Linux's /proc/stat, or in a container with a
CPU quota the container's own usage, minus this process's own CPU time), and each run gets the cores left, at least
one (`threads_for_load`). Where neither can be read, half the cores, at least one. `HARIVO_THREADS` or `--threads` fix
the number; training scripts have their own `--num-threads`.

torch's thread count belongs to the thread that sets it (OpenMP's setting is per thread), so each run sets its own,
in the thread that samples, and runs going on at once in one process share the free cores (`ThreadChoice.number`).
"""

from __future__ import annotations

import math
import os
import threading
import time
from typing import Callable

import torch

ENV = "HARIVO_THREADS"


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity where the OS reports one (else the machine's count), capped by
    a container's CPU quota (cgroup v2 `cpu.max`, v1 `cpu.cfs_quota_us`), e.g. a Space's 2 vCPUs on a large host."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = cgroup_cpu_limit()
    return max(1, min(cpus, math.ceil(quota))) if quota else cpus


CGROUP_V1_FOLDERS = ("cpu", "cpu,cpuacct", "cpuacct", "")  # where cgroup v1 mounts the cpu controllers


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii") as f:
            return f.read()
    except OSError:
        return None


def cgroup_cpu_limit(root: str = "/sys/fs/cgroup") -> float | None:
    """CPUs' worth of time a container may use (quota ÷ period), None where there is no quota: cgroup v2's
    `cpu.max`, else v1's `cpu.cfs_quota_us` / `cpu.cfs_period_us` (under `cpu/`, `cpu,cpuacct/` or the root)."""
    pairs = [(_read(os.path.join(root, "cpu.max")) or "").split()]
    for folder in CGROUP_V1_FOLDERS:
        quota = _read(os.path.join(root, folder, "cpu.cfs_quota_us"))
        period = _read(os.path.join(root, folder, "cpu.cfs_period_us"))
        if quota is not None and period is not None:
            pairs.append([quota.strip(), period.strip()])
    for parts in pairs:
        if len(parts) < 2:
            continue
        quota, period = parts[0], parts[1]
        if quota in ("max", "-1") or not quota.isdigit() or not period.isdigit() or int(period) <= 0:
            return None
        return int(quota) / int(period)
    return None


def cgroup_cpu_seconds(root: str = "/sys/fs/cgroup") -> float | None:
    """CPU seconds the container has used (cgroup v2 `cpu.stat` usage_usec, v1 `cpuacct.usage`), None if unreadable."""
    for line in (_read(os.path.join(root, "cpu.stat")) or "").splitlines():
        name, _, value = line.partition(" ")
        if name == "usage_usec" and value.strip().isdigit():
            return int(value) / 1e6
    for folder in CGROUP_V1_FOLDERS:
        text = (_read(os.path.join(root, folder, "cpuacct.usage")) or "").strip()
        if text.isdigit():
            return int(text) / 1e9
    return None


def read_load_source() -> Callable[[], tuple[float, float] | None]:
    """What `LoadMonitor` reads the busy CPU time from: the whole machine (/proc/stat) when this process may use all of
    it, else (a container's CPU quota or an affinity slice) the container's own usage, which other tenants of the host
    do not touch; a reader that returns None where neither is there."""
    if usable_cpus() == (os.cpu_count() or 0):
        return read_proc_stat
    if cgroup_cpu_seconds() is not None:
        return read_cgroup_busy
    return lambda: None


def read_cgroup_busy() -> tuple[float, float] | None:
    """The container's CPU seconds as `LoadMonitor` reads a busy time (no total: the monitor needs none)."""
    used = cgroup_cpu_seconds()
    return None if used is None else (used, 0.0)


def default_num_threads(cpus: int | None = None, env: dict | None = None) -> int:
    """`HARIVO_THREADS` if set (a positive integer), else half the CPUs this process may use, at least 1."""
    env = os.environ if env is None else env
    if env.get(ENV, "").strip():
        text = env[ENV].strip()
        if not text.isdigit() or int(text) < 1:
            raise ValueError(f"{ENV}: expected a positive integer, got {text!r}")
        return int(text)
    return max(1, int(usable_cpus() if cpus is None else cpus) // 2)


# ------------------------------------------------------------------------------------------------ load
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def read_proc_stat(path: str = "/proc/stat") -> tuple[float, float] | None:
    """(busy, total) CPU seconds of the whole machine since boot (the "cpu" line; idle and iowait are not busy),
    or None where the file is not there."""
    fields = (_read(path) or "").split("\n", 1)[0].split()
    if not fields or fields[0] != "cpu":
        return None
    ticks = [int(x) for x in fields[1:]]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
    total = sum(ticks[:8])  # guest time is already counted in user time
    return (total - idle) / CLOCK_TICKS, total / CLOCK_TICKS


def own_cpu_seconds() -> float:
    """This process's CPU time: all its threads, and the children it waited for (e.g. the mp4 encoder)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def threads_for_load(others_busy: float | None, cpus: int) -> int:
    """The cores other processes leave free, at least 1: a core counts as taken from a quarter busy (OpenMP's
    threads wait on a core that is busy part of the time); `others_busy` None (unknown) → half the cores."""
    if others_busy is None:
        return max(1, cpus // 2)
    return max(1, min(cpus, cpus - math.ceil(max(0.0, others_busy) - 0.25)))


class LoadMonitor:
    """How many cores other processes kept busy lately: the machine's (or container's, `read_load_source`) busy CPU
    time minus this process's own, over the wall time between readings, averaged over the last two windows.
    `sample()` reads (None where nothing can be read);
    `start(interval)` keeps `others_busy` fresh from a daemon thread; `threads()` is `threads_for_load` of it."""

    def __init__(self, cpus: int | None = None, stat: Callable[[], tuple[float, float] | None] | None = None,
                 own: Callable[[], float] = own_cpu_seconds, clock: Callable[[], float] = time.monotonic):
        self.cpus = cpus or usable_cpus()
        self._stat, self._own, self._clock = stat or read_load_source(), own, clock
        self._windows: list[float] = []  # the last two windows' raw values (children's CPU lands a window late)
        self._lock = threading.Lock()
        self._last = self._reading()
        self.others_busy: float | None = None
        self._thread: threading.Thread | None = None

    def _reading(self):
        stat = self._stat()
        return None if stat is None else (stat, self._own(), self._clock())

    def sample(self, min_window: float = 0.1) -> float | None:
        """Cores busy with other processes since the previous reading (waits until `min_window` seconds have
        passed since it, so that the clock ticks can tell); None where nothing can be read."""
        with self._lock:
            if self._last is not None:
                time.sleep(max(0.0, min_window - (self._clock() - self._last[2])))
            now = self._reading()
            last, self._last = self._last, now
            if now is None or last is None:
                return self.others_busy
            ((busy1, _), own1, t1), ((busy0, _), own0, t0) = now, last
            if t1 > t0:
                # a child process (the mp4 encoder) counts as this process's own only once waited for: its CPU time
                # shows as others' in one window and comes off in the next, so two windows are averaged, unclamped
                self._windows = [*self._windows[-1:], ((busy1 - busy0) - (own1 - own0)) / (t1 - t0)]
                self.others_busy = max(0.0, sum(self._windows) / len(self._windows))
            return self.others_busy

    def start(self, interval: float = 1.0) -> "LoadMonitor":
        """Sample every `interval` seconds from a daemon thread (once; later calls do nothing)."""
        if self._thread is None:
            def loop():
                while True:
                    time.sleep(interval)
                    self.sample()
            self._thread = threading.Thread(target=loop, name="harivo-load-monitor", daemon=True)
            self._thread.start()
        return self

    @property
    def running(self) -> bool:
        """Whether `start` keeps `others_busy` fresh."""
        return self._thread is not None

    def threads(self) -> int:
        return threads_for_load(self.others_busy, self.cpus)


class ThreadChoice:
    """What the app and the CLI call before each run: a fixed number (`--threads` or `HARIVO_THREADS`), else the cores
    the load leaves (`LoadMonitor`). `apply()` sets torch's threads and returns the number."""

    def __init__(self, fixed: int | None = None, monitor: LoadMonitor | None = None, env: dict | None = None):
        env = os.environ if env is None else env
        if fixed is not None and (isinstance(fixed, bool) or int(fixed) != fixed or fixed < 1):
            raise ValueError(f"num_threads: expected an integer >= 1, got {fixed!r}")
        self.fixed = int(fixed) if fixed is not None else (default_num_threads(env=env) if env.get(ENV, "").strip() else None)
        self.monitor = None if self.fixed is not None else (monitor or LoadMonitor())

    def number(self, runs: int = 1, fresh: bool = True) -> int:
        """The threads for one of `runs` runs going on at once in this process (they share the free cores; each
        gets at least one). `fresh`: read the load now unless a started monitor keeps it fresh; else the last reading.
        A fixed number stays as given."""
        if self.fixed is not None:
            return self.fixed
        if fresh and (self.monitor.others_busy is None or not self.monitor.running):
            self.monitor.sample()  # the window since the last reading (the CLI: since it started, over the loading)
        return max(1, self.monitor.threads() // max(1, runs))

    def apply(self, runs: int = 1, fresh: bool = True) -> int:
        """Set the calling thread's torch threads (OpenMP's count is per thread: call it where the run computes)."""
        n = self.number(runs, fresh)
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)
        return n
