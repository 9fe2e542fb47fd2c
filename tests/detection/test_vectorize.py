import numpy as np
import pytest
from affine import Affine

from detectors.categories import CATEGORY_IDS, get_category
from pipeline.detection.decision import decide, one_category_per_change
from pipeline.detection.vectorize import merge_across_cells, polygons_from_labels

CATS = CATEGORY_IDS
MINE = CATS.index("mine")


def test_decide_takes_the_most_probable_category_above_its_threshold():
    probs = np.zeros((len(CATS), 1, 3), dtype=np.float32)
    probs[MINE] = [0.9, 0.4, 0.6]
    probs[0] = [0.7, 0.45, 0.7]
    thresholds = dict.fromkeys(CATS, 0.5)
    labels = decide(probs, CATS, thresholds)
    assert labels.tolist() == [[MINE + 1, 0, 1]]


def _labels_with(blocks, shape=(100, 100)):
    labels = np.zeros(shape, dtype=np.uint8)
    for (r0, r1, c0, c1) in blocks:
        labels[r0:r1, c0:c1] = MINE + 1
    return labels


def test_small_interior_patches_are_sieved_but_edge_patches_kept():
    # mine MMU 3000 m2 = 30 px at 10 m; a 5x5 interior patch goes, a 5x5 patch on the edge stays
    labels = _labels_with([(40, 45, 40, 45), (0, 5, 60, 65), (10, 20, 10, 20)])
    probs = np.zeros((len(CATS), 100, 100), dtype=np.float32)
    probs[MINE] = 0.8
    gdf = polygons_from_labels(labels, probs, CATS, Affine(10, 0, 0, 0, -10, 1000), "EPSG:32650", "c", 10.0)
    assert sorted(gdf.n_px.tolist()) == [25, 100]
    assert gdf.set_index("n_px").loc[25, "touches_edge"]
    assert gdf.p_mean.tolist() == pytest.approx([0.8, 0.8])


def test_patch_split_by_a_cell_edge_is_merged_and_kept():
    # a 40 x 6 px mine (2400 m2 in each half: below the 3000 m2 unit alone, 4800 m2 together)
    probs = np.zeros((len(CATS), 100, 100), dtype=np.float32)
    probs[MINE] = 0.9
    left = _labels_with([(20, 60, 94, 100)])
    right = _labels_with([(20, 60, 0, 6)])
    res = 10.0
    x0, y0 = 500000.0, 5430000.0
    a = polygons_from_labels(left, probs, CATS, Affine(res, 0, x0, 0, -res, y0), "EPSG:32650", "a", res)
    b = polygons_from_labels(right, probs * 0.5, CATS, Affine(res, 0, x0 + 1000, 0, -res, y0), "EPSG:32650", "b", res)
    merged = merge_across_cells([a, b], 10.0)
    assert len(merged) == 1
    row = merged.iloc[0]
    assert row.n_px == 480
    assert row.p_mean == pytest.approx((0.9 + 0.45) / 2)
    assert row.p_max == pytest.approx(0.9)
    assert row.cell_id == "a,b"
    # equal-area area of 480 px of 100 m2 (UTM scale error is below 0.1% near the central meridian)
    assert row.area_m2 == pytest.approx(48000, rel=2e-3)
    assert row.area_m2 >= get_category("mine").min_area_m2


def test_merged_patch_still_too_small_is_dropped():
    probs = np.zeros((len(CATS), 100, 100), dtype=np.float32)
    probs[MINE] = 0.9
    left = _labels_with([(20, 24, 96, 100)])
    gdf = polygons_from_labels(left, probs, CATS, Affine(10, 0, 0, 0, -10, 1000), "EPSG:32650", "a", 10.0)
    assert len(gdf) == 1 and gdf.touches_edge.all()
    assert merge_across_cells([gdf], 10.0).empty


def test_patches_across_a_utm_zone_boundary_are_one_change():
    import geopandas as gpd
    from shapely.geometry import box

    def half(west: float, east: float, epsg: int, cell: str) -> gpd.GeoDataFrame:
        # 8 m short of the meridian, as a pixel staircase of its own grid would leave it
        geom = gpd.GeoSeries([box(west, 49.0, east, 49.0005)], crs="EPSG:4326").to_crs(epsg).iloc[0]
        geom = geom.buffer(-4, join_style="mitre")
        return gpd.GeoDataFrame({"cell_id": [cell], "category": ["mine"], "p_mean": [0.8], "p_max": [0.9],
                                 "n_px": [30], "touches_edge": [True], "before_dates": ["2024-07-08"],
                                 "after_dates": ["2025-07-13"]}, geometry=[geom], crs=f"EPSG:{epsg}")

    west = half(119.999, 120.0, 32650, "32650_40_1060")
    east = half(120.0, 120.001, 32651, "32651_-30_1060")
    merged = merge_across_cells([west, east], 10.0)
    assert len(merged) == 1
    assert merged.cell_id.iloc[0] == "32650_40_1060,32651_-30_1060"
    assert merged.n_px.iloc[0] == 60
    assert merged.area_m2.iloc[0] == pytest.approx(west.to_crs("EPSG:6933").area.iloc[0]
                                                   + east.to_crs("EPSG:6933").area.iloc[0], rel=1e-6)
    far = half(120.001, 120.002, 32651, "32651_-29_1060")  # 65 m away: a different change
    assert len(merge_across_cells([west, far], 10.0)) == 2


def test_holes_of_another_category_are_not_taken():
    labels = _labels_with([(10, 30, 10, 30)])
    labels[18:21, 18:21] = CATS.index("lake") + 1  # 9 px of lake inside the mine
    probs = np.full((len(CATS), 100, 100), 0.8, dtype=np.float32)
    gdf = polygons_from_labels(labels, probs, CATS, Affine(10, 0, 0, 0, -10, 1000), "EPSG:32650", "c", 10.0)
    mine = gdf[gdf.category == "mine"].iloc[0]
    assert mine.n_px == 400 - 9
    assert mine.geometry.area == pytest.approx(39100)


def test_patch_at_the_aoi_cut_is_kept_for_the_merge():
    labels = _labels_with([(40, 45, 50, 55)])  # 25 px, below the mine unit, next to the zone cut
    outside = np.zeros((100, 100), dtype=bool)
    outside[:, 55:] = True
    probs = np.full((len(CATS), 100, 100), 0.8, dtype=np.float32)
    transform = Affine(10, 0, 0, 0, -10, 1000)
    assert polygons_from_labels(labels, probs, CATS, transform, "EPSG:32650", "c", 10.0).empty
    kept = polygons_from_labels(labels, probs, CATS, transform, "EPSG:32650", "c", 10.0, outside=outside)
    assert kept.touches_edge.tolist() == [True]


def test_a_grid_in_degrees_is_refused():
    # 0.0001 degree pixels are 1e-8 "square units": no patch would ever reach a mapping unit
    labels = _labels_with([(10, 30, 10, 30)])
    probs = np.full((len(CATS), 100, 100), 0.8, dtype=np.float32)
    with pytest.raises(ValueError, match="not in metres"):
        polygons_from_labels(labels, probs, CATS, Affine(1e-4, 0, 117, 0, -1e-4, 49), "EPSG:4326", "c", 1e-4)


def test_a_change_split_by_a_cell_edge_takes_one_category():
    # one side read the change as temporary land (240 px), the other as `other` (120 px): one polygon,
    # named by the category whose parts hold the most pixels
    res, x0, y0 = 10.0, 500000.0, 5430000.0
    probs = np.full((len(CATS), 100, 100), 0.8, dtype=np.float32)
    left = np.zeros((100, 100), dtype=np.uint8)
    left[20:60, 94:100] = CATS.index("temporary_land") + 1
    right = np.zeros((100, 100), dtype=np.uint8)
    right[20:60, 0:3] = CATS.index("other") + 1
    a = polygons_from_labels(left, probs, CATS, Affine(res, 0, x0, 0, -res, y0), "EPSG:32650", "a", res)
    b = polygons_from_labels(right, probs, CATS, Affine(res, 0, x0 + 1000, 0, -res, y0), "EPSG:32650", "b", res)
    merged = merge_across_cells([a, b], res)
    assert merged.category.tolist() == ["temporary_land"]
    assert merged.n_px.tolist() == [360]


def _seam_change() -> np.ndarray:
    """A change across column 100: a temporary-land core (280 px) on the west side, an `other` rim
    (710 px) around it reaching across, and a 2 x 2 px hole of no change on the seam."""
    probs = np.zeros((len(CATS), 50, 200), dtype=np.float32)
    probs[CATS.index("other"), 10:40, 85:118] = 0.8
    probs[CATS.index("temporary_land"), 12:32, 86:100] = 0.9
    probs[:, 35:37, 99:101] = 0.0
    return probs


def test_a_change_on_a_seam_gets_the_name_and_holes_it_gets_whole():
    # whole, temporary land holds 28 % of the change: it names it. Cut at column 100, the west part
    # alone is mostly temporary land and the east part all `other`: named part by part, the larger
    # east part would have named the change `other`, and the hole on the seam would stay open
    res, x0, y0 = 10.0, 500000.0, 5430000.0
    probs, thresholds = _seam_change(), dict.fromkeys(CATS, 0.5)
    whole = polygons_from_labels(decide(probs, CATS, thresholds), probs, CATS, Affine(res, 0, x0, 0, -res, y0),
                                 "EPSG:32650", "w", res)
    assert whole.category.tolist() == ["temporary_land"] and whole.n_px.tolist() == [990]
    cells = []
    for c0 in (0, 100):
        part = probs[:, :, c0:c0 + 100]
        labels = decide(part, CATS, thresholds, keep_border_labels=True)
        assert set(np.unique(labels)) - {0} <= {CATS.index("other") + 1, CATS.index("temporary_land") + 1}
        cells.append(polygons_from_labels(labels, part, CATS, Affine(res, 0, x0 + c0 * res, 0, -res, y0),
                                          "EPSG:32650", f"c{c0}", res))
    assert all(p.touches_edge.all() for p in cells)
    joined, alone = merge_across_cells(cells, res), merge_across_cells([whole], res)
    assert joined.category.tolist() == alone.category.tolist() == ["temporary_land"]
    assert joined.n_px.tolist() == alone.n_px.tolist() == [990]
    assert joined.geometry.iloc[0].symmetric_difference(alone.geometry.iloc[0]).area < 1.0
    geom = joined.geometry.iloc[0]
    assert not [ring for p in getattr(geom, "geoms", [geom]) for ring in p.interiors]


def test_a_change_no_category_names_is_left_to_its_pixels_labels_on_a_seam_too():
    # five categories of 48 px each side by side, and no `other` pixel: none holds a quarter of the
    # change, so each keeps its pixels and its own unit; the river, cut by column 100, is joined again
    res, x0, y0 = 10.0, 500000.0, 5430000.0
    labels = np.zeros((50, 200), dtype=np.uint8)
    for k, cat in enumerate(("temporary_land", "forest", "river", "black_soil", "mine")):
        labels[20:26, 82 + 8 * k:90 + 8 * k] = CATS.index(cat) + 1
    probs = np.full((len(CATS), 50, 200), 0.8, dtype=np.float32)

    def named(parts):
        merged = merge_across_cells(parts, res)
        return sorted(zip(merged.category, merged.n_px, strict=True))

    whole = one_category_per_change(labels, CATS, res)
    assert np.array_equal(whole, labels)
    cells = [polygons_from_labels(one_category_per_change(labels[:, c0:c0 + 100], CATS, res, keep_border_labels=True),
                                  probs[:, :, c0:c0 + 100], CATS, Affine(res, 0, x0 + c0 * res, 0, -res, y0),
                                  "EPSG:32650", f"c{c0}", res) for c0 in (0, 100)]
    expected = sorted((c, 48) for c in ("temporary_land", "forest", "river", "black_soil", "mine"))
    assert named(cells) == expected
    assert named([polygons_from_labels(whole, probs, CATS, Affine(res, 0, x0, 0, -res, y0), "EPSG:32650", "w",
                                       res)]) == expected
