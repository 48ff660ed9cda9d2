"""An animated GIF written to disk frame by frame, holding no frame in memory.

Pillow's own ``save(save_all=True, append_images=...)`` gathers every frame (converted,
compared with the one before) before it writes any, whatever iterator it is given
(``GifImagePlugin._write_multiple_frames`` in Pillow 10 to 13): a long clip then needs memory
for all of it. :class:`GifWriter` writes each frame when it is added, with Pillow's GIF
encoder (``GifImagePlugin.getheader`` / ``getdata``): the first frame's adaptive palette is
the global colour table, each later frame carries its own (a local colour table), every frame
is a whole frame at offset (0, 0). Layout: GIF89a (the GIF89a specification, W3C/CompuServe
1990): header, logical screen descriptor, global colour table, NETSCAPE2.0 loop extension;
per frame a graphic control extension (its delay) and the image; the trailer ``;``.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from .options import real_number, whole_number


class GifWriter:
    """``with GifWriter(path, duration_ms=100) as gif: gif.add(frame)`` for each frame.

    ``frame``: a PIL RGB image (converted to 256 colours with Pillow's adaptive palette, as
    Pillow's GIF writer converts RGB); every frame must have the first one's size.
    ``duration_ms``: the delay of each frame in milliseconds (GIF stores hundredths of a
    second: the value is rounded down to 10 ms steps); ``loop``: 0 = forever.

    Raises ``ValueError`` for a bad ``duration_ms`` / ``loop`` or a frame of another size.
    A writer that is not closed (or left by an exception) leaves a file without its trailer.
    """

    def __init__(self, path: str | os.PathLike[str], *, duration_ms: float, loop: int = 0) -> None:
        self.duration_ms = real_number("duration_ms", duration_ms, minimum=0)
        self.loop = whole_number("loop", loop, minimum=0)
        if self.loop > 0xFFFF:
            raise ValueError(f"loop must be at most 65535 (a 16-bit field), got {loop}")
        self.path = Path(path)
        self.frames = 0
        """Frames written so far."""
        self._size: tuple[int, int] | None = None
        self._fp: IO[bytes] | None = open(self.path, "wb")  # noqa: SIM115 (closed in close())

    def add(self, frame: Any) -> None:
        """Encode ``frame`` and write it to the file now (nothing of it is kept)."""
        from PIL import GifImagePlugin, Image

        if self._fp is None:
            raise RuntimeError("this GifWriter has been closed")
        if self._size is not None and frame.size != self._size:
            raise ValueError(
                f"frame {self.frames} is {frame.size[0]} x {frame.size[1]} but the GIF is "
                f"{self._size[0]} x {self._size[1]}: every frame must have the first one's size"
            )
        pal = frame.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE)
        params: dict[str, Any] = {"duration": self.duration_ms}
        if self._size is None:
            header, _ = GifImagePlugin.getheader(pal, info={"loop": self.loop, **params})
            for block in header:
                self._fp.write(block)
            self._size = frame.size
        else:
            params["include_color_table"] = True  # this frame's own palette
        for block in GifImagePlugin.getdata(pal, (0, 0), **params):
            self._fp.write(block)
        self._fp.flush()
        self.frames += 1

    def close(self) -> None:
        """Write the trailer and close the file. Idempotent."""
        if self._fp is None:
            return
        fp, self._fp = self._fp, None
        try:
            if self.frames:
                fp.write(b";")
        finally:
            fp.close()

    def __enter__(self) -> GifWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


__all__ = ["GifWriter"]
