"""What an uploaded file is, found from its bytes (never from its name or the browser's word).

Images are PNG, JPEG, GIF or WebP, the types OpenAI takes, checked by Pillow;
anything else must be UTF-8 text (code, markdown, CSV, logs). No ORM in here.
"""

import io
import re
import unicodedata
from dataclasses import dataclass

from django.conf import settings
from PIL import Image, UnidentifiedImageError

from catalog.context import Turn, with_files
from catalog.models import AIModel

IMAGE_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif", "WEBP": "image/webp"}
# The signatures of those types, so that a broken image is refused as one rather than taken for text.
MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a")
MAX_PIXELS = 40_000_000  # far past what the provider uses (it scales to 2048×2048), short of a decompression bomb
TEXT_TYPE = "text/plain; charset=utf-8"


class FileRefused(Exception):
    """The message is for people."""


@dataclass(frozen=True)
class Checked:
    kind: str  # "text" or "image" (chat.models.Attachment.Kind)
    name: str
    content_type: str
    width: int | None = None
    height: int | None = None


def clean_name(name: object) -> str:
    """A display name: the last path part, without control characters or the quotes and brackets
    that delimit a file for the model (catalog/context.py, `with_files`)."""
    text = str(name or "").replace("\\", "/").rsplit("/", 1)[-1]
    text = "".join(c for c in text if unicodedata.category(c)[0] != "C")
    text = re.sub(r'["<>]', "_", text).strip()
    return text[:200] or "file"


def _is_image(data: bytes) -> bool:
    return data.startswith(MAGIC) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")


def file_check(*, name: object, data: bytes) -> Checked:
    """What the file is, or FileRefused saying why it cannot be attached."""
    limit = settings.ATTACHMENT_MAX_BYTES
    if len(data) > limit:
        raise FileRefused(f"{clean_name(name)} is {size_label(len(data))}; a file may be at most {size_label(limit)}.")
    if not data:
        raise FileRefused(f"{clean_name(name)} is empty.")
    if _is_image(data):
        return _image_check(clean_name(name), data)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = None
    if text is None or "\x00" in text:
        raise FileRefused(
            f"{clean_name(name)} is neither a text file (UTF-8) nor an image (PNG, JPEG, GIF or WebP), so it cannot be attached."
        )
    return Checked(kind="text", name=clean_name(name), content_type=TEXT_TYPE)


def _image_check(name: str, data: bytes) -> Checked:
    try:
        with Image.open(io.BytesIO(data)) as image:
            kind, (width, height) = image.format, image.size
            if kind not in IMAGE_TYPES:
                raise FileRefused(f"{name}: only PNG, JPEG, GIF and WebP images can be attached.")
            if width * height > MAX_PIXELS:
                raise FileRefused(f"{name} is {width}×{height} pixels; an image may have at most {MAX_PIXELS // 1_000_000} million.")
            image.verify()  # reads the whole file: a truncated or corrupt one fails here
    except FileRefused:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise FileRefused(f"{name} looks like an image but cannot be read; it may be damaged.") from None
    return Checked(kind="image", name=name, content_type=IMAGE_TYPES[kind], width=width, height=height)


def file_text(data: bytes) -> str:
    """The text of a stored text file, as checked on upload."""
    return bytes(data).decode("utf-8-sig")


def turn_for(*, role: str, text: str, attachments: list, model: AIModel) -> Turn:
    """A turn for catalog/context.py: the text files' text in the content, the images by size.

    `attachments` are chat.models.Attachment rows (an image's `data` need not be loaded).
    Images of an earlier turn, for a model that takes none, are named in the text instead.
    """
    texts = [(a.name, file_text(a.data)) for a in attachments if a.kind == "text"]
    images = [a for a in attachments if a.kind == "image"]
    content = with_files(text, texts)
    if images and not model.supports_images:
        content += "".join(f"\n\n[Image {a.name} not shown: {model.name} does not take images]" for a in images)
        images = []
    return {"role": role, "content": content, "images": [{"id": a.id, "width": a.width, "height": a.height} for a in images]}


def size_label(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    if n < 1024 * 1024:
        return f"{n / 1024:.0f} KB"
    return f"{n / (1024 * 1024):.1f} MB"
