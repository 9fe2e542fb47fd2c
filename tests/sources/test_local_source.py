from datetime import date

import numpy as np
import pytest
from affine import Affine

from pipeline.config import DateRange
from pipeline.errors import InputError
from pipeline.sources.local import LocalGeoTiffSource, _span, inspect_file
from pipeline.sources.scene import ReadGrid
from tests.conftest import write_s2

JULY = DateRange(start=date(2025, 7, 1), end=date(2025, 7, 31))
GRID = ReadGrid("EPSG:32650", Affine(10, 0, 500000, 0, -10, 5430000), 20, 20)


def _refl(value: float, shape=(20, 20)) -> np.ndarray:
    return np.full((6, *shape), value, dtype=np.float32)


def test_l2a_offset_is_applied(tmp_path):
    write_s2(tmp_path / "a.tif", _refl(0.1), "2025-07-10")
    comp = LocalGeoTiffSource([str(tmp_path / "*.tif")]).composite(GRID, JULY)
    np.testing.assert_allclose(comp.reflectance, 0.1, atol=1e-4)  # ignoring the offset would give 0.2
    assert comp.dates == [date(2025, 7, 10)]


def test_median_composite_masks_clouds_from_scl(tmp_path):
    scl_clear = np.full((20, 20), 4)
    scl_cloud = scl_clear.copy()
    scl_cloud[:10] = 9
    write_s2(tmp_path / "a.tif", _refl(0.10), "2025-07-05", scl=scl_clear)
    write_s2(tmp_path / "b.tif", _refl(0.60), "2025-07-15", scl=scl_cloud)  # bright cloud in the top half
    write_s2(tmp_path / "c.tif", _refl(0.12), "2025-07-25", scl=scl_clear)
    write_s2(tmp_path / "d.tif", _refl(0.50), "2025-09-01", scl=scl_clear)  # outside the window
    comp = LocalGeoTiffSource([str(tmp_path / "*.tif")]).composite(GRID, JULY)
    np.testing.assert_allclose(comp.reflectance[:, :10], 0.11, atol=1e-4)  # cloud ignored: median of 2
    np.testing.assert_allclose(comp.reflectance[:, 10:], 0.12, atol=1e-4)  # median of 3
    assert comp.observations[:10].max() == 2 and comp.observations[10:].min() == 3
    assert comp.valid.all()


def test_pixels_never_seen_are_invalid(tmp_path):
    scl = np.full((20, 20), 8)
    write_s2(tmp_path / "a.tif", _refl(0.1), "2025-07-10", scl=scl)
    comp = LocalGeoTiffSource([str(tmp_path / "a.tif")]).composite(GRID, JULY)
    assert not comp.valid.any()
    assert np.isnan(comp.reflectance).all()


def test_file_in_another_utm_zone_is_warped_onto_the_grid(tmp_path):
    # a file in zone 51N covering the grid, which is in zone 50N
    import geopandas as gpd
    from shapely.geometry import box

    grid_box = gpd.GeoSeries([box(500000, 5429800, 500200, 5430000)], crs="EPSG:32650").to_crs("EPSG:32651")
    minx, _, maxx, maxy = grid_box.total_bounds
    transform = Affine(10, 0, np.floor(minx / 10) * 10 - 100, 0, -10, np.ceil(maxy / 10) * 10 + 100)
    n = int((maxx - minx) / 10) + 25
    write_s2(tmp_path / "z51.tif", _refl(0.2, (n, n)), "2025-07-10", crs="EPSG:32651", transform=transform)
    comp = LocalGeoTiffSource([str(tmp_path / "z51.tif")]).composite(GRID, JULY)
    assert comp.valid.all()
    np.testing.assert_allclose(comp.reflectance, 0.2, atol=1e-3)


def test_missing_band_names_the_file_and_the_fix(tmp_path):
    names = ("B02", "B03", "B04", "B08", "B11", "B8A")  # B12 missing
    path = write_s2(tmp_path / "no_b12.tif", _refl(0.1), "2025-07-10", descriptions=names)
    with pytest.raises(InputError) as err:
        inspect_file(path)
    msg = str(err.value)
    assert "no_b12.tif" in msg and "B12" in msg and "source.bands" in msg


def test_band_mapping_and_date_from_file_name(tmp_path):
    path = write_s2(tmp_path / "S2B_20250712_T50UPA.tif", _refl(0.1), "", descriptions=("a", "b", "c", "d", "e", "f"))
    acq = inspect_file(path, bands={"B2": 1, "B3": 2, "B4": 3, "B8": 4, "B11": 5, "B12": 6})
    assert acq.when == date(2025, 7, 12)
    assert acq.band_index["B02"] == 1 and acq.band_index["B12"] == 6


def test_no_matching_file_is_an_error(tmp_path):
    with pytest.raises(InputError, match="no file matches"):
        LocalGeoTiffSource([str(tmp_path / "*.tif")])


def test_aligned_read_matches_the_warped_read_and_pads_outside(tmp_path):
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT

    from pipeline.sources.local import _aligned_offset, _read_on_grid

    rng = np.random.default_rng(0)
    path = write_s2(tmp_path / "a.tif", rng.uniform(0.05, 0.4, (6, 20, 20)).astype(np.float32), "2025-07-10")
    shifted = ReadGrid("EPSG:32650", Affine(10, 0, 500050, 0, -10, 5429970), 20, 20)  # 5 px right, 3 px down
    with rasterio.open(path) as src:
        assert _aligned_offset(src, shifted) == (3, 5)
        fast = _read_on_grid(src, [1, 2, 3], shifted, 0, Resampling.bilinear)
        with WarpedVRT(src, crs=shifted.crs, transform=shifted.transform, width=20, height=20, src_nodata=0,
                       nodata=0, resampling=Resampling.nearest) as vrt:
            slow = vrt.read([1, 2, 3])
    np.testing.assert_array_equal(fast, slow)
    assert (fast[:, 17:, :] == 0).all() and (fast[:, :, 15:] == 0).all()
    comp = LocalGeoTiffSource([str(path)]).composite(shifted, JULY)
    assert comp.valid[:17, :15].all() and not comp.valid[17:].any() and not comp.valid[:, 15:].any()


def test_nan_median_matches_numpy():
    import warnings

    from pipeline.sources.local import nan_median

    rng = np.random.default_rng(1)
    stack = rng.uniform(0, 1, (5, 3, 40, 40)).astype(np.float32)
    stack[rng.uniform(size=stack.shape) < 0.4] = np.nan
    stack[:, :, 0, 0] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = np.nanmedian(stack, axis=0)
    np.testing.assert_allclose(nan_median(stack), expected, rtol=1e-6)


def test_files_elsewhere_are_not_read(tmp_path):
    far = Affine(10, 0, 700000, 0, -10, 5600000)  # 200 km away, same zone
    write_s2(tmp_path / "far.tif", _refl(0.1), "2025-07-10", transform=far)
    source = LocalGeoTiffSource([str(tmp_path / "far.tif")])
    assert source.composite(GRID, JULY) is None
    assert source.composite(ReadGrid("EPSG:32650", far, 20, 20), JULY).valid.all()


def test_band_mapping_beyond_the_file_is_refused(tmp_path):
    path = write_s2(tmp_path / "a.tif", _refl(0.1), "2025-07-10")
    with pytest.raises(InputError, match=r"band index out of range \(B12: 12\)"):
        inspect_file(path, bands={"B02": 1, "B03": 2, "B04": 3, "B08": 4, "B11": 5, "B12": 12})


def test_tiff_datetime_is_not_taken_for_the_acquisition_date(tmp_path):
    import rasterio

    path = write_s2(tmp_path / "S2_L2A_20240708.tif", _refl(0.1), "")
    with rasterio.open(path, "r+") as dst:
        dst.update_tags(TIFFTAG_DATETIME="2025:03:01 10:00:00")
    assert inspect_file(path).when == date(2024, 7, 8)


def test_dates_list_only_acquisitions_that_saw_the_grid(tmp_path):
    write_s2(tmp_path / "a.tif", _refl(0.1), "2025-07-05", scl=np.full((20, 20), 4))
    write_s2(tmp_path / "b.tif", _refl(0.1), "2025-07-15", scl=np.full((20, 20), 9))  # all cloud
    comp = LocalGeoTiffSource([str(tmp_path / "*.tif"), str(tmp_path / "a.tif")]).composite(GRID, JULY)
    assert comp.dates == [date(2025, 7, 5)]
    assert comp.observations.max() == 1  # a.tif matched twice is still one acquisition


@pytest.mark.parametrize(("tags", "problem"), [
    ({"QUANTIFICATION_VALUE": "0"}, "0 is not a scale"),
    ({"QUANTIFICATION_VALUE": "-10000"}, "-10000 is not a scale"),
    ({"QUANTIFICATION_VALUE": "ten thousand"}, "'ten thousand' is not a number"),
    ({"BOA_ADD_OFFSET": "nan"}, "'nan' is not a number"),
    ({"QUANTIFICATION_VALUE": "1"}, r"median reflectance of 1e\+03"),  # every pixel would be blinding white
])
def test_nonsense_radiometric_metadata_names_the_tag(tmp_path, tags, problem):
    import rasterio

    path = write_s2(tmp_path / "a.tif", _refl(0.1), "2025-07-10")
    with rasterio.open(path, "r+") as dst:
        dst.update_tags(**tags)
    with pytest.raises(InputError, match=problem) as err:
        inspect_file(path)
    assert err.value.path == path and err.value.field == next(iter(tags))


def _float_file(path, values: np.ndarray, when: str = "2025-07-10"):
    import rasterio

    with rasterio.open(path, "w", driver="GTiff", width=20, height=20, count=6, dtype="float32", crs=GRID.crs,
                       transform=GRID.transform, nodata=0) as dst:
        dst.write(values.astype(np.float32))
        dst.descriptions = ("B02", "B03", "B04", "B08", "B11", "B12")
        dst.update_tags(ACQUISITION_DATE=when)
    return path


def test_float_files_of_digital_numbers_are_told_from_reflectance_and_converted_with_a_note(tmp_path):
    _float_file(tmp_path / "refl.tif", _refl(0.1))
    _float_file(tmp_path / "dn.tif", _refl(1000.0), "2025-07-20")  # 0.1 as digital numbers
    source = LocalGeoTiffSource([str(tmp_path / "*.tif")])
    assert [a.float_digital_numbers for a in source.acquisitions] == [True, False]
    comp = source.composite(GRID, JULY)
    np.testing.assert_allclose(comp.reflectance, 0.1, atol=1e-6)
    assert len(source.notes) == 1 and source.notes[0].startswith("1 floating-point file(s) hold digital numbers")
    assert "dn.tif" in source.notes[0] and "refl.tif" not in source.notes[0]


def test_unreadable_data_names_the_file_and_the_fix(tmp_path):
    from pipeline.sources.local import DamagedFileError, read_reflectance

    path = write_s2(tmp_path / "a.tif", _refl(0.1, (200, 200)), "2025-07-10")
    acq = inspect_file(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # cut short after it was inspected
    with pytest.raises(DamagedFileError, match="its data cannot be read") as err:
        read_reflectance(acq, ReadGrid(GRID.crs, GRID.transform, 200, 200), LocalGeoTiffSource.bands)
    assert err.value.path == path and "fetch or export it again" in err.value.fix


def test_empty_window_reads_as_a_scene_that_saw_nothing(tmp_path):
    from pipeline.config import Windows
    from pipeline.sources import read_scene

    write_s2(tmp_path / "a.tif", _refl(0.1), "2025-07-10")
    june_2024 = DateRange(start=date(2024, 6, 1), end=date(2024, 6, 30))
    scene = read_scene(LocalGeoTiffSource([str(tmp_path / "a.tif")]), GRID,
                       Windows(baseline=june_2024, monitoring=JULY))
    assert scene.before.dates == [] and not scene.before.valid.any() and scene.after.valid.all()
    assert not scene.valid.any()


def test_overlapping_files_of_one_date_count_once_in_the_median(tmp_path):
    """Two tiles of one pass (or a cache holding one scene on neighbouring grids) are one observation:
    counted twice, the bright date would win the median where they overlap."""
    write_s2(tmp_path / "a.tif", _refl(0.10), "2025-07-05")
    write_s2(tmp_path / "b.tif", _refl(0.12), "2025-07-15")
    write_s2(tmp_path / "c_left.tif", _refl(0.40, (20, 12)), "2025-07-25")  # one pass, two overlapping tiles
    write_s2(tmp_path / "c_right.tif", _refl(0.40, (20, 12)), "2025-07-25",
             transform=Affine(10, 0, 500080, 0, -10, 5430000))
    comp = LocalGeoTiffSource([str(tmp_path / "*.tif")]).composite(GRID, JULY)
    np.testing.assert_allclose(comp.reflectance, 0.12, atol=1e-4)  # median of 0.10, 0.12, 0.40 everywhere
    assert (comp.observations == 3).all()
    assert comp.dates == [date(2025, 7, 5), date(2025, 7, 15), date(2025, 7, 25)]


@pytest.mark.parametrize("block", [1, 16, 256, 512])
def test_the_radiometry_sample_stays_in_the_block_that_holds_each_point(block):
    size, limit = 64, 2050  # the last block is partial
    for centre in range(0, limit, 7):
        start, length = _span(centre, size, block, limit)
        assert 0 <= start and start + length <= limit
        assert length == min(size, limit - centre // block * block if block >= size else limit)
        if block >= size:  # one block decoded: the window is inside the block of its centre
            assert start // block == (start + length - 1) // block == centre // block
        else:  # blocks too small to hold it: centred on the point where the file allows
            assert start == min(max(centre - size // 2, 0), limit - size)
