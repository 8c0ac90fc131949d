"""A sample depends only on its seed: two CPU processes over gloo draw exactly what one process draws."""
import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from cad.backbones import build_backbone
import functools

from cad.guidance import cacfg_pair
from cad.tasks.class_task import label_condition
from cad.tasks.generate import generate, generate_distributed

LABELS, SEEDS = [3, 1, 4, 1, 5, 9, 2], [10, 11, 12, 13, 14, 15, 16]
KWARGS = dict(image_shape=(1, 28, 28), condition=functools.partial(label_condition, use_coherence=True, coherence=1.0),
              pair=cacfg_pair, sampler="ddpm", steps=4, schedule={"name": "cosine"}, guidance_scale=1.5, eta=0.0,
              clip_x0=True, batch_size=2, progress=False)


def tiny_model():
    torch.manual_seed(0)
    return build_backbone("rin_smoke", image_size=28, in_channels=1, num_classes=10, use_coherence=True).eval()


def _worker(rank: int, world: int, port: int, out_path: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    images = generate_distributed(tiny_model(), LABELS, SEEDS, **KWARGS)
    if rank == 0:
        torch.save(images, out_path)
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_draw_what_one_process_draws(tmp_path):
    single = generate(tiny_model(), LABELS, SEEDS, **{**KWARGS, "batch_size": 7})
    out = tmp_path / "images.pt"
    mp.spawn(_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True)
    torch.testing.assert_close(torch.load(out), single, rtol=0, atol=1e-5)
