"""Data loaders: shapes, dtypes, determinism, masks, splits, fill values, ENSO labels."""
import importlib.resources

import numpy as np
import pytest
import torch

from lrp_widgets import data
from lrp_widgets.data import Dataset, digits, enso_fields, preprocess_anomalies, shapes, sst_anomalies, two_squares
from lrp_widgets.data.sst import SST_RESOURCE


@pytest.fixture(scope="module")
def squares():
    return two_squares(size=32)


@pytest.fixture(scope="module")
def sst():
    return sst_anomalies()


@pytest.fixture(scope="module")
def enso():
    return enso_fields(600, seed=1)


@pytest.fixture(scope="module")
def shape_data():
    return shapes(200, seed=3)


def _check_container(dataset, channels, side):
    assert dataset.x.dtype == torch.float32 and dataset.y.dtype == torch.int64
    assert dataset.x.shape[1:] == (channels, side, side) if isinstance(side, int) else dataset.x.shape[1] == channels
    assert torch.isfinite(dataset.x).all()
    assert len(dataset) == len(dataset.y) == len(dataset.x)
    assert set(dataset.y.tolist()) == set(range(dataset.n_classes))
    train, test = dataset.train, dataset.test
    # disjoint, complete, stratified 80/20
    assert len(set(dataset.train_index) & set(dataset.test_index)) == 0
    assert len(train) + len(test) == len(dataset)
    assert abs(len(test) / len(dataset) - 0.2) < 0.02
    for label in range(dataset.n_classes):
        share_all = (dataset.y == label).float().mean()
        share_test = (test.y == label).float().mean()
        assert abs(float(share_all - share_test)) < 0.05
    torch.testing.assert_close(test.x, dataset.x[torch.as_tensor(dataset.test_index)])
    with pytest.raises(ValueError, match="no split"):
        test.train


# -- two_squares -----------------------------------------------------------------------------
def test_two_squares_container(squares):
    _check_container(squares, 1, 32)
    assert len(squares) == 500 and squares.classes == ("left square +0.5", "left square -0.5")


@pytest.mark.parametrize("size", [16, 32, 100])
def test_two_squares_layout_is_proportional_and_only_the_left_square_differs(size):
    dataset = two_squares(n_per_class=100, size=size, noise=0.1, seed=2)
    informative = dataset.informative_mask
    assert informative.shape == (size, size) and informative.dtype == torch.bool
    assert informative.sum() > 0 and dataset.distractor_mask.sum() > 0
    assert not (informative & dataset.distractor_mask).any()
    # the informative square sits left, the distractors right
    assert informative.nonzero()[:, 1].max() < size // 2 <= dataset.distractor_mask.nonzero()[:, 1].min()
    class0 = dataset.x[dataset.y == 0, 0].mean(0)
    class1 = dataset.x[dataset.y == 1, 0].mean(0)
    difference = (class0 - class1).abs()
    assert difference[informative].min() > 0.9  # +0.5 versus -0.5
    assert difference[~informative].max() < 0.1  # noise only
    # the fixed squares: +0.5 (top) and -0.5 (bottom) in both classes
    distractor_values = dataset.x[:, 0][:, dataset.distractor_mask].mean(0)
    assert set(np.round(distractor_values.numpy(), 1).tolist()) == {0.5, -0.5}
    assert dataset.x.abs().max() <= 0.6 + 1e-6


def test_two_squares_paper_indices_at_size_100():
    dataset = two_squares(n_per_class=5, size=100, noise=0.0)
    expected = torch.zeros(100, 100, dtype=torch.bool)
    expected[45:55, 20:30] = True
    assert torch.equal(dataset.informative_mask, expected)
    assert torch.all(dataset.x[:, 0, 20:30, 70:80] == 0.5) and torch.all(dataset.x[:, 0, 70:80, 70:80] == -0.5)
    assert torch.all(dataset.x[dataset.y == 1, 0, 45:55, 20:30] == -0.5)


def test_two_squares_is_deterministic_and_seeded():
    first, second = two_squares(n_per_class=20, size=16, seed=5), two_squares(n_per_class=20, size=16, seed=5)
    assert torch.equal(first.x, second.x) and torch.equal(first.y, second.y)
    assert np.array_equal(first.test_index, second.test_index)
    assert not torch.equal(first.x, two_squares(n_per_class=20, size=16, seed=6).x)


def test_subsets_carry_extras_and_spec_rebuilds(squares, shape_data):
    assert torch.equal(squares.test.informative_mask, squares.informative_mask)
    test = shape_data.test
    assert torch.equal(test.masks, shape_data.masks[torch.as_tensor(shape_data.test_index)])
    assert torch.equal(data.load(squares.spec).x, squares.x)


def test_dataset_rejects_fill_values():
    x = torch.zeros(2, 1, 4, 4)
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        Dataset(x=x, y=torch.zeros(2, dtype=torch.int64), classes=("a",))


# -- shapes and digits -------------------------------------------------------------------------
def test_shapes_container_and_masks(shape_data):
    _check_container(shape_data, 3, 32)
    assert shape_data.n_classes == 10 and np.bincount(shape_data.y.numpy()).tolist() == [20] * 10
    masks = shape_data.masks
    assert masks.shape == (200, 32, 32) and masks.dtype == torch.bool
    area = masks.float().mean((1, 2))
    assert area.min() > 0.02 and area.max() < 0.6
    # the mask is where the object is: bright colour inside, dark texture outside
    brightness = shape_data.x.max(dim=1).values
    inside = (brightness * masks).sum((1, 2)) / masks.sum((1, 2))
    outside = (brightness * ~masks).sum((1, 2)) / (~masks).sum((1, 2))
    assert (inside > outside + 0.3).all()
    assert shape_data.x.min() >= 0 and shape_data.x.max() <= 1
    assert torch.equal(shapes(200, seed=3).x, shape_data.x)


def test_digits():
    dataset = digits()
    _check_container(dataset, 1, 8)
    assert len(dataset) == 1797 and dataset.x.min() == 0 and dataset.x.max() == 1
    upsampled = digits(upsample=2)
    assert upsampled.x.shape[1:] == (1, 16, 16)
    torch.testing.assert_close(upsampled.x[:, :, ::2, ::2], dataset.x)
    with pytest.raises(ValueError, match="upsample"):
        digits(upsample=0)


# -- real SST anomalies ------------------------------------------------------------------------
def test_sst_has_nan_exactly_on_land_and_no_fill_value(sst):
    from scipy.io import netcdf_file

    with importlib.resources.as_file(importlib.resources.files(SST_RESOURCE[0]).joinpath(SST_RESOURCE[1])) as path:
        with netcdf_file(path, "r", mmap=False) as handle:
            raw = np.array(handle.variables["sst"][:])
    fill = raw >= 1e19
    assert fill.any()
    assert sst.values.shape == raw.shape == (50, 18, 30)
    assert np.array_equal(np.isnan(sst.values), fill)
    assert np.array_equal(sst.ocean, ~fill.any(axis=0))
    assert np.nanmax(np.abs(sst.values)) < 10  # anomalies in K, the 1e20 never survives
    np.testing.assert_array_equal(sst.values[~np.isnan(sst.values)], raw[~fill])


def test_sst_grid_and_dates(sst):
    assert sst.lat.shape == (18,) and sst.lon.shape == (30,)
    assert sst.time.dtype == np.dtype("datetime64[D]") and np.all(np.diff(sst.time) > np.timedelta64(300, "D"))
    assert str(sst.time[0])[:4] == "1963" and str(sst.time[-1])[:4] == "2012"
    # Nino 3.4 (5S-5N, 190E-240E) on the 0-360 grid: 2 latitude rows x 10 longitudes, all sea
    box = sst.nino34_mask
    assert box.sum() == 20
    assert np.all(np.abs(sst.lat[box.any(axis=1)]) < 5)
    assert np.all((sst.lon[box.any(axis=0)] > 190) & (sst.lon[box.any(axis=0)] < 240))
    index = sst.nino34_index()
    assert abs(index.mean()) < 1e-9 and abs(index.std() - 1) < 1e-9
    # the big El Nino winters of the record stand out
    year = {int(str(t)[:4]): value for t, value in zip(sst.time, index)}
    assert year[1983] > 1.5 and year[1998] > 1.5 and year[1989] < -0.5


def test_preprocess_masks_fill_values_caps_and_scales():
    ocean = np.array([[True, True, True, False]])
    values = np.array([[[1.0, 1e20, 40.0, 2.0]], [[np.nan, np.inf, -40.0, 0.5]]])
    out = preprocess_anomalies(values, ocean, scale=2.0)  # cap to [-5, 5] K, then divide by 2
    np.testing.assert_array_equal(out, [[[0.5, 0.0, 2.5, 0.0]], [[0.0, 0.0, -2.5, 0.0]]])
    assert out.dtype == np.float32


# -- synthetic ENSO fields ---------------------------------------------------------------------
def test_enso_fields_container_and_land(enso, sst):
    _check_container(enso, 1, None)
    assert enso.x.shape == (600, 1, 18, 30) and enso.classes == ("La Nina", "El Nino")
    assert np.bincount(enso.y.numpy()).tolist() == [300, 300]
    ocean = enso.ocean
    assert np.array_equal(ocean.numpy(), sst.ocean)
    assert torch.all(enso.x[:, 0, ~ocean] == 0)
    assert (enso.x[:, 0, ocean] != 0).float().mean() > 0.99
    assert enso.x.abs().max() * enso.scale <= 5.0 + 1e-5
    assert torch.equal(enso_fields(600, seed=1).x, enso.x)


def test_enso_labels_match_the_nino34_index(enso):
    index = enso.nino34.numpy()
    labels = enso.y.numpy()
    assert np.all(np.abs(index) > 0.5)  # neutral winters were discarded
    assert np.array_equal(labels, (index > 0.5).astype(int))
    # recompute the index from the inputs: the box mean of x is the same index up to an affine map
    box = enso.nino34_mask.numpy()
    box_mean = enso.x[:, 0].numpy()[:, box].mean(axis=1)
    slope, intercept = np.polyfit(box_mean, index, 1)
    assert slope > 0
    assert np.max(np.abs(slope * box_mean + intercept - index)) < 1e-3
    # and its sign decides El Nino versus La Nina around the mean state
    assert np.array_equal(labels, (box_mean > -intercept / slope).astype(int))


def test_enso_fields_resemble_the_real_record(enso, sst):
    # The synthetic fields' per-cell standard deviation follows the real record's spatial pattern.
    real = sst.values[:, sst.ocean].std(axis=0)
    synthetic = (enso.x[:, 0].numpy() * enso.scale).std(axis=0)[sst.ocean]
    assert np.corrcoef(real, synthetic)[0, 1] > 0.8


def test_enso_observed_winters_are_labelled_by_the_real_index(sst):
    observed = data.enso_observed()
    index = sst.nino34_index()
    chosen = np.abs(index) > 0.5
    assert len(observed) == chosen.sum()
    assert np.array_equal(observed.y.numpy(), (index[chosen] > 0.5).astype(int))
    assert np.array_equal(observed.time, sst.time[chosen])
    assert torch.isfinite(observed.x).all() and torch.all(observed.x[:, 0, ~observed.ocean] == 0)
