"""Read a GGUF file's header key/values without loading it: fast, and safe on malformed files.

llama.cpp may abort the whole process on some malformed files, so the llama.cpp backend checks the
header here first; reading only the header also makes metadata look-ups cheap (about 60 ms for a
98 MB model, where `gguf.GGUFReader` maps every tensor and takes seconds). `read_gguf_contents`
lists every key/value and tensor for a rewrite (the adapter merge) in plain Python values:
`gguf.GGUFReader` keeps each vocabulary string as numpy views, 160 MB for a 49,152-token one.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

#: Our key/values in a GGUF header (`metaaligner.prompt_format`, ...): arrays are kept for these.
GGUF_PREFIX = "metaaligner."

_SCALARS = {
    0: "B",
    1: "b",
    2: "H",
    3: "h",
    4: "I",
    5: "i",
    6: "f",
    7: "?",
    10: "Q",
    11: "q",
    12: "d",
}
_STRING, _ARRAY = 8, 9
#: Where tensor data starts when `general.alignment` does not say.
_ALIGNMENT = 32
_TOKENS = "tokenizer.ggml.tokens"
#: Not a GGUF key: how many <0xNN> byte tokens the vocabulary has (read in place of the tokens).
BYTE_TOKENS = "tokenizer.ggml.tokens:byte_tokens"
_BYTE_NAMES = frozenset(f"<0x{b:02X}>" for b in range(256))


def read_gguf_header(path: str | os.PathLike[str], field: str = "model") -> dict[str, Any]:
    """The key/values of a GGUF file's header (arrays kept only for `metaaligner.*` keys; the
    token list is replaced by its count of byte tokens).

    Raises ValueError naming `field` when the file is not GGUF, is truncated, or has no
    architecture. Reads only the header, so it is fast even for multi-GB files.
    """
    with _mapped(path, field) as data, _damage(path, field):
        header = _parse_header(data)
    _check_architecture(path, field, header)
    return header


@contextmanager
def _mapped(path: str | os.PathLike[str], field: str) -> Iterator[mmap.mmap]:
    """The file at `path` mapped read-only, once it is known to start like a GGUF."""
    with open(path, "rb") as file:
        if os.fstat(file.fileno()).st_size < 24:
            raise ValueError(f"`{field}` {str(path)!r} is not a GGUF file (too short).")
        with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
            if data[:4] != b"GGUF":
                raise ValueError(
                    f"`{field}` {str(path)!r} is not a GGUF file (it starts with {data[:4]!r}, "
                    "not b'GGUF'). Convert the model with llama.cpp's convert_hf_to_gguf.py, or "
                    "use backend='transformers' for a Hugging Face checkpoint."
                )
            (version,) = struct.unpack_from("<I", data, 4)
            if version < 2:
                raise ValueError(
                    f"`{field}` {str(path)!r} is GGUF version {version}, too old for llama.cpp; "
                    "convert the model again."
                )
            yield data


@contextmanager
def _damage(path: str | os.PathLike[str], field: str) -> Iterator[None]:
    """Reading errors inside the header as one ValueError that names the file."""
    try:
        yield
    except (struct.error, ValueError, UnicodeDecodeError) as err:
        raise ValueError(
            f"`{field}` {str(path)!r} has a damaged or truncated GGUF header ({err}). "
            "Download or export the file again."
        ) from err


def _check_architecture(path: str | os.PathLike[str], field: str, keys: Any) -> None:
    if "general.architecture" not in keys:
        raise ValueError(
            f"`{field}` {str(path)!r} has no `general.architecture` key; llama.cpp cannot load "
            "it. Export the file again with llama.cpp's converter."
        )


@dataclass(frozen=True)
class GGUFTensor:
    """One tensor of a GGUF file: its name, GGML type, numpy shape (rows first) and the absolute
    byte offset of its data in the file."""

    name: str
    kind: int
    shape: tuple[int, ...]
    offset: int


def read_gguf_contents(
    path: str | os.PathLike[str],
) -> tuple[list[tuple[str, int, int | None, Any]], list[GGUFTensor]]:
    """Every key/value of the GGUF at `path` as `(key, type, item type of an array, value)`, in
    file order, and every tensor's place; no tensor data is read. Raises ValueError as
    `read_gguf_header` does."""
    with _mapped(path, "model") as data, _damage(path, "model"):
        (n_tensors,) = struct.unpack_from("<Q", data, 8)
        offset, fields = 24, []
        for key, kind, item, value, offset in _key_values(data, keep=lambda key: True):
            fields.append((key, kind, item, value))
        alignment = next((v for k, _, _, v in fields if k == "general.alignment"), _ALIGNMENT)
        entries = []
        for _ in range(n_tensors):
            name, offset = _read_string(data, offset)
            (n_dims,) = struct.unpack_from("<I", data, offset)
            dims = struct.unpack_from(f"<{n_dims}Q", data, offset + 4)
            kind, start = struct.unpack_from("<IQ", data, offset + 4 + 8 * n_dims)
            offset += 4 + 8 * n_dims + 12
            entries.append((name, kind, tuple(reversed(dims)), start))
    _check_architecture(path, "model", {key for key, *_ in fields})
    data_start = -(-offset // alignment) * alignment
    return fields, [GGUFTensor(*entry[:3], data_start + entry[3]) for entry in entries]


def _parse_header(data) -> dict[str, Any]:
    header = {}
    for key, _kind, _item, value, _end in _key_values(
        data, keep=lambda key: key.startswith(GGUF_PREFIX) or key == _TOKENS
    ):
        if key == _TOKENS and isinstance(value, list):
            header[BYTE_TOKENS] = len(_BYTE_NAMES.intersection(value))
        elif value is not None:
            header[key] = value
    return header


def _key_values(data, keep: Callable[[str], bool]) -> Iterator[tuple[str, int, int | None, Any, int]]:
    """Each key/value of the header in file order: (key, type, item type of an array, value, the
    offset after it); an array whose key is not `keep`-ed comes back as None (fixed-size items
    skipped unread)."""
    (count,) = struct.unpack_from("<Q", data, 16)
    offset = 24
    for _ in range(count):
        key, offset = _read_string(data, offset)
        (kind,) = struct.unpack_from("<I", data, offset)
        item = struct.unpack_from("<I", data, offset + 4)[0] if kind == _ARRAY else None
        value, offset = _read_value(data, offset + 4, kind, keep=keep(key))
        yield key, kind, item, value, offset


def _read_value(data, offset: int, kind: int, keep: bool = True) -> tuple[Any, int]:
    """One value at `offset` and the offset after it; arrays are skipped (None) unless `keep`."""
    if kind == _STRING:
        return _read_string(data, offset)
    if kind == _ARRAY:
        item, length = struct.unpack_from("<IQ", data, offset)
        offset += 12
        if item in _SCALARS and not keep:  # skip fixed-size items without reading them
            offset += length * struct.calcsize("<" + _SCALARS[item])
            if offset > len(data):
                raise ValueError("an array runs past the end of the file")
            return None, offset
        values = []
        for _ in range(length):
            value, offset = _read_value(data, offset, item, keep)
            values.append(value)
        return (values if keep else None), offset
    if kind not in _SCALARS:
        raise ValueError(f"unknown value type {kind} at byte {offset}")
    fmt = "<" + _SCALARS[kind]
    return struct.unpack_from(fmt, data, offset)[0], offset + struct.calcsize(fmt)


def _read_string(data, offset: int) -> tuple[str, int]:
    (length,) = struct.unpack_from("<Q", data, offset)
    end = offset + 8 + length
    if end > len(data):
        raise ValueError(f"a string at byte {offset} runs past the end of the file")
    return bytes(data[offset + 8 : end]).decode("utf-8"), end
