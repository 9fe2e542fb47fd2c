"""Atomic writes: whole or nothing, and a full disk named as such whichever library wrote."""

import subprocess
import sys

_LIMITED = """
import resource, sys
from pathlib import Path
import numpy as np
import rasterio
from pipeline.atomic import atomic_path, write_json_atomic
from pipeline.errors import InputError
folder = Path(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))  # files stop growing at 20 kB, as on a full disk

def geotiff(path):
    with atomic_path(path) as tmp, rasterio.open(tmp, "w", driver="GTiff", width=300, height=300, count=3,
                                                 dtype="float32", crs="EPSG:32650",
                                                 transform=rasterio.Affine(10, 0, 0, 0, -10, 0)) as dst:
        dst.write(np.random.default_rng(0).random((3, 300, 300), dtype="float32"))

for write, name in ((lambda p: write_json_atomic(p, {"x": "y" * 100_000}), "summary.json"),
                    (geotiff, "probabilities.tif")):
    try:
        write(folder / name)
        print("written", name)
    except InputError as err:
        print(err)
"""


def test_json_and_geotiff_writers_name_a_full_disk(tmp_path):
    done = subprocess.run([sys.executable, "-c", _LIMITED, str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    for name in ("summary.json", "probabilities.tif"):
        assert f"{tmp_path / name}: could not be written: the file grew larger than this system allows" in done.stdout
    assert done.stdout.count("fix: free space on that disk") == 2
    assert not list(tmp_path.iterdir())
