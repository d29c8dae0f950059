"""Writing benchmark results into docs/benchmarks.md: each benchmark owns one marked section."""

from __future__ import annotations

import contextlib
import platform
import re
from pathlib import Path


def cpu_name() -> str:
    """The CPU model, for the "Measured on" line of a section."""
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def update_section(path: str | Path, name: str, title: str, text: str) -> None:
    """Replace (or append) the section between ``<!-- name:begin -->`` and ``<!-- name:end -->``."""
    path = Path(path)
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"{begin}\n{text}\n{end}"
    if begin in old:
        new = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, old, flags=re.S)
    else:
        new = old.rstrip() + f"\n\n## {title}\n\n{block}\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(new)


def publish(lines: list[str], path: str | Path | None, name: str, title: str) -> None:
    """Print a benchmark's report and, when ``path`` is given, write it as section ``name``."""
    text = "\n".join(lines)
    print(text)
    if path:
        update_section(path, name, title, text)
