"""Timing, memory and import-time probes, kept apart from what they measure.

Times are medians of interleaved runs (every contender once per round), so a slow moment of
the machine hits all contenders alike and the ratios stay honest. Memory and import time are
measured in fresh interpreters, because a long-lived benchmark process remembers its peak.
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent


@dataclass
class Samples:
    """Per-run times of one contender in ms: wall clock, and CPU of the whole process (all threads)."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)


def run_interleaved(contenders: Mapping[str, Callable[[], object]], *, runs: int, warmups: int) -> dict[str, Samples]:
    """Call every contender once per round; return each one's times, warm-ups dropped."""
    samples = {name: Samples() for name in contenders}
    for round_index in range(warmups + runs):
        for name, contender in contenders.items():
            gc.collect()
            wall_started, cpu_started = time.perf_counter(), time.process_time()
            contender()
            wall_ms = (time.perf_counter() - wall_started) * 1000
            cpu_ms = (time.process_time() - cpu_started) * 1000
            if round_index >= warmups:
                samples[name].wall.append(wall_ms)
                samples[name].cpu.append(cpu_ms)
    return samples


@contextmanager
def _timing_method(owner: type, name: str, spent_ms: list[float]) -> Iterator[None]:
    """Add to `spent_ms` the time spent in outermost calls of `owner.name` (it may call itself)."""
    original = getattr(owner, name)
    depth = 0

    def timed(self: object, *args: object, **kwargs: object) -> object:
        nonlocal depth
        depth += 1
        started = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            depth -= 1
            if depth == 0:
                spent_ms.append((time.perf_counter() - started) * 1000)

    setattr(owner, name, timed)
    try:
        yield
    finally:
        setattr(owner, name, original)


def time_inside(owner: type, name: str, contender: Callable[[], object], *, runs: int) -> list[float]:
    """Per run, the ms a single-threaded `contender` spends inside `owner.name` (e.g. Image.resize).

    Separate runs from the timed ones, so the wrapper's bookkeeping never touches those.
    """
    per_run = []
    for _ in range(runs):
        spent: list[float] = []
        with _timing_method(owner, name, spent):
            contender()
        per_run.append(sum(spent))
    return per_run


def median_ms(samples: Sequence[float]) -> float:
    return statistics.median(samples)


@dataclass(frozen=True)
class CpuSnapshot:
    """Machine-wide busy CPU time and this process's own (with its finished children), in seconds."""

    busy_s: float
    own_s: float
    wall_s: float


def cpu_snapshot() -> CpuSnapshot:
    """Read /proc/stat's busy jiffies (user, nice, system, irq, softirq, steal) and our own CPU time."""
    fields = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    ticks = os.sysconf("SC_CLK_TCK")
    own = os.times()
    return CpuSnapshot(
        busy_s=(user + nice + system + irq + softirq + steal) / ticks,
        own_s=own.user + own.system + own.children_user + own.children_system,
        wall_s=time.monotonic(),
    )


def other_processes_cores(before: CpuSnapshot, after: CpuSnapshot) -> float:
    """Average number of cores other processes kept busy between two snapshots."""
    others_s = (after.busy_s - before.busy_s) - (after.own_s - before.own_s)
    return max(0.0, others_s) / max(after.wall_s - before.wall_s, 1e-9)


def child_environment() -> dict[str, str]:
    """Environment for probe interpreters: the project importable, a Lambda-like region set."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_DIR), env.get("PYTHONPATH")]))
    env.setdefault("AWS_REGION", "us-east-1")
    env.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    return env


def peak_rss_mb(photo: Path, preset: str, implementation: str) -> dict[str, float]:
    """Render one photo once in a fresh interpreter (`bench.rss`) and return its memory peaks."""
    completed = subprocess.run(
        [sys.executable, "-m", "bench.rss", "--implementation", implementation, "--preset", preset, str(photo)],
        cwd=PROJECT_DIR,
        env=child_environment(),
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(completed.stdout)


@dataclass(frozen=True)
class ImportTime:
    """Fresh-process import cost of a module, net of starting a bare interpreter (ms).

    The target is judged on the fastest of the runs, as `timeit` advises: other processes only
    ever add time, and six sessions share this machine; the median is reported beside it.
    """

    module: str
    net_min_ms: float | None
    net_median_ms: float | None
    bare_min_ms: float
    heaviest: list[tuple[str, float]]
    """The costliest imports under the module, cumulative ms, from `-X importtime`."""
    error: str | None


def _interpreter(
    code: str, *extra_flags: str, env: Mapping[str, str]
) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Run `python -c code` in a fresh interpreter; its wall time in ms."""
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, *extra_flags, "-c", code],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    return (time.perf_counter() - started) * 1000, completed


def _heaviest_imports(importtime_log: str, count: int) -> list[tuple[str, float]]:
    """The costliest imports one or two levels below the measured module, from `-X importtime`.

    Lines read "import time: self | cumulative | <indent>name"; the indent is 1 + 2 per level.
    """
    costs: list[tuple[str, float]] = []
    for line in importtime_log.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) != 3 or not parts[1].strip().isdigit():
            continue
        level = (len(parts[2]) - len(parts[2].lstrip()) - 1) // 2
        if level in (1, 2):
            costs.append((parts[2].strip(), int(parts[1]) / 1000))
    return sorted(costs, key=lambda cost: cost[1], reverse=True)[:count]


def import_time(module: str, *, repeats: int) -> ImportTime:
    """`python -c "import <module>"` against `python -c pass`, interleaved, `repeats` times each.

    Every module's bytecode is compiled first, into a cache of the probe's own (PYTHONPYCACHEPREFIX), as Lambda
    runs a deployment with `layerBytecode` (the layer's and the handler's modules): so the figure is that, not
    whether this machine keeps bytecode (PYTHONDONTWRITEBYTECODE) or has stale caches.
    """
    bare_ms: list[float] = []
    import_ms: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-pycache-") as cache:
        env = {**child_environment(), "PYTHONPYCACHEPREFIX": cache}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        _interpreter(f"import {module}", env=env)  # compiles every module it imports, once
        for _ in range(repeats):
            bare_ms.append(_interpreter("pass", env=env)[0])
            elapsed_ms, completed = _interpreter(f"import {module}", env=env)
            if completed.returncode != 0:
                last_line = (completed.stderr.strip().splitlines() or ["no output"])[-1]
                return ImportTime(module, None, None, min(bare_ms), [], last_line)
            import_ms.append(elapsed_ms)
        _, profiled = _interpreter(f"import {module}", "-X", "importtime", env=env)
    return ImportTime(
        module,
        net_min_ms=min(import_ms) - min(bare_ms),
        net_median_ms=median_ms(import_ms) - median_ms(bare_ms),
        bare_min_ms=min(bare_ms),
        heaviest=_heaviest_imports(profiled.stderr, 6),
        error=None,
    )
