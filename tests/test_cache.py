"""The decoded-image cache at scale: a build decodes on every core, is never read half-written (a build killed
part-way is rebuilt), checks the disk space first, and keeps the images of readable files in order."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnlab.data import cache as cache_module
from cnnlab.data.cache import open_cache
from cnnlab.data.folders import decode, scan_folder
from cnnlab.errors import DataError

QUIET = {"progress": False, "echo": lambda *a: None}


@pytest.fixture
def photos(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    root = tmp_path / "photos"
    for i in range(20):
        for name in ("cat", "dog"):
            path = root / name / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (30, 36, 3), dtype=np.uint8)).save(path)
    return root


def test_images_of_readable_files_stay_in_order_after_skipping(photos, tmp_path):
    (photos / "cat" / "7.png").write_bytes(b"not a png")  # a gap early in the cache, closed after the build
    listing = scan_folder(photos)
    cache = open_cache(listing, 24, tmp_path / "cache", **QUIET)
    assert len(cache.skipped) == 1 and "7.png" in cache.skipped[0]
    good = [f for f in listing.files if f.name != "7.png" or f.parent.name != "cat"]
    assert cache.files == [str(f.relative_to(photos)) for f in good]
    assert np.array_equal(np.asarray(cache.images), np.stack([decode(f, 24) for f in good]))
    assert list(cache.labels) == [0] * 19 + [1] * 20


def test_a_folder_given_as_dot_caches_under_its_own_name(photos, tmp_path, monkeypatch):
    """The cache folder is named after the image folder: given as '.', it was '-<hash>-24', a name that starts
    with '-' and says nothing of what it holds. A folder that is a link keeps the link's name."""
    monkeypatch.chdir(photos)
    assert open_cache(scan_folder("."), 24, tmp_path / "cache", **QUIET).folder.name.startswith("photos-")
    (tmp_path / "pets").symlink_to(photos)
    assert open_cache(scan_folder(tmp_path / "pets"), 24, tmp_path / "cache", **QUIET).folder.name.startswith("pets-")


def test_the_build_decodes_on_every_worker_at_once(photos, tmp_path, monkeypatch):
    threads, lock = set(), threading.Lock()

    def slow_decode(path, size):
        with lock:
            threads.add(threading.get_ident())
        time.sleep(0.01)
        return decode(path, size)

    monkeypatch.setattr(cache_module, "decode", slow_decode)
    open_cache(scan_folder(photos), 24, tmp_path / "cache", workers=2, **QUIET)
    assert len(threads) == 2


def test_not_enough_disk_space_is_refused_before_writing(photos, tmp_path, monkeypatch):
    free = type("Usage", (), {"free": 50_000})()
    monkeypatch.setattr(cache_module.shutil, "disk_usage", lambda path: free)
    with pytest.raises(DataError) as info:
        open_cache(scan_folder(photos), 24, tmp_path / "cache", **QUIET)
    need = 40 * 24 * 24 * 3
    assert str(info.value) == (
        f"the image cache needs {need / 1e9:.2f} GB in {tmp_path / 'cache'}, which has 0.00 GB free; "
        "choose another folder with --cache-dir DIR"
    )
    assert not [p for p in (tmp_path / "cache").iterdir() if not p.name.endswith(".lock")]


def test_a_build_interrupted_part_way_is_never_read_and_is_rebuilt(photos, tmp_path, monkeypatch):
    calls = []

    def interrupted(path, size):
        calls.append(path)
        if len(calls) == 15:
            raise KeyboardInterrupt
        return decode(path, size)

    monkeypatch.setattr(cache_module, "decode", interrupted)
    with pytest.raises(KeyboardInterrupt):
        open_cache(scan_folder(photos), 24, tmp_path / "cache", workers=1, **QUIET)
    left = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert len(left) == 2 and left[0].endswith(".lock") and left[1].endswith(".partial")  # nothing to read
    monkeypatch.undo()
    cache = open_cache(scan_folder(photos), 24, tmp_path / "cache", **QUIET)
    assert cache.rebuilt and len(cache.files) == 40 and not (tmp_path / "cache" / left[1]).exists()


KILLED_BUILD = """
import sys, time
from cnnlab.data import cache
from cnnlab.data.folders import decode, scan_folder

def slow(path, size):
    time.sleep(0.05)
    return decode(path, size)

cache.decode = slow
print("building", flush=True)
cache.open_cache(scan_folder(sys.argv[1]), 24, sys.argv[2], workers=1, progress=False)
"""


def test_a_build_killed_part_way_is_rebuilt(photos, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    build = subprocess.Popen(
        [sys.executable, "-c", KILLED_BUILD, str(photos), str(tmp_path / "cache")], env=env, stdout=subprocess.PIPE
    )
    assert build.stdout.readline() == b"building\n"
    deadline = time.time() + 60
    while not list((tmp_path / "cache").glob("*.partial/images.u8")) and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # some images decoded, not all (40 x 0.05 s)
    build.send_signal(signal.SIGKILL)
    build.wait()
    partial = next((tmp_path / "cache").glob("*.partial"))
    cache = open_cache(scan_folder(photos), 24, tmp_path / "cache", **QUIET)
    assert cache.rebuilt and not partial.exists() and cache.images.shape == (40, 24, 24, 3)
    listing = scan_folder(photos)
    assert np.array_equal(np.asarray(cache.images[-1]), decode(listing.files[-1], 24))
