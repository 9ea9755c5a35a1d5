"""Image files with embedded provenance, and the grids that show a result in Jupyter.

Where the record goes:

* PNG: an iTXt chunk with key ``"aigc"`` (UTF-8, compressed when over 1 KiB).
* WebP and JPEG: EXIF ``UserComment`` (tag 0x9286 in the Exif IFD), with the EXIF character code
  ``ASCII`` for ASCII records and ``UNICODE`` (UTF-16 with a byte-order mark) otherwise.
* Anything the file cannot hold (a JPEG's EXIF is capped at 64 KiB) goes to a ``<file name>.json``
  sidecar. Every embedded record is read back before the file is committed; one that does not
  read back exactly is dropped from the file and written to the sidecar instead.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import math
import os
from collections.abc import Callable
from pathlib import Path

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from aigc._media.provenance import save_with_record
from aigc.errors import InvalidRequest

__all__ = ["grid_html", "grid_png", "read_image_record", "save_image"]

logger = logging.getLogger(__name__)

PNG_KEY = "aigc"
EXIF_IFD = 0x8769
USER_COMMENT = 0x9286
_ASCII_CODE = b"ASCII\0\0\0"
_UNICODE_CODE = b"UNICODE\0"
_JPEG_EXIF_LIMIT = 65_000  # an APP1 segment holds 65,533 bytes, including the "Exif\0\0" header
_PNG_MODES = frozenset({"1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"})
_FORMATS = {".png": "PNG", ".webp": "WEBP", ".jpg": "JPEG", ".jpeg": "JPEG"}
_MIN_DISPLAY = 128  # grids upscale smaller images (nearest neighbour) to at least this many pixels


def has_alpha(image: Image.Image) -> bool:
    """Whether ``image`` has an alpha channel or a transparent palette entry."""
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info


def image_format(path: Path) -> str:
    """The Pillow format name for ``path``'s suffix; :class:`InvalidRequest` if unsupported."""
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InvalidRequest("path", str(path), "unsupported image format", "use .png, .webp or .jpg")
    return fmt


def encode_user_comment(record: str) -> bytes:
    """EXIF ``UserComment`` bytes: the 8-byte character code, then the text."""
    if record.isascii():
        return _ASCII_CODE + record.encode("ascii")
    return _UNICODE_CODE + b"\xfe\xff" + record.encode("utf-16-be")


def decode_user_comment(value: bytes | str) -> str | None:
    """The text of an EXIF ``UserComment`` value, or ``None`` when it is empty."""
    if isinstance(value, str):
        text = value
    else:
        code, data = value[:8], value[8:]
        if code == _UNICODE_CODE:
            if data[:2] in (b"\xfe\xff", b"\xff\xfe"):
                text = data.decode("utf-16")
            else:  # no byte-order mark: text mostly below U+0100 has its zero bytes first in big-endian
                big = data[0:1] == b"\0"
                text = data.decode("utf-16-be" if big else "utf-16-le", errors="replace")
        else:
            text = data.decode("utf-8", errors="replace")
    text = text.rstrip("\0")
    return text or None


def exif_with_record(record: str) -> Image.Exif:
    """A new EXIF block holding ``record`` in ``UserComment``."""
    exif = Image.Exif()
    exif.get_ifd(EXIF_IFD)[USER_COMMENT] = encode_user_comment(record)
    return exif


def exif_record(image: Image.Image) -> str | None:
    """The record in an opened image's EXIF ``UserComment``, or ``None``."""
    value = image.getexif().get_ifd(EXIF_IFD).get(USER_COMMENT)
    if not isinstance(value, (bytes, str)):
        return None
    return decode_user_comment(value)


def _write_image(image: Image.Image, target: Path, fmt: str, record: str | None) -> bool:
    """Encode ``image`` to ``target``; return whether ``record`` was embedded."""
    embedded = record is not None
    if fmt == "PNG":
        info = PngInfo()
        if record is not None:
            info.add_itxt(PNG_KEY, record, zip=len(record) > 1024)
        if image.mode not in _PNG_MODES:
            image = image.convert("RGBA" if has_alpha(image) else "RGB")
        image.save(target, format="PNG", pnginfo=info)
        return embedded
    exif = b""
    if record is not None:
        exif = exif_with_record(record).tobytes()
        if fmt == "JPEG" and len(exif) > _JPEG_EXIF_LIMIT:
            exif, embedded = b"", False
    if fmt == "WEBP":
        image.save(target, format="WEBP", lossless=True, exact=True, exif=exif)
    else:
        if image.mode not in ("L", "RGB", "CMYK"):
            image = image.convert("RGB")
        image.save(target, format="JPEG", quality=95, exif=exif)
    return embedded


def save_image(image: Image.Image, path: str | os.PathLike[str], record: str | None, *,
               finish: Callable[[Path], None] | None = None) -> list[Path]:
    """Save ``image`` atomically with its provenance record; the format follows the suffix.

    PNG and WebP are lossless (pixels read back exactly); JPEG is saved at quality 95, with any alpha
    channel dropped.

    Args:
        image: the image.
        path: a ``.png``, ``.webp``, ``.jpg`` or ``.jpeg`` file name.
        record: the provenance record (JSON text), or ``None`` for none.
        finish: called with the written temporary file before it replaces ``path`` (C2PA signing).

    Returns:
        The paths written: the image, then its ``.json`` sidecar if the record needed one.

    Raises:
        InvalidRequest: unsupported suffix, or ``image`` is not a PIL image.

    Example:
        >>> save_image(img, Path("boot.png"), record_json)  # doctest: +SKIP
        [PosixPath('boot.png')]
    """
    path = Path(path)
    fmt = image_format(path)
    if not isinstance(image, Image.Image):
        raise InvalidRequest("image", type(image).__name__, "not a PIL image", "pass a PIL.Image.Image")
    with save_with_record(path, record) as pending:
        pending.embedded = _write_image(image, pending.tmp, fmt, record)
        if pending.embedded and read_image_record(pending.tmp) != record:
            logger.info("the record did not read back from %s; moving it to a sidecar", path.name)
            pending.embedded = _write_image(image, pending.tmp, fmt, None)
        if finish is not None:
            finish(pending.tmp)
    return pending.written


def read_image_record(path: str | os.PathLike[str]) -> str | None:
    """The record embedded in an image file (PNG text chunk or EXIF), or ``None``.

    Args:
        path: an image file; its content, not its suffix, decides where to look.

    Returns:
        The record's JSON text, or ``None`` when the file holds none (sidecars are not consulted).

    Raises:
        OSError: the file is missing or not an image Pillow can open.

    Example:
        >>> read_image_record("boot.png")  # doctest: +SKIP
        '{"aigc_version": ...}'
    """
    with Image.open(path) as im:
        if im.format == "PNG":
            value = im.info.get(PNG_KEY)
            if value is None:  # text chunks after the image data only show up once it is read
                value = getattr(im, "text", {}).get(PNG_KEY)
            return str(value) if isinstance(value, str) and value else None
        return exif_record(im)


def _display_scale(images: list[Image.Image]) -> int:
    side = max(max(im.size) for im in images)
    return 1 if side >= _MIN_DISPLAY else math.ceil(_MIN_DISPLAY / max(side, 1))


def _png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    if image.mode not in _PNG_MODES:
        image = image.convert("RGBA" if has_alpha(image) else "RGB")
    image.save(buf, format="PNG")
    return buf.getvalue()


def _check_images(images: list[Image.Image]) -> None:
    if not images:
        raise InvalidRequest("images", images, "no images to show", "pass at least one image")
    for im in images:
        if not isinstance(im, Image.Image):
            raise InvalidRequest(
                "images", type(im).__name__, "not a PIL image", "pass PIL.Image.Image objects"
            )


def grid_png(images: list[Image.Image]) -> bytes:
    """Tile ``images`` into a near-square grid and return it as PNG bytes.

    Images under 128 pixels are enlarged by a whole factor with nearest-neighbour sampling, so a
    32x32 sample stays crisp and visible. One image gives just that image.

    Args:
        images: one or more images (any sizes; each sits top-left in its cell).

    Returns:
        PNG file content.

    Raises:
        InvalidRequest: ``images`` is empty.

    Example:
        >>> png = grid_png([img] * 4)  # doctest: +SKIP
    """
    _check_images(images)
    scale = _display_scale(images)
    alpha = any(has_alpha(im) for im in images)
    mode = "RGBA" if alpha else "RGB"
    tiles = [im.convert(mode) for im in images]
    if scale > 1:
        tiles = [t.resize((t.width * scale, t.height * scale), Image.Resampling.NEAREST) for t in tiles]
    if len(tiles) == 1:
        return _png_bytes(tiles[0])
    cols = math.ceil(math.sqrt(len(tiles)))
    rows = math.ceil(len(tiles) / cols)
    cell_w = max(t.width for t in tiles)
    cell_h = max(t.height for t in tiles)
    gap = 4
    background = (255, 255, 255, 0) if alpha else (255, 255, 255)
    grid = Image.new(mode, (cols * cell_w + (cols - 1) * gap, rows * cell_h + (rows - 1) * gap), background)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        grid.paste(tile, (c * (cell_w + gap), r * (cell_h + gap)))
    return _png_bytes(grid)


def grid_html(images: list[Image.Image], captions: list[str], *, title: str = "") -> str:
    """HTML showing each image (inline base64 PNG) above its caption, with an optional title.

    Small images are enlarged by the browser with pixelated scaling, not in the embedded data.

    Args:
        images: one or more images.
        captions: one caption per image (plain text; it is escaped).
        title: a heading shown above the images (plain text; escaped).

    Returns:
        An HTML fragment.

    Raises:
        InvalidRequest: ``images`` is empty or ``captions`` has a different length.

    Example:
        >>> grid_html([img], ["seed 7"], title="an ankle boot")  # doctest: +SKIP
        '<div><div ...>an ankle boot</div><figure ...><img src="data:image/png;base64,...'
    """
    _check_images(images)
    if len(captions) != len(images):
        raise InvalidRequest(
            "captions",
            len(captions),
            f"{len(images)} images but {len(captions)} captions",
            "pass one caption per image",
        )
    scale = _display_scale(images)
    parts = ["<div>"]
    if title:
        parts.append(f"<div style='font-weight:bold;margin:4px'>{html.escape(title)}</div>")
    for im, caption in zip(images, captions, strict=True):
        data = base64.b64encode(_png_bytes(im)).decode("ascii")
        parts.append(
            "<figure style='display:inline-block;margin:4px;text-align:center'>"
            f"<img src='data:image/png;base64,{data}' width='{im.width * scale}' height='{im.height * scale}'"
            " style='image-rendering:pixelated' alt=''>"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
    parts.append("</div>")
    return "".join(parts)
