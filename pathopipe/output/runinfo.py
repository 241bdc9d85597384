"""``OUT/run.json``: resolved config, its hash, versions and host facts."""

from __future__ import annotations

import json
import os
import platform
import socket
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import pathopipe
from pathopipe import fileio
from pathopipe.output.layout import RunLayout

_PACKAGES = (
    "numpy", "zarr", "numcodecs", "dask", "distributed", "openslide-python", "openslide-bin",
    "tiffslide", "tifffile", "imagecodecs", "opencv-python-headless", "pydantic",
)  # fmt: skip


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_models() -> list[dict[str, str]]:
    """The GPUs ``nvidia-smi`` lists on this host (name, memory), or none."""
    import shutil
    import subprocess

    if not shutil.which("nvidia-smi"):
        return []
    try:
        listed = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20, check=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return []
    return [
        {"name": name.strip(), "memory": memory.strip()}
        for name, _, memory in (line.partition(",") for line in listed.splitlines() if line.strip())
    ]


def host_facts() -> dict[str, Any]:
    """This host's hardware: CPU model and count, memory, GPUs (run on each worker)."""
    return {
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_bytes": _memory_bytes(),
        "gpus": gpu_models(),
    }


def environment_info() -> dict[str, Any]:
    return {
        "pathopipe": pathopipe.__version__,
        "python": sys.version.split()[0],
        "packages": {name: _version(name) for name in _PACKAGES},
        "host": {
            "hostname": socket.gethostname(),
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "cpu_model": _cpu_model(),
            "memory_bytes": _memory_bytes(),
        },
    }


def write_run_json(out: str | Path, data: dict[str, Any], options: fileio.Options = None) -> str:
    """Write ``OUT/run.json`` (or ``out`` itself when it names a .json file) atomically."""
    text = os.fspath(out)
    path = text if text.endswith(".json") else RunLayout(text).run_json
    fileio.write_bytes(path, json.dumps(data, indent=2, default=str).encode(), options)
    return path
