"""The machine, without torch: its CPU model and the features that decide which precisions are fast, the memory a
new allocation may take (a cgroup's limit counted), and the versions of installed distributions."""

from __future__ import annotations

import os
import platform
from importlib.metadata import PackageNotFoundError, version


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_features() -> list[str]:
    """The CPU features that decide which precisions are fast (x86 flags from /proc/cpuinfo)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return []
    return [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in flags]


def version_of(dist: str) -> str | None:
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def available_memory() -> int:
    """Bytes of memory available to a new allocation now (MemAvailable, else the machine's physical memory), and no
    more than this process's memory cgroup still allows (a container's limit: cgroup_room)."""
    available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    room = cgroup_room()
    return available if room is None else min(available, room)


def cgroup_room() -> int | None:
    """Bytes this process's memory cgroup (v2 memory.max, or v1 memory.limit_in_bytes) allows beyond the anonymous
    memory its processes hold (the page cache in it can be reclaimed), or None where no limit is set or seen."""
    from pathlib import Path

    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            base, limit_file, anon_key = Path("/sys/fs/cgroup") / path.lstrip("/"), "memory.max", "anon"
        elif "memory" in controllers.split(","):
            base, limit_file = Path("/sys/fs/cgroup/memory") / path.lstrip("/"), "memory.limit_in_bytes"
            anon_key = "total_rss"  # its processes' and those of the groups below it
        else:
            continue
        try:
            text = (base / limit_file).read_text().strip()
            if text == "max" or int(text) >= 1 << 60:  # v1 writes "no limit" as a huge number
                continue
            stat = dict(line.split() for line in (base / "memory.stat").read_text().splitlines())
            return max(0, int(text) - int(stat[anon_key]))
        except (OSError, ValueError, KeyError):
            continue
    return None
