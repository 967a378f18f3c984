"""Write tests/fixtures/keras_folders.json: which files Keras' ``flow_from_directory`` takes from a folder of class
subfolders, the oracle of cnnlab's listing of the same folder (tests/test_folders.py builds the folder again from
the fixture and reads it without Keras).

The folder: images at the top of a class folder and below it (Keras walks a class folder at any depth), an
upper-case suffix, a hidden file, a text file, an empty class folder and a file beside the class folders. Run with
the environment of scripts/make_keras_fixtures.py:

    KERAS_BACKEND=tensorflow /tmp/kerasenv/bin/python scripts/make_keras_folder_fixtures.py
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "keras_folders.json"
FILES = [  # relative path -> what is written there
    ("cat/1.jpg", "image"),
    ("cat/2.PNG", "image"),
    ("cat/2019/3.jpg", "image"),
    ("cat/2019/summer/4.jpg", "image"),
    ("cat/notes.txt", "text"),
    ("dog/5.jpeg", "image"),
    ("dog/more/6.png", "image"),
    ("dog/.hidden.jpg", "image"),
    ("empty/", "folder"),
    ("README.txt", "text"),
]


def write_tree(root: Path) -> None:
    from PIL import Image

    for where, kind in FILES:
        path = root / where
        if kind == "folder":
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if kind == "image":
            Image.new("RGB", (8, 8), (200, 30, 30)).save(path, format="PNG" if path.suffix.lower() == ".png" else "JPEG")
        else:
            path.write_text("not an image")


def main() -> None:
    from keras.src.legacy.preprocessing.image import ImageDataGenerator

    with tempfile.TemporaryDirectory() as tmp:
        write_tree(Path(tmp))
        found = ImageDataGenerator().flow_from_directory(tmp, target_size=(8, 8), batch_size=2, shuffle=False)
        import keras

        record = {
            "keras": keras.__version__,
            "files": FILES,
            "class_indices": found.class_indices,
            "filenames": sorted(Path(f).as_posix() for f in found.filenames),
        }
    OUT.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {OUT}: {len(record['filenames'])} files of {len(record['class_indices'])} classes")


if __name__ == "__main__":
    main()
