"""Why a backend could not open a file, as one plain sentence (never a library's exception name),
for the error that lists every backend's reason."""

from __future__ import annotations

__all__ = ["plain_reason"]

DIMENSIONS = (
    "a series with more than three dimensions (z-stack, time points or channels), not a brightfield pyramid"
)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0].strip() if text else ""


def plain_reason(err: BaseException) -> str:
    """The reason a backend gave, in words."""
    kind, text = type(err).__name__, _first_line(err)
    if kind == "OpenSlideUnsupportedFormatError":
        return "not a format it reads"
    if kind == "OpenSlideError":
        return f"could not read the file ({text})" if text else "could not read the file"
    if isinstance(err, NotImplementedError) and "ndim" in text:
        return DIMENSIONS
    if kind == "TiffFileError":
        return f"not a readable TIFF ({text})" if text else "not a readable TIFF"
    if isinstance(err, PermissionError):
        return "not allowed to read the file"
    if isinstance(err, IsADirectoryError):
        return "a folder, not a slide file"
    if isinstance(err, IndexError):
        return "no readable image where the file's header points (cut short or damaged)"
    if isinstance(err, (EOFError, MemoryError)) or "truncated" in text.lower():
        return f"the file is cut short or damaged ({text})" if text else "the file is cut short or damaged"
    return text or f"could not open the file ({kind})"
