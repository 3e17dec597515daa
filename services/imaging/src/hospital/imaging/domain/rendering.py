"""Rendered images and raw frames for WADO-RS (PS3.18 8.3.5 and 9.4), decoded with pydicom's pixel-data
plugins (pylibjpeg with libjpeg, openjpeg and rle: JPEG baseline/extended/lossless, JPEG-LS, JPEG 2000, RLE;
numpy for native syntaxes).

Greyscale: Modality LUT (rescale), then the VOI window (the request's ``window=center,width[,function]``,
else the first window in the file, else the frame's range), linear, linear-exact or sigmoid (PS3.3
C.11.2.1.2); MONOCHROME1 is inverted so that it looks as intended. Colour (RGB, YBR_* after decoding, palette
colour): converted to RGB and scaled to 8 bits. ``viewport=width,height`` fits the image inside that box
keeping its aspect ratio; ``quality`` (1-100) sets the JPEG quality. A frame that cannot be decoded raises
:class:`NotRenderable` with the reason.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from io import BytesIO
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels import apply_modality_lut, get_decoder, pixel_array
from pydicom.pixels.processing import apply_color_lut
from pydicom.uid import UID

MEDIA = {"image/jpeg": "JPEG", "image/png": "PNG"}


class NotRenderable(ValueError):
    """The instance has no pixel data, or a frame cannot be decoded."""


class NoSuchFrame(LookupError):
    """A frame number outside 1..NumberOfFrames."""


@dataclass(frozen=True, slots=True)
class RenderOptions:
    window: tuple[float, float, str] | None = None  # center, width, function
    viewport: tuple[int, int] | None = None
    quality: int = 90
    media_type: str = "image/jpeg"


def parse_window(value: str) -> tuple[float, float, str]:
    parts = [p.strip() for p in value.split(",")]
    if len(parts) not in (2, 3):
        raise ValueError("window: center,width[,function]")
    center, width = float(parts[0]), float(parts[1])
    function = (parts[2] if len(parts) == 3 else "linear").lower()
    if function not in ("linear", "linear-exact", "sigmoid") or not np.isfinite([center, width]).all():
        raise ValueError("window: center,width[,linear|linear-exact|sigmoid]")
    if width <= 0 or (width < 1 and function == "linear"):
        raise ValueError("window width must be positive (at least 1 for linear)")
    return center, width, function


def parse_viewport(value: str) -> tuple[int, int]:
    parts = [p.strip() for p in value.split(",")]
    if len(parts) not in (2, 6) or not all(p.isdigit() for p in parts[:2]):
        raise ValueError("viewport: width,height")
    width, height = int(parts[0]), int(parts[1])
    if not (1 <= width <= 4096 and 1 <= height <= 4096):
        raise ValueError("viewport width and height must be 1 to 4096")
    return width, height


def frame_count(ds: Dataset) -> int:
    try:
        return max(int(ds.get("NumberOfFrames", 1) or 1), 1)
    except (TypeError, ValueError):
        return 1


def load(data: bytes) -> Dataset:
    try:
        ds = pydicom.dcmread(BytesIO(data))
    except Exception as exc:  # noqa: BLE001 - whatever pydicom raises on a damaged file
        raise NotRenderable(f"unreadable file: {exc}") from None
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise NotRenderable("the instance has no pixel data")
    return ds


# Decoders preferred to pydicom's default order where both are installed, measured on the 512x512 CT
# phantom of tests/bench/imaging_retrieve.py: CharLS (pyjpegls) decodes JPEG-LS in 5.7 ms, libjpeg
# (pylibjpeg) in 21 ms, the same pixels.
PREFERRED_PLUGINS = ("pyjpegls",)


@functools.lru_cache(maxsize=64)
def _plugin_for(syntax: str) -> str:
    try:
        available = get_decoder(UID(syntax)).available_plugins
    except (NotImplementedError, ValueError):
        return ""
    return next((p for p in PREFERRED_PLUGINS if p in available), "")


def _preferred_plugin(ds: Dataset) -> str:
    syntax = ds.file_meta.get("TransferSyntaxUID") if "file_meta" in ds.__dict__ else None
    return _plugin_for(str(syntax)) if syntax else ""


def _frame(ds: Dataset, number: int, *, raw: bool) -> np.ndarray[Any, Any]:
    frames = frame_count(ds)
    if not 1 <= number <= frames:
        raise NoSuchFrame(f"frame {number} does not exist (the instance has {frames})")
    plugin = _preferred_plugin(ds)
    try:
        if plugin:
            try:
                return pixel_array(ds, index=number - 1, raw=raw, decoding_plugin=plugin)
            except Exception:  # noqa: BLE001 - the preferred decoder refused: pydicom's own order next
                pass
        return pixel_array(ds, index=number - 1, raw=raw)
    except Exception as exc:  # noqa: BLE001 - decoder errors differ by plugin
        syntax = ds.file_meta.get("TransferSyntaxUID", "?")
        name = getattr(syntax, "name", str(syntax))
        raise NotRenderable(f"frame {number} cannot be decoded ({name}): {exc}") from None


def raw_frames(data: bytes, numbers: list[int]) -> list[bytes]:
    """The frames, decoded to native little-endian pixel bytes (as stored, no colour conversion)."""
    ds = load(data)
    out = []
    for number in numbers:
        arr = np.ascontiguousarray(_frame(ds, number, raw=True))
        out.append(arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes())
    return out


def _window(
    arr: np.ndarray[Any, Any], ds: Dataset, window: tuple[float, float, str] | None
) -> np.ndarray[Any, Any]:
    if window is None:
        center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
        if center is not None and width is not None:
            c = float(center[0] if isinstance(center, MultiValue) else center)
            w = float(width[0] if isinstance(width, MultiValue) else width)
            window = (c, max(w, 1.0), "linear")
    if window is None:
        low, high = float(arr.min()), float(arr.max())
        return np.clip((arr - low) / max(high - low, 1e-6), 0, 1)
    c, w, function = window
    if function == "sigmoid":
        return 1.0 / (1.0 + np.exp(-4.0 * (arr - c) / w))
    if function == "linear-exact":
        return np.clip((arr - (c - w / 2)) / w, 0, 1)
    return np.clip((arr - (c - 0.5)) / (w - 1) + 0.5, 0, 1)  # PS3.3 C.11.2.1.2.1


def _to_8bit(
    arr: np.ndarray[Any, Any], ds: Dataset, window: tuple[float, float, str] | None, invert: bool
) -> np.ndarray[Any, Any]:
    """Modality LUT, VOI window, MONOCHROME1 inversion, to 8 bits, computed on every value of `arr`."""
    values = apply_modality_lut(arr, ds).astype(np.float64)
    scaled = _window(values, ds, window)
    if invert:
        scaled = 1.0 - scaled
    return (scaled * 255 + 0.5).astype(np.uint8)


def _grey(
    arr: np.ndarray[Any, Any], ds: Dataset, window: tuple[float, float, str] | None, invert: bool
) -> np.ndarray[Any, Any]:
    """The greyscale frame in 8 bits. Integer pixels with a linear modality transform (rescale slope and
    intercept, no Modality LUT Sequence) go through a lookup table built over the frame's range of
    stored values (at most one entry per pixel), the same arithmetic on each distinct value instead of
    each pixel: identical output, a third of the CPU on a 512x512 CT frame. Anything else is computed
    per pixel."""
    if arr.dtype.kind in "iu" and "ModalityLUTSequence" not in ds:
        low, high = int(arr.min()), int(arr.max())
        if high - low < arr.size:
            # The range's ends are present pixels and the transform is monotonic, so a window taken
            # from the frame's own range (no window given or in the file) is the same over the table.
            table = _to_8bit(np.arange(low, high + 1, dtype=np.int64), ds, window, invert)
            if low == 0:
                return table[arr]
            # unsigned pixels stay in range; signed ones are widened so that the difference cannot wrap
            return table[arr - low if arr.dtype.kind == "u" else np.subtract(arr, low, dtype=np.intp)]
    return _to_8bit(arr, ds, window, invert)


def render(data: bytes, frame: int, options: RenderOptions) -> bytes:
    from PIL import Image

    ds = load(data)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip()
    arr = _frame(ds, frame, raw=False)
    if photometric.startswith("MONOCHROME"):
        if arr.ndim != 2:
            raise NotRenderable(f"unexpected shape {arr.shape} for {photometric}")
        image = Image.fromarray(_grey(arr, ds, options.window, photometric == "MONOCHROME1"), mode="L")
    else:
        if photometric == "PALETTE COLOR":
            arr = apply_color_lut(arr, ds)
        if arr.ndim != 3 or arr.shape[-1] != 3:
            raise NotRenderable(f"unexpected shape {arr.shape} for {photometric}")
        if arr.dtype != np.uint8:
            top = (
                float(2 ** int(ds.get("BitsStored", 8) or 8) - 1)
                if photometric != "PALETTE COLOR"
                else 65535.0
            )
            arr = np.clip(arr.astype(np.float64) / top * 255 + 0.5, 0, 255).astype(np.uint8)
        image = Image.fromarray(arr, mode="RGB")
    if options.viewport:
        image.thumbnail(options.viewport, Image.Resampling.LANCZOS)
    out = BytesIO()
    fmt = MEDIA[options.media_type]
    if fmt == "JPEG":
        image.save(out, format="JPEG", quality=options.quality)
    else:
        image.save(out, format="PNG")
    return out.getvalue()


# --- WADO-RS bulk data (metadata BulkDataURIs and the bulkdata resource) ---

BULK_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})  # Pixel Data, Float / Double Float Pixel Data
BULK_THRESHOLD = 1024  # binary values longer than this are given by reference (BulkDataURI)


class NoSuchAttribute(LookupError):
    """A bulk data path naming no binary attribute of the instance."""


def _bulk_paths(ds: Dataset, prefix: str = "") -> dict[int, str]:
    """id(element) -> its bulk data path (``00431028``, ``00540016/0/00181078``) for every binary element."""
    out: dict[int, str] = {}
    for elem in ds:
        tag = f"{int(elem.tag):08X}"
        if elem.VR == "SQ":
            for i, item in enumerate(elem.value or []):
                out.update(_bulk_paths(item, f"{prefix}{tag}/{i}/"))
        elif elem.VR in BULK_VRS:
            out[id(elem)] = prefix + tag
    return out


def metadata_json(data: bytes, instance_url: str) -> dict[str, Any]:
    """DICOM JSON of an instance: binary values over :data:`BULK_THRESHOLD` bytes, and pixel data always,
    as ``BulkDataURI`` ``<instance_url>/bulkdata/<path>`` (resolved by :func:`bulk_value`)."""
    ds = pydicom.dcmread(BytesIO(data))
    paths = _bulk_paths(ds)

    def uri(elem: Any) -> str:
        return f"{instance_url}/bulkdata/{paths[id(elem)]}"

    out: dict[str, Any] = ds.to_json_dict(bulk_data_threshold=BULK_THRESHOLD, bulk_data_element_handler=uri)
    for tag in PIXEL_TAGS:
        key = f"{tag:08X}"
        if key in out and "InlineBinary" in out[key]:
            out[key] = {"vr": out[key]["vr"], "BulkDataURI": f"{instance_url}/bulkdata/{key}"}
    return out


def bulk_value(data: bytes, path: str) -> bytes:
    """The value a bulk data path names: a binary attribute's bytes as stored (little endian), and pixel
    data as native little-endian pixels, every frame in order (compressed pixel data decoded)."""
    parts = [p for p in path.strip("/").split("/") if p]
    if not parts or len(parts) % 2 == 0 or len(parts) > 21:
        raise NoSuchAttribute(f"bulk data path {path!r}: TAG or SEQTAG/index/.../TAG")
    try:
        tags = [int(p, 16) for p in parts[0::2]]
        indexes = [int(p) for p in parts[1::2]]
    except ValueError:
        raise NoSuchAttribute(f"bulk data path {path!r}: tags are 8 hexadecimal digits") from None
    try:
        ds = pydicom.dcmread(BytesIO(data))
    except Exception as exc:  # noqa: BLE001 - whatever pydicom raises on a damaged file
        raise NotRenderable(f"unreadable file: {exc}") from None
    if len(tags) == 1 and tags[0] in PIXEL_TAGS and tags[0] in ds:
        if tags[0] == 0x7FE00010 and ds.file_meta.TransferSyntaxUID.is_compressed:
            return b"".join(raw_frames(data, list(range(1, frame_count(ds) + 1))))
        return bytes(ds[tags[0]].value)
    item: Any = ds
    for depth, tag in enumerate(tags):
        if tag not in item:
            raise NoSuchAttribute(f"the instance has no attribute {path!r}")
        elem = item[tag]
        if depth == len(tags) - 1:
            if elem.VR not in BULK_VRS:
                raise NoSuchAttribute(f"{path!r} is not a binary attribute ({elem.VR})")
            return bytes(elem.value or b"")
        if elem.VR != "SQ" or not 0 <= indexes[depth] < len(elem.value or []):
            raise NoSuchAttribute(f"the instance has no item {path!r}")
        item = elem.value[indexes[depth]]
    raise NoSuchAttribute(path)  # pragma: no cover - the loop returns or raises
