import geopandas as gpd
import numpy as np
import pytest
from affine import Affine
from shapely.geometry import box

from detectors.categories import Zone
from pipeline.config import ZoneLayer
from pipeline.errors import InputError
from pipeline.inputs.zones import load_zones
from pipeline.sources.scene import ReadGrid


def test_categories_without_their_zone_are_switched_off_or_read_from_the_image():
    zones = load_zones([], ["river", "forest", "lake", "mine"])
    assert zones.switched_off == {"river"}
    assert set(zones.polygons) == {Zone.LAKE}  # the shipped protection zone
    assert any("'river' was not run" in n for n in zones.notes)
    assert any("'forest' applies wherever" in n for n in zones.notes)


def _layer(tmp_path, values):
    utm = [box(500000 + 100 * i, 5429000, 500100 + 100 * i, 5430000) for i in range(len(values))]
    path = tmp_path / "zones.gpkg"
    gpd.GeoDataFrame({"类型": values}, geometry=utm, crs="EPSG:32650").to_crs("EPSG:4490").to_file(path)
    return path


def test_zone_column_with_mapped_values_is_rasterised_on_the_grid(tmp_path):
    path = _layer(tmp_path, ["河道", "林地"])
    zones = load_zones([ZoneLayer(path=path, column="类型", values={"河道": "river", "林地": "forest"})],
                       ["river", "forest"])
    assert zones.switched_off == set()
    masks = zones.masks(ReadGrid("EPSG:32650", Affine(10, 0, 500000, 0, -10, 5430000), 20, 5))
    assert masks[Zone.RIVER][:, :10].all() and not masks[Zone.RIVER][:, 10:].any()
    assert masks[Zone.FOREST][:, 10:].all() and not masks[Zone.FOREST][:, :10].any()
    assert np.count_nonzero(masks[Zone.FOREST]) == 50


def test_unknown_zone_value_and_missing_column_are_clear_errors(tmp_path):
    path = _layer(tmp_path, ["河道"])
    with pytest.raises(InputError, match="value '河道' is not a zone"):
        load_zones([ZoneLayer(path=path, column="类型")], ["river"])
    with pytest.raises(InputError, match="column not found in the layer"):
        load_zones([ZoneLayer(path=path, column="zone")], ["river"])


def test_missing_mining_district_is_noted():
    zones = load_zones([], ["mine"])
    assert any("'mining_district' zone supplied: dark (coal-like) surfaces" in n for n in zones.notes)


def test_a_baseline_for_no_category_scores_nothing():
    from detectors.baseline import SpectralBaseline

    b = np.full((1, 6, 4, 4), 0.2, dtype=np.float32)
    a = np.full((1, 6, 4, 4), 0.05, dtype=np.float32)
    probs = SpectralBaseline([]).predict(b, a, np.ones((1, 4, 4), dtype=bool), {})
    assert not probs.any()
