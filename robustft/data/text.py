"""Text files' encodings: a byte-order mark (UTF-8, UTF-16, UTF-32) wins, else the
configured codec (``data.encoding``), else UTF-8; undecodable bytes are reported with their
line and byte offset and the setting that reads the file."""

from __future__ import annotations

import codecs
import dataclasses
import io
from pathlib import Path
from typing import IO

from robustft.errors import InputFileError

# byte-order marks, longest first (UTF-32 LE's starts with UTF-16 LE's)
BOMS = ((codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"),
        (codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"),
        (codecs.BOM_UTF16_BE, "utf-16-be"))
BOM_OF = {codec: bom for bom, codec in BOMS}


@dataclasses.dataclass(frozen=True)
class TextEncoding:
    """How a text file is encoded: a codec, and whether a byte-order mark precedes it."""

    codec: str = "utf-8"
    bom: bool = False

    @property
    def bom_bytes(self) -> bytes:
        return BOM_OF[self.codec] if self.bom else b""


def text_encoding(path: Path, configured: str | None = None) -> TextEncoding:
    """The encoding of a text file: its byte-order mark's (a BOM always wins), else
    ``configured`` (``data.encoding``), else UTF-8."""
    with path.open("rb") as f:
        head = f.read(4)
    for bom, codec in BOMS:
        if head.startswith(bom):
            return TextEncoding(codec, True)
    return TextEncoding(configured or "utf-8")


def open_text(path: Path, enc: TextEncoding, newline: str | None = None) -> IO[str]:
    """``path`` opened for reading text in ``enc`` (its BOM skipped), strict decoding."""
    f = path.open("rb")
    f.seek(len(enc.bom_bytes))
    return io.TextIOWrapper(f, encoding=enc.codec, errors="strict", newline=newline)


def create_text(path: Path, enc: TextEncoding, newline: str | None = None) -> IO[str]:
    """``path`` created for writing text in ``enc``, its BOM first."""
    f = path.open("wb")
    f.write(enc.bom_bytes)
    return io.TextIOWrapper(f, encoding=enc.codec, errors="strict", newline=newline)


def decode_error(path: Path, enc: TextEncoding) -> InputFileError:
    """The first undecodable bytes of ``path``: an error naming line, byte offset and the
    setting that reads the file."""
    decoder = codecs.getincrementaldecoder(enc.codec)("strict")
    pos, line = len(enc.bom_bytes), 1
    with path.open("rb") as f:
        f.seek(pos)
        while chunk := f.read(1 << 16):
            pending = decoder.getstate()[0]
            try:
                line += decoder.decode(chunk).count("\n")
            except UnicodeDecodeError as e:
                data = pending + chunk
                line += codecs.decode(data[:e.start], enc.codec, "replace").count("\n")
                at, bad, why = pos - len(pending) + e.start, data[e.start:e.end], e.reason
                break
            pos += len(chunk)
        else:
            return InputFileError(f"{path}: cannot decode it as {enc.codec}")
    other = "cp1252" if enc.codec.replace("_", "-").lower() in ("latin-1", "latin1",
                                                                  "iso-8859-1") else "latin-1"
    return InputFileError(
        f"{path}: line {line}, byte offset {at}: bytes {bad.hex(' ')} are not valid "
        f"{enc.codec} ({why}); the file is in another encoding: name it in the config, "
        f"e.g. data.encoding: {other} (or cp1252, utf-16, …)")
