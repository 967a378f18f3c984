"""What a run's numbers depend on besides its configuration (``RUN/environment.json``, and every benchmark)."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

# The package's version, owned here (the lowest layer) so that modules that record it need not import the package
# root, whose __init__ imports training and inference. pyproject.toml's version; test_run_errors checks they agree.
__version__ = "0.1.0"


def environment_info(device, threads: int | None = None) -> dict:
    """What a run's numbers depend on besides its configuration, for ``RUN/environment.json``: versions, the
    CPU, the device and the threads. ``threads`` is what the run asked for (0 or None: PyTorch's default);
    ``torch_threads`` is what PyTorch used."""
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
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
