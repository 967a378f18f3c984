"""What a run's numbers depend on besides its configuration (``RUN/environment.json``, and every benchmark)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import threading
import time
from pathlib import Path

# The package's version, owned here (the lowest layer) so that modules that record it need not import the package
# root, whose __init__ imports training and inference. pyproject.toml's version; test_run_errors checks they agree.
__version__ = "0.1.0"


def environment_info(device, threads: int | None = None) -> dict:
    """What ``RUN/environment.json`` holds: versions, the CPU, the device and the threads. ``threads`` is what the
    run asked for (0 or None: PyTorch's default); ``torch_threads`` is what PyTorch used."""
    import numpy as np
    import torch

    device = torch.device(device)
    accelerator = None
    if device.type == "cuda" and torch.cuda.is_available():
        accelerator = torch.cuda.get_device_name(device)
    elif device.type == "mps":
        accelerator = "Apple MPS"
    return {
        "cnnlab": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "threads": threads or 0,
        "torch_threads": torch.get_num_threads(),
        "processes": int(os.environ.get("WORLD_SIZE", 1)),
        "device": str(device),
        "accelerator": accelerator,
        "cuda": torch.version.cuda,
        "recorded": time.strftime("%Y-%m-%d %H:%M:%S %z"),
    }


def cpu_name() -> str:
    """The processor's model name (Linux), else what the platform says: recorded with every run and benchmark."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


# glibc's mallopt parameters (malloc.h) and their defaults.
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_DEFAULT_TRIM_THRESHOLD, _DEFAULT_MMAP_MAX = 128 * 1024, 65536
_USER_TUNED = ("GLIBC_TUNABLES", "MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")
_reusing = {"depth": 0}  # nested or concurrent fits: the first in sets, the last out restores
_reusing_lock = threading.Lock()


@contextlib.contextmanager
def reuse_freed_memory():
    """Inside: glibc's malloc keeps freed memory for the next allocation instead of handing it back to the kernel.

    A training step allocates and frees the same few hundred MB of activations and gradients (AlexNet-BN at
    batch 64). glibc serves blocks over its mmap threshold with fresh mmaps and returns them on free, so every
    step faults and zeroes those pages again; on a 2-core AMD EPYC that cost 18-23% of the step
    (benchmarks/alexnet_throughput.py measures with and without, each in a fresh process). tcmalloc and jemalloc,
    which Intel's CPU tuning guides LD_PRELOAD, keep freed memory by default; mallopt does it without a dependency.
    On leaving, glibc's default limits come back and malloc_trim hands the kept memory back; its mmap threshold
    then stays where it was (mallopt turns glibc's dynamic threshold off). Untouched: a process whose malloc the
    user tuned (GLIBC_TUNABLES, MALLOC_*_), and anything but glibc (macOS, Windows, musl).
    """
    libc = None if any(name in os.environ for name in _USER_TUNED) else _glibc()
    if libc is None:
        yield
        return
    with _reusing_lock:
        _reusing["depth"] += 1
        if _reusing["depth"] == 1:
            libc.mallopt(_M_MMAP_MAX, 0)  # big blocks from the heap too, where freed memory stays for reuse
            libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)  # and keep the heap's free top instead of trimming it
    try:
        yield
    finally:
        with _reusing_lock:
            _reusing["depth"] -= 1
            if _reusing["depth"] == 0:
                libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
                libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD)
                libc.malloc_trim(0)


def _glibc():
    with contextlib.suppress(OSError):
        if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
            return ctypes.CDLL("libc.so.6")
    return None
