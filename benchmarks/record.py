"""Write one section of benchmarks/RESULTS.md, replacing that section's previous figures only; name the CPU."""

import platform
import re
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def record(heading: str, section: str) -> None:
    """``section`` starts with ``## heading``; the other sections of RESULTS.md are kept as they are."""
    section = section.rstrip("\n") + "\n\n"
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n\n"
    found = re.search(rf"^## {re.escape(heading)}$", text, re.MULTILINE)  # the whole heading: "Serving" is not
    start = found.start() if found else -1  # "Serving: engine threads under load"
    if start >= 0:
        end = text.find("\n## ", start + 1)
        text = text[:start] + section + (text[end + 1 :] if end >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    RESULTS.write_text(text.rstrip("\n") + "\n")


def cpu_name() -> str:
    """The CPU's model name, as every figure in RESULTS.md records it."""
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"
