"""The index of WebDataset-style tar shards (cad.data.caption_shards): every pair's shard, key and the byte ranges of
its members, found by one ``tarfile`` pass over each shard and cached in ``cache_dir()/caption_shards/`` (written
atomically); a shard whose size or modification time has changed is indexed again, the others are reused.
"""
from __future__ import annotations

import hashlib
import json
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from cad.data.images import decode_rgb
from cad.io import atomic_path
from cad.paths import cache_dir

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
MEMBERS = ("image", "text", "json")  # the columns of ShardIndex.members: (offset, size) each, -1 where absent
MAX_LISTED = 5  # missing keys or shards named in an error; the count says how many more
_KEY_EXT = re.compile(r"^((?:.*/|)[^./]+)\.([^/]*)$")  # WebDataset's base_plus_ext: key = up to the first dot


class CaptionShardsError(FileNotFoundError):
    """Shards, a scores file or the scores of some pairs are missing; the message names them and how to make them."""


def listed_names(items: list[str]) -> str:
    more = f" and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else ""
    return ", ".join(items[:MAX_LISTED]) + more


def shard_starts(counts: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


# ----------------------------------------------------------------------------------------------------------------------
# the index


@dataclass
class ShardIndex:
    """Pairs in shard order, contiguous per shard. ``shards`` are paths relative to ``root``; ``members`` (N, 6) int64
    holds the (offset, size) in the shard file of each pair's image, caption and json (-1, -1 where absent)."""

    root: Path
    shards: list[str]
    shard_bytes: np.ndarray  # (S,) int64: file sizes when indexed
    shard_mtime_ns: np.ndarray  # (S,) int64
    counts: np.ndarray  # (S,) int64: pairs per shard
    skipped: np.ndarray  # (S,) int64: keys without an image or a caption
    keys: np.ndarray  # (N,) str
    members: np.ndarray  # (N, 6) int64

    def __post_init__(self) -> None:
        self.starts = shard_starts(self.counts)
        self.shard_of = np.repeat(np.arange(len(self.shards), dtype=np.int32), self.counts)

    def __len__(self) -> int:
        return len(self.keys)

    def rows(self, shard: int) -> slice:
        return slice(int(self.starts[shard]), int(self.starts[shard + 1]))

    def read(self, i: int, member: str) -> bytes | None:
        """The raw bytes of pair ``i``'s ``member`` (image, text, json); None for an absent json."""
        column = 2 * MEMBERS.index(member)
        offset, size = (int(v) for v in self.members[i, column:column + 2])
        if offset < 0:
            return None
        path = self.root / self.shards[self.shard_of[i]]
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read(size)
        if len(data) != size:
            raise CaptionShardsError(f"{path} is shorter than when it was indexed (key {self.keys[i]}); delete the "
                                     f"index cache or restore the shard")
        return data

    def image(self, i: int) -> Image.Image:
        """Pair ``i``'s image, decoded to RGB at its own size."""
        try:
            return decode_rgb(self.read(i, "image"))
        except (OSError, ValueError) as err:
            raise ValueError(f"the image of key {self.keys[i]} in {self.root / self.shards[self.shard_of[i]]} cannot "
                             f"be decoded ({err}); remove the pair from the shard or replace the shard") from err

    def caption(self, i: int) -> str:
        return self.read(i, "text").decode("utf-8").strip()

    def metadata(self, i: int) -> dict:
        data = self.read(i, "json")
        return {} if data is None else json.loads(data)

    def save(self, path: Path) -> None:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, shards=np.array(self.shards, dtype=str), shard_bytes=self.shard_bytes,
                     shard_mtime_ns=self.shard_mtime_ns, counts=self.counts, skipped=self.skipped, keys=self.keys,
                     members=self.members)

    @classmethod
    def load(cls, path: Path, root: Path) -> "ShardIndex":
        with np.load(path, allow_pickle=False) as z:
            return cls(root, [str(s) for s in z["shards"]], z["shard_bytes"], z["shard_mtime_ns"], z["counts"],
                       z["skipped"], z["keys"], z["members"])


def list_shards(root: str | Path) -> list[str]:
    """The ``*.tar`` files under ``root`` (recursively, hidden ones left out), as sorted relative paths."""
    root = Path(root)
    if not root.is_dir():
        raise CaptionShardsError(f"shard folder {root} not found. Provide image-caption shards there: WebDataset tar "
                                 f"files with <key>.jpg and <key>.txt members (e.g. img2dataset --output_format "
                                 f"webdataset on CC12M or LAION's url lists, on a machine with internet)")
    names = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.tar")
                   if not any(part.startswith(".") for part in p.relative_to(root).parts))
    if not names:
        raise CaptionShardsError(f"no *.tar shards under {root}; expected WebDataset tar files with <key>.jpg and "
                                 f"<key>.txt members (img2dataset --output_format webdataset writes them)")
    return names


def index_shard(path: Path) -> tuple[np.ndarray, np.ndarray, int]:
    """(keys (n,), members (n, 6), skipped) of one shard, pairs in the order their first member appears."""
    found: dict[str, list[int]] = {}
    with tarfile.open(path, mode="r:") as tar:
        for info in tar:
            match = _KEY_EXT.match(info.name) if info.isfile() else None
            if match is None:
                continue
            key, ext = match.group(1), match.group(2).lower()
            column = ("image" if ext in IMAGE_EXTENSIONS else ext if ext in ("txt", "json") else None)
            if column is None:
                continue
            row = found.setdefault(key, [-1] * 6)
            at = 2 * MEMBERS.index("text" if column == "txt" else column)
            if row[at] < 0:  # a second image of the same key (e.g. .jpg and .png): the first one counts
                row[at:at + 2] = [info.offset_data, info.size]
    complete = {k: v for k, v in found.items() if v[0] >= 0 and v[2] >= 0}
    keys = np.array(list(complete), dtype=str)
    members = np.array(list(complete.values()), dtype=np.int64).reshape(-1, 6)
    return keys, members, len(found) - len(complete)


def default_index_path(root: Path) -> Path:
    digest = hashlib.sha256(str(Path(root).resolve()).encode()).hexdigest()[:16]
    return cache_dir() / "caption_shards" / f"index-{digest}.npz"


def load_index(root: str | Path, *, cache: str | Path | None = None, progress: bool = False) -> ShardIndex:
    """The index of the shards under ``root``: cached entries (``cache``, default under ``cache_dir()``) for unchanged
    shards, new or changed shards indexed again, the cache rewritten atomically if anything moved."""
    from tqdm import tqdm

    root = Path(root)
    names = list_shards(root)
    cache = Path(cache) if cache is not None else default_index_path(root)
    old = None
    if cache.is_file():
        try:
            old = ShardIndex.load(cache, root)
        except (OSError, ValueError, KeyError):  # an unreadable cache is rebuilt, never trusted
            old = None
    previous = {name: s for s, name in enumerate(old.shards)} if old is not None else {}
    blocks, sizes, mtimes = [], [], []
    for name in tqdm(names, desc="indexing shards", unit="shard", disable=not progress):
        stat = (root / name).stat()
        s = previous.get(name)
        if s is not None and old.shard_bytes[s] == stat.st_size and old.shard_mtime_ns[s] == stat.st_mtime_ns:
            rows = old.rows(s)
            blocks.append((old.keys[rows], old.members[rows], int(old.skipped[s])))
        else:
            try:
                blocks.append(index_shard(root / name))
            except tarfile.TarError as err:
                raise CaptionShardsError(f"shard {root / name} is not a readable tar file ({err}); re-download or "
                                         f"remove it") from err
        sizes.append(stat.st_size)
        mtimes.append(stat.st_mtime_ns)
    index = ShardIndex(root, names, np.array(sizes, dtype=np.int64), np.array(mtimes, dtype=np.int64),
                       np.array([len(b[0]) for b in blocks], dtype=np.int64),
                       np.array([b[2] for b in blocks], dtype=np.int64),
                       np.concatenate([b[0] for b in blocks]).astype(str),
                       np.concatenate([b[1] for b in blocks]).reshape(-1, 6))
    unchanged = (old is not None and old.shards == index.shards
                 and np.array_equal(old.shard_bytes, index.shard_bytes)
                 and np.array_equal(old.shard_mtime_ns, index.shard_mtime_ns))
    if not unchanged:
        index.save(cache)
    return index


# ----------------------------------------------------------------------------------------------------------------------
# the scores file
