"""Score every image-caption pair of a shard folder with an offline open_clip model (the paper: MetaCLIP H/14) and
write the scores file that cad.data.caption_shards reads: each pair's image-text cosine and the quantile bin edges
over all of them, the training set's coherence bins (paper sec. 4.1).

    python -m cad.data.score_shards --shards DIR --checkpoint FILE [--model ViT-H-14-quickgelu] [--out F]

Resumable shard by shard: each finished shard is written atomically to ``F.parts/<shard>.npz`` with the scorer's
name and precision and the shard's size; a rerun scores only the shards without a valid part (new, changed, or
interrupted), then merges all parts into ``F`` (atomically). The parts stay, so shards added later cost only their
own scoring; the edges are recomputed over every pair at each merge.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from cad.conditioning.clip_models import (PAPER_COHERENCE_MODEL, ClipModel, ClipWeightsNotFoundError, load_clip,
                                          pair_cosine)
from cad.conditioning.text_coherence import NUM_BINS, quantile_edges
from cad.data.caption_shards import CaptionShardsError, ShardIndex, ShardScores, load_index
from cad.io import atomic_path


class _Pairs(Dataset):
    """(the scorer's input image, caption) of the index's ``rows``, decoded in the loader's workers."""

    def __init__(self, index: ShardIndex, rows: np.ndarray, preprocess):
        self.index, self.rows, self.preprocess = index, rows, preprocess

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        row = int(self.rows[i])
        return self.preprocess(self.index.image(row)), self.index.caption(row)


def default_out(root: str | Path, model_name: str) -> Path:
    return Path(root) / f"scores-{model_name}.npz"


def part_path(out: Path, shard: str) -> Path:
    return out.with_name(out.name + ".parts") / f"{shard}.npz"


def _part_identity(clip: ClipModel, index: ShardIndex, shard: int, precision: str) -> dict:
    return {"model": clip.name, "precision": precision, "shard": index.shards[shard],
            "shard_bytes": int(index.shard_bytes[shard])}


def _read_part(path: Path, identity: dict, keys: np.ndarray) -> np.ndarray | None:
    """The similarities of a finished part, or None where there is none or it is stale (another scorer, precision or
    shard content)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if json.loads(str(z["identity"])) != identity or not np.array_equal(z["keys"], keys):
                return None
            return z["similarity"]
    except (OSError, ValueError, KeyError):
        return None


def _scored_batches(clip: ClipModel, index: ShardIndex, rows: np.ndarray, *, batch_size: int, num_workers: int,
                    precision: str) -> Iterator[np.ndarray]:
    """The cosines of the pairs ``rows``, batch by batch, in order (one loader, so its workers start once a run)."""
    loader = DataLoader(_Pairs(index, rows, clip.preprocess), batch_size=batch_size, num_workers=num_workers,
                        pin_memory=clip.device.type == "cuda")
    for pixels, captions in loader:
        yield pair_cosine(clip, pixels, captions, precision=precision).cpu().numpy().astype(np.float32)


def score_shards(root: str | Path, clip: ClipModel, out: str | Path, *, num_bins: int = NUM_BINS,
                 batch_size: int = 256, num_workers: int = 0, precision: str = "32-true",
                 index: ShardIndex | None = None, index_cache: str | Path | None = None,
                 progress: bool = True) -> dict:
    """Score the shards under ``root`` that have no valid part yet, then merge every part into the scores file
    ``out``. Returns ``{"scored": [shard, ...], "reused": [shard, ...], "pairs": N, "out": Path}``."""
    from tqdm import tqdm

    out = Path(out)
    index = index if index is not None else load_index(root, cache=index_cache, progress=progress)
    parts: dict[int, np.ndarray] = {}
    todo = []
    for s, name in enumerate(index.shards):
        done = _read_part(part_path(out, name), _part_identity(clip, index, s, precision), index.keys[index.rows(s)])
        if done is None:
            todo.append(s)
        else:
            parts[s] = done
    rows = np.concatenate([np.arange(index.starts[s], index.starts[s + 1]) for s in todo] + [np.zeros(0, int)])
    batches = _scored_batches(clip, index, rows, batch_size=batch_size, num_workers=num_workers, precision=precision)
    pending = np.zeros(0, np.float32)
    with tqdm(total=len(rows), desc=f"scoring {len(todo)} shard(s)", unit="pair", disable=not progress) as bar:
        for s in todo:  # a shard's part is written as soon as its last batch is scored
            while len(pending) < index.counts[s]:
                batch = next(batches)
                pending = np.concatenate([pending, batch])
                bar.update(len(batch))
            parts[s], pending = pending[:index.counts[s]], pending[index.counts[s]:]
            with atomic_path(part_path(out, index.shards[s])) as tmp, open(tmp, "wb") as f:
                np.savez(f, similarity=parts[s], keys=index.keys[index.rows(s)],
                         identity=np.array(json.dumps(_part_identity(clip, index, s, precision))))
    similarity = np.concatenate([parts[s] for s in range(len(index.shards))]).astype(np.float32)
    ShardScores(index.shards, index.shard_bytes, index.counts, index.keys, similarity,
                quantile_edges(similarity, num_bins), clip.name, precision).save(out)
    return {"scored": [index.shards[s] for s in todo],
            "reused": [name for s, name in enumerate(index.shards) if s not in todo],
            "pairs": len(similarity), "out": out}


def main(argv: list[str] | None = None) -> int:
    from cad.hardware import ACCELERATORS, PRECISIONS, accelerator_device_type, resolve_num_workers, \
        resolve_precision

    parser = argparse.ArgumentParser(prog="python -m cad.data.score_shards", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", required=True, type=Path, help="folder of WebDataset *.tar shards (recursive)")
    parser.add_argument("--model", default=PAPER_COHERENCE_MODEL,
                        help=f"open_clip architecture name (default: {PAPER_COHERENCE_MODEL}, MetaCLIP H/14)")
    parser.add_argument("--checkpoint", required=True, type=Path, help="local weights file of --model")
    parser.add_argument("--out", type=Path, default=None, help="scores file (default: SHARDS/scores-MODEL.npz)")
    parser.add_argument("--num-bins", type=int, default=NUM_BINS, help="coherence bins (the paper: 8)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--num-workers", default="auto", help="image-decoding workers: an integer or auto")
    parser.add_argument("--accelerator", default="auto", choices=ACCELERATORS)
    parser.add_argument("--precision", default="auto", choices=PRECISIONS,
                        help="auto: bf16 autocast where bf16 is native, else fp32 (recorded in the scores file)")
    parser.add_argument("--index-cache", type=Path, default=None, help="shard index file (default: under CAD_CACHE)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    device_type = accelerator_device_type(args.accelerator)
    precision = resolve_precision(args.precision, device_type)
    workers = resolve_num_workers(args.num_workers if args.num_workers == "auto" else int(args.num_workers),
                                  device_type)
    try:
        clip = load_clip(args.model, args.checkpoint, device=torch.device(device_type))
        out = args.out if args.out is not None else default_out(args.shards, args.model)
        summary = score_shards(args.shards, clip, out, num_bins=args.num_bins, batch_size=args.batch_size,
                               num_workers=workers, precision=precision, index_cache=args.index_cache,
                               progress=not args.no_progress)
    except (ClipWeightsNotFoundError, CaptionShardsError) as err:  # their messages say what to do
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"{summary['pairs']} pairs scored with {clip.name} ({precision}): {len(summary['scored'])} shard(s) "
          f"scored now, {len(summary['reused'])} reused; wrote {summary['out']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
