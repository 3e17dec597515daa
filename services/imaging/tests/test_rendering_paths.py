"""The rendering pipeline's fast paths give exactly what the general path gives: the greyscale lookup table
(built over the frame's range of stored values) against the per-pixel computation, for signed and
unsigned pixels, every window function, a window from the file or the frame's own range, MONOCHROME1;
JPEG-LS decoded by CharLS (pyjpegls) when installed, the same pixels as pylibjpeg's libjpeg."""

from __future__ import annotations

from io import BytesIO

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.pixels import pixel_array
from pydicom.uid import JPEGLSLossless

from hospital.imaging.domain import rendering

CASES = [
    (np.int16, -32768, 32767, -2.0),  # the whole 16-bit signed range: the index must not wrap
    (np.int16, -2000, 3000, 1.0),
    (np.uint16, 100, 4095, 1.0),
    (np.uint16, 0, 4095, 0.5),
    (np.uint8, 0, 255, 1.0),
]
WINDOWS = [None, (40.0, 400.0, "linear"), (40.0, 400.0, "sigmoid"), (0.0, 1.0, "linear-exact")]


@pytest.mark.parametrize(("dtype", "low", "high", "slope"), CASES)
@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize("file_window", [False, True])
@pytest.mark.parametrize("invert", [False, True])
def test_lookup_table_equals_per_pixel(dtype, low, high, slope, window, file_window, invert) -> None:
    rng = np.random.default_rng(7)
    ds = Dataset()
    ds.RescaleSlope, ds.RescaleIntercept = slope, -1024
    if file_window:
        ds.WindowCenter, ds.WindowWidth = 40, 400
    arr = rng.integers(low, high + 1, (128, 128)).astype(dtype)
    arr.flat[0], arr.flat[1] = low, high
    fast = rendering._grey(arr, ds, window, invert)
    assert fast.dtype == np.uint8
    assert np.array_equal(fast, rendering._to_8bit(arr, ds, window, invert))


def test_range_wider_than_the_frame_takes_the_per_pixel_path() -> None:
    ds = Dataset()
    arr = np.array([[0, 1_000_000]], dtype=np.int32)  # range wider than the frame: no table
    assert np.array_equal(rendering._grey(arr, ds, None, False), np.array([[0, 255]], dtype=np.uint8))


def test_jpeg_ls_decoded_by_charls_with_the_same_pixels() -> None:
    pytest.importorskip("jpeg_ls")
    assert rendering._plugin_for(JPEGLSLossless) == "pyjpegls"
    data = open(get_testdata_file("MR_small_jpeg_ls_lossless.dcm"), "rb").read()  # noqa: SIM115
    ds = pydicom.dcmread(BytesIO(data))
    expected = pixel_array(pydicom.dcmread(BytesIO(data)), index=0, raw=True, decoding_plugin="pylibjpeg")
    assert np.array_equal(rendering._frame(ds, 1, raw=True), expected)
    (frame,) = rendering.raw_frames(data, [1])
    assert (
        frame
        == np.ascontiguousarray(expected).astype("<i2" if expected.dtype.kind == "i" else "<u2").tobytes()
    )


def test_preferred_decoder_refusing_falls_back_to_pydicoms_order(monkeypatch) -> None:
    data = open(get_testdata_file("MR_small_jpeg_ls_lossless.dcm"), "rb").read()  # noqa: SIM115
    ds = pydicom.dcmread(BytesIO(data))
    monkeypatch.setattr(rendering, "_preferred_plugin", lambda _ds: "no-such-plugin")
    expected = pixel_array(pydicom.dcmread(BytesIO(data)), index=0, raw=True, decoding_plugin="pylibjpeg")
    assert np.array_equal(rendering._frame(ds, 1, raw=True), expected)
