"""Canonical downloads, checked against their md5 and written atomically. Offline, they fail fast with a reason."""
from __future__ import annotations

import hashlib
import shutil
import tarfile
import tempfile
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from cad.io import atomic_path

TIMEOUT_S = 30.0


def md5sum(path: Path, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def download_file(url: str, dest: Path, md5: str | None) -> Path:
    """Download ``url`` to ``dest`` unless a copy with the right md5 is already there. Raises ``OSError`` on failure."""
    if dest.exists() and (md5 is None or md5sum(dest) == md5):
        return dest
    with atomic_path(dest) as tmp:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response, open(tmp, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"download {dest.name}") as bar:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    bar.update(len(chunk))
        if md5 is not None and (actual := md5sum(tmp)) != md5:
            raise OSError(f"md5 mismatch for {url}: expected {md5}, got {actual}")
    return dest


def download_files(mirrors: list[str], files: list[tuple[str, str]], dest_dir: Path) -> None:
    """Download each (file name, md5) from the first mirror that serves it."""
    for name, md5 in files:
        errors = []
        for mirror in mirrors:
            try:
                download_file(mirror + name, dest_dir / name, md5)
                break
            except OSError as err:
                errors.append(f"{mirror}{name}: {err}")
        else:
            raise OSError("; ".join(errors))


def download_and_extract(url: str, md5: str, dest_dir: Path, member: str) -> Path:
    """Download a tar archive and extract its top-level folder ``member`` into ``dest_dir`` (atomically, by rename)."""
    archive = download_file(url, dest_dir / url.rsplit("/", 1)[-1], md5)
    target = dest_dir / member
    if target.exists():
        return target
    with tempfile.TemporaryDirectory(dir=dest_dir) as tmp:
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        shutil.move(str(Path(tmp) / member), str(target))
    return target
