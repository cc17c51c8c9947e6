"""Helpers shared by the tests: images with text, real sample photographs."""

from __future__ import annotations

from PIL import Image


def render_text(text: str, size: tuple[int, int] = (640, 200), font_size: int = 40) -> Image.Image:
    """A light image with dark text on it, as a flyer or a meme would have."""
    from PIL import ImageDraw, ImageFont

    image = Image.new("RGB", size, (245, 240, 225))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=font_size)
    y = 20
    for line in text.split("\n"):
        draw.text((20, y), line, fill=(10, 10, 10), font=font)
        y += int(font_size * 1.6)
    return image


def sample_image(name: str) -> Image.Image:
    """A real photograph that ships in scikit-image (astronaut, coffee, chelsea, rocket ...)."""
    from skimage import data

    return Image.fromarray(getattr(data, name)())
