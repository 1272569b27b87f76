import pytest
import torch

from harivo import threads


def test_default_threads_are_half_the_cpus_at_least_one():
    assert threads.default_num_threads(cpus=2, env={}) == 1
    assert threads.default_num_threads(cpus=1, env={}) == 1
    assert threads.default_num_threads(cpus=16, env={}) == 8
    assert threads.default_num_threads(cpus=2, env={"HARIVO_THREADS": "3"}) == 3
    assert threads.default_num_threads(cpus=2, env={"HARIVO_THREADS": " "}) == 1
    for bad in ("0", "-1", "two"):
        with pytest.raises(ValueError, match="HARIVO_THREADS"):
            threads.default_num_threads(cpus=2, env={"HARIVO_THREADS": bad})


def test_threads_for_load_leaves_the_busy_cores_to_others():
    assert threads.threads_for_load(None, 2) == 1  # unknown: half, as before
    assert threads.threads_for_load(0.0, 2) == 2
    assert threads.threads_for_load(0.2, 2) == 2  # noise of a quarter core does not take a core
    assert threads.threads_for_load(0.3, 2) == 1
    assert threads.threads_for_load(1.0, 2) == 1
    assert threads.threads_for_load(1.9, 2) == 1  # at least one
    assert threads.threads_for_load(1.0, 8) == 7
    assert threads.threads_for_load(2.6, 8) == 5


class FakeMachine:
    """/proc/stat's busy/total seconds, this process's CPU seconds and a clock, advanced by hand."""

    def __init__(self):
        self.busy, self.total, self.own, self.now = 100.0, 400.0, 10.0, 1000.0

    def advance(self, wall: float, others: float, own: float, cpus: int = 2):
        self.now += wall
        self.own += own
        self.busy += others + own
        self.total += cpus * wall

    def monitor(self, cpus: int = 2) -> threads.LoadMonitor:
        return threads.LoadMonitor(cpus, stat=lambda: (self.busy, self.total), own=lambda: self.own,
                                   clock=lambda: self.now)


def test_load_monitor_subtracts_its_own_process():
    m = FakeMachine()
    monitor = m.monitor()
    m.advance(wall=2.0, others=2.0, own=3.0)  # one core busy with another process; this process used 1.5 cores
    assert monitor.sample() == pytest.approx(1.0)
    assert monitor.threads() == 1
    m.advance(wall=1.0, others=1.0, own=2.0)
    assert monitor.sample() == pytest.approx(1.0)  # the mean of the last two windows
    m.advance(wall=1.0, others=0.0, own=2.0)  # only this process ran
    assert monitor.sample() == pytest.approx(0.5)  # (1 + 0) / 2: the other process stopped a window ago
    m.advance(wall=1.0, others=0.0, own=1.0)
    assert monitor.sample() == pytest.approx(0.0) and monitor.threads() == 2


def test_a_child_process_counts_as_ours_although_its_time_lands_a_window_late():
    """The mp4 encoder (a child) uses 0.4 s of CPU in one window; os.times() counts it only once it is waited for,
    in the next window. Each window alone reads +0.4 and −0.4 cores of others; their mean reads none."""
    m = FakeMachine()
    monitor = m.monitor()
    m.advance(wall=1.0, others=0.4, own=0.5)  # the child's 0.4 s: busy on the machine, not yet in os.times()
    assert monitor.sample() == pytest.approx(0.4)
    m.advance(wall=1.0, others=0.0, own=0.5)
    m.own += 0.4  # waited for: os.times() now holds it (the machine's busy time does not grow again)
    assert monitor.sample() == pytest.approx(0.0) and monitor.threads() == 2


def test_load_monitor_without_proc_stat_falls_back_to_half_the_cores():
    monitor = threads.LoadMonitor(4, stat=lambda: None)
    assert monitor.sample(min_window=0) is None and monitor.threads() == 2


def test_read_proc_stat(tmp_path):
    stat = tmp_path / "stat"
    # user nice system idle iowait irq softirq steal guest guest_nice
    stat.write_text("cpu  100 0 50 800 50 0 0 0 30 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n")
    busy, total = threads.read_proc_stat(str(stat))
    assert (busy, total) == (pytest.approx(150 / threads.CLOCK_TICKS), pytest.approx(1000 / threads.CLOCK_TICKS))
    assert threads.read_proc_stat(str(tmp_path / "missing")) is None


def write_files(root, files: dict[str, str]) -> None:
    """A cgroup tree for the test: {relative path: text}."""
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


@pytest.mark.parametrize("files, limit", [
    ({"cpu.max": "200000 100000\n"}, 2.0),  # cgroup v2
    ({"cpu.max": "150000 100000\n"}, 1.5),
    ({"cpu.max": "max 100000\n"}, None),
    ({"cpu/cpu.cfs_quota_us": "400000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 4.0),  # v1, as Docker mounts it
    ({"cpu,cpuacct/cpu.cfs_quota_us": "200000\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n"}, 2.0),
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),  # v1 without a quota
    ({}, None),
])
def test_cgroup_cpu_limit(tmp_path, files, limit):
    write_files(tmp_path, files)
    assert threads.cgroup_cpu_limit(str(tmp_path)) == limit


@pytest.mark.parametrize("files, seconds", [
    ({"cpu.stat": "usage_usec 2500000\nuser_usec 2000000\n"}, 2.5),  # cgroup v2
    ({"cpuacct/cpuacct.usage": "7000000000\n"}, 7.0),  # v1, nanoseconds
    ({"cpu,cpuacct/cpuacct.usage": "1000000000\n"}, 1.0),
    ({}, None),
])
def test_cgroup_cpu_seconds(tmp_path, files, seconds):
    write_files(tmp_path, files)
    assert threads.cgroup_cpu_seconds(str(tmp_path)) == seconds


def test_thread_choice_fixed_or_by_load():
    assert threads.ThreadChoice(3, env={}).number() == 3 and threads.ThreadChoice(3, env={}).monitor is None
    assert threads.ThreadChoice(None, env={"HARIVO_THREADS": "2"}).number() == 2
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="num_threads"):
            threads.ThreadChoice(bad, env={})
    m = FakeMachine()
    choice = threads.ThreadChoice(None, monitor=m.monitor(), env={})
    m.advance(wall=1.0, others=0.0, own=0.5)
    assert choice.number() == 2
    assert choice.number(runs=2) == 1 and choice.number(runs=3) == 1  # two runs at once share the two cores
    assert threads.ThreadChoice(3, env={}).number(runs=2) == 3  # a fixed number stays
    m.advance(wall=1.0, others=1.0, own=1.0)
    before = torch.get_num_threads()
    try:
        assert choice.apply() == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_a_container_with_a_cpu_quota_reads_its_own_usage(monkeypatch):
    """A Space: 2 vCPUs of quota on a 16-core host. The host's /proc/stat holds other tenants' work, which does not
    take our quota: the load is read from the container's own usage, so an idle Space runs on both its cores."""
    monkeypatch.setattr(threads, "usable_cpus", lambda: 2)
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 16)
    monkeypatch.setattr(threads, "cgroup_cpu_seconds", lambda root="/sys/fs/cgroup": 5.0)
    source = threads.read_load_source()
    assert source is not threads.read_proc_stat and source() == (5.0, 0.0)
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 2)  # the whole machine is ours: /proc/stat
    assert threads.read_load_source() is threads.read_proc_stat
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 16)
    monkeypatch.setattr(threads, "cgroup_cpu_seconds", lambda root="/sys/fs/cgroup": None)
    assert threads.read_load_source()() is None  # neither: unknown, half the cores
