"""Image intake: every accepted input and mode, EXIF orientation, and clear refusals."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from pipeline.images import ImageTooLargeError, load_image


def _encoded(image: Image.Image, fmt: str, **save_kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save_kwargs)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("mode", "fmt"),
    [("L", "PNG"), ("LA", "PNG"), ("P", "PNG"), ("RGBA", "PNG"), ("CMYK", "JPEG"), ("I;16", "PNG"), ("RGB", "WEBP")],
)
def test_every_mode_becomes_rgb(mode, fmt, tmp_path):
    source = Image.new("RGB", (20, 10), (200, 40, 40)).convert(mode)
    path = tmp_path / f"picture.{fmt.lower()}"
    path.write_bytes(_encoded(source, fmt))
    image = load_image(path)
    assert image.mode == "RGB"
    assert image.size == (20, 10)


def test_palette_transparency_composites_on_white():
    source = Image.new("P", (4, 4), 0)
    source.putpalette([0, 0, 0] + [255, 0, 0] * 255)
    source.info["transparency"] = 0  # palette entry 0 (black) is transparent
    image = load_image(_encoded(source, "PNG", transparency=0))
    assert image.getpixel((0, 0)) == (255, 255, 255)


def test_rgba_half_transparent_is_blended_on_white():
    source = Image.new("RGBA", (2, 2), (0, 0, 0, 128))
    assert load_image(source).getpixel((0, 0)) == (127, 127, 127)


def test_sixteen_bit_grey_keeps_its_contrast():
    array = np.array([[0, 32768, 65535]], dtype=np.uint16)
    image = load_image(Image.fromarray(array, mode="I;16"))
    assert [image.getpixel((x, 0))[0] for x in range(3)] == [0, 128, 255]


def test_exif_orientation_is_applied(tmp_path):
    # A 30x10 landscape image tagged "rotate 90 CW" (orientation 6) must come out 10x30 portrait.
    source = Image.new("RGB", (30, 10), (10, 200, 10))
    source.paste((255, 0, 0), (0, 0, 5, 5))  # a red top-left corner, large enough to survive JPEG
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    source.save(path, exif=exif, quality=100)
    image = load_image(path)
    assert image.size == (10, 30)
    red, green, _ = image.getpixel((8, 1))  # the top-left corner moved to the top-right
    assert red > 200 and green < 80


def test_arrays_of_every_shape():
    assert load_image(np.zeros((5, 7), dtype=np.uint8)).size == (7, 5)
    assert load_image(np.zeros((5, 7, 3), dtype=np.uint8)).size == (7, 5)
    assert load_image(np.full((5, 7, 4), 255, dtype=np.uint8)).getpixel((0, 0)) == (255, 255, 255)
    with pytest.raises(ValueError, match="dtype uint8"):
        load_image(np.zeros((5, 7, 3), dtype=np.float32))
    with pytest.raises(ValueError, match=r"shaped \[H, W\]"):
        load_image(np.zeros((5, 7, 2), dtype=np.uint8))


def test_truncated_jpeg(tmp_path):
    data = _encoded(Image.effect_noise((64, 64), 50).convert("RGB"), "JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"broken image: 'cut.jpg' could not be decoded"):
        load_image(path)


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match=r"not an image: 'empty.png' is empty \(0 bytes\)"):
        load_image(path)
    with pytest.raises(ValueError, match="the data is empty"):
        load_image(b"")


def test_text_file_named_jpg(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is not a photo\n")
    with pytest.raises(ValueError, match=r"not an image: 'notes.jpg' is not in an image format"):
        load_image(path)


def test_missing_path(tmp_path):
    with pytest.raises(ValueError, match="no image file at"):
        load_image(tmp_path / "nowhere.png")


def test_pixel_limit(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.new("RGB", (200, 100)).save(path)
    with pytest.raises(
        ImageTooLargeError,
        match=r"too large: 'big.png' is 200x100 = 20,000 pixels, the limit is 19,999 \(the max_pixels argument\)",
    ):
        load_image(path, max_pixels=19_999)
    assert load_image(path, max_pixels=20_000).size == (200, 100)
    monkeypatch.setenv("PIPELINE_MAX_PIXELS", "100")
    with pytest.raises(ValueError, match=r"the limit is 100 \(set PIPELINE_MAX_PIXELS to change it\)"):
        load_image(path)
    monkeypatch.setenv("PIPELINE_MAX_PIXELS", "lots")
    with pytest.raises(ValueError, match="PIPELINE_MAX_PIXELS must be an integer of at least 1, got 'lots'"):
        load_image(path)


def test_wrong_type():
    with pytest.raises(TypeError, match="got int"):
        load_image(42)


def test_an_upright_rgb_image_is_not_copied_again():
    # The combined pipeline loads once and hands the result to both halves: a second intake must be free.
    image = load_image(np.zeros((8, 8, 3), dtype=np.uint8))
    assert load_image(image) is image
