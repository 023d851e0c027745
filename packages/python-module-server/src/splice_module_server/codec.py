"""The value codec of the Invoke payload: msgpack with the extensions of proto/INVOKE.md, section 7.

A reader and a writer of our own (encoder.py, decoder.py), because a standard msgpack library cannot
read the contract's *tags* (``d4 <type> 00`` followed by a separate value that belongs to the
extension) and writes integers and floats by Python's rules rather than JavaScript's. The mapping
between wire values and Python values is in the package README ("Values"); the golden vectors of
``proto/vectors/`` check it both ways (tests/test_codec_vectors.py).

Codec state lives in instances: an :class:`Encoder` is given the ``export_ref`` hook that turns a
value that cannot travel by value into a remote reference; a :class:`Decoder` counts the keyword
arguments, references and slots it read, which the request checks use.
"""

from __future__ import annotations

from typing import Any

from .decoder import Decoder
from .encoder import Encoder, ExportRef
from .wire import MAX_DEPTH, describe

__all__ = ["MAX_DEPTH", "Decoder", "Encoder", "ExportRef", "decode", "describe", "encode"]


def encode(value: Any, export_ref: ExportRef | None = None) -> bytes:
    """The canonical bytes of ``value``; see :class:`Encoder`."""
    return Encoder(export_ref).encode(value)


def decode(data: bytes | bytearray | memoryview) -> Any:
    """The value ``data`` holds; see :class:`Decoder`."""
    return Decoder().decode(data)
