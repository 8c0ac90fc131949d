"""The text task (issue 11) on the shared pipeline: its config, its guidance pairs (the random-character negative
only at coherence 0, the empty prompt of CFG), condition dropout, the Filtered bins, a sweep shown as its best rows."""
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from cad.conditioning import Condition
from cad.data.contrastive import CaptionBank
from cad.experiment.config import ConfigError, load_experiment, resolve, scale_value
from cad.experiment.report import RunResult, best_of_sweep
from cad.tasks import text_task
from cad.tasks.registry import get_task
from cad.tasks.text_conditional import TextConditionalDiffusion
from cad.tasks.text_grid import save_caption_grid
from tests.test_contrastive import PositionalWords


@pytest.fixture
def fake_encoder(monkeypatch):
    bank = CaptionBank(PositionalWords())
    monkeypatch.setattr(text_task, "caption_bank", lambda name: bank)
    return bank


def test_the_task_file_sets_its_network_per_scale_after_the_scale_file():
    cfg = resolve("smoke", "fashion_mnist", "cad", task="text", accelerator="cpu")
    assert cfg.backbone.preset == "rin_text_smoke" and cfg.data.subset == 512  # task scales.smoke over scale/smoke
    assert cfg.evaluate.extractors == ["inception", "clipscore"]
    assert scale_value("cpu", "backbone.preset", "text") == "rin_text_cpu"
    assert scale_value("cpu", "backbone.preset") == "unet_cpu"  # the class task keeps the scale file's
    assert resolve("smoke", "fashion_mnist", "cad", accelerator="cpu").backbone.preset == "unet_smoke"


@pytest.mark.parametrize("overrides, method, scale, match", [
    ([], "cad", "paper", "paper scale"),
    (["backbone.preset=rin_cpu"], "cad", "smoke", "no text tower"),
    (["sample.guidance_scale=3"], "baseline", "smoke", "no guided branch"),
    (["backbone.coherence_as_metadata=true"], "cad", "smoke", "no control metadata"),
    (["evaluate.extractors=[classifier]"], "cad", "smoke", "evaluate.extractors"),
])
def test_bad_text_configs_fail_before_anything_runs(overrides, method, scale, match):
    with pytest.raises(ConfigError, match=match):
        resolve(scale, "fashion_mnist" if scale != "paper" else "cifar10", method, overrides, task="text",
                accelerator="cpu")


def test_filtered_drops_whole_bins():
    assert text_task.dropped_bins(3 / 7) == 3 and text_task.dropped_bins(0.4285714) == 3
    with pytest.raises(ConfigError, match="whole coherence bins"):
        text_task.dropped_bins(0.5)


def _condition(bank, captions, coherence=0.3):
    return text_task.text_condition(captions, torch.device("cpu"), bank=bank, use_coherence=True, coherence=coherence)


def test_cacfg_negative_is_a_random_character_prompt_at_coherence_zero_only(fake_encoder):
    cfg = resolve("smoke", "fashion_mnist", "cad", task="text", accelerator="cpu")
    captions = ["a small bag on the left and a large coat on the right", "a large sandal on the left and a small "
                                                                          "shirt on the right"]
    positive, negative = get_task("text").pair_fn(cfg)(_condition(fake_encoder, captions))
    prompt = text_task.random_character_prompt(np.random.default_rng(cfg.sample.seed))
    assert set(prompt) <= set("abcdefghijklmnopqrstuvwxyz ") and prompt not in captions
    own, _ = fake_encoder.tokens(captions)
    random, _ = fake_encoder.tokens([prompt, prompt])
    torch.testing.assert_close(positive.tokens, own)  # the prompt itself, at coherence 1
    assert positive.coherence.eq(1).all()
    torch.testing.assert_close(negative.tokens, random)  # the random prompt, at coherence 0
    assert negative.coherence.eq(0).all()


def test_cfg_negative_is_the_empty_prompt(fake_encoder):
    cfg = resolve("smoke", "fashion_mnist", "cfg", task="text", accelerator="cpu")
    cond = text_task.text_condition(["a small bag on the left"], torch.device("cpu"), bank=fake_encoder,
                                    use_coherence=False, coherence=1.0)
    positive, negative = get_task("text").pair_fn(cfg)(cond)
    assert positive.token_mask.any() and not negative.token_mask.any() and positive.coherence is None
    assert get_task("text").pair_fn(resolve("smoke", "fashion_mnist", "baseline", task="text",
                                            accelerator="cpu")) is None


def test_condition_dropout_masks_the_whole_prompt_at_its_rate():
    cfg = resolve("smoke", "fashion_mnist", "cfg", task="text", accelerator="cpu")
    t = cfg.train
    module = TextConditionalDiffusion(
        backbone="rin_text_smoke", image_shape=(1, 32, 64), token_dim=16, method=OmegaConf.to_container(cfg.method),
        schedule=OmegaConf.to_container(t.schedule), lr=t.lr, betas=tuple(t.betas), weight_decay=t.weight_decay,
        warmup_steps=t.warmup_steps, total_steps=t.total_steps, lr_rate=t.lr_rate, ema_decay=t.ema_decay,
        ema_warmup=t.ema_warmup)
    n = 4000
    batch = {"tokens": torch.randn(n, 6, 16), "token_mask": torch.ones(n, 6, dtype=torch.bool),
             "coherence": torch.rand(n)}
    cond = module.condition(batch, torch.Generator().manual_seed(0))
    dropped = ~cond.token_mask.any(1)
    assert (cond.token_mask.all(1) | dropped).all()  # a prompt is kept whole or dropped whole
    assert abs(dropped.float().mean().item() - 0.1) < 0.015 and cond.coherence is None
    x = torch.randn(2, 1, 32, 64)
    eps, _ = module.model(x, torch.full((2,), 0.5), cond[:2])
    assert eps.shape == x.shape
    positive, negative = module.training_pair(cond[:8])  # the guidance-aligned loss: CFG's negative, the empty prompt
    assert torch.equal(positive.token_mask, cond[:8].token_mask) and not negative.token_mask.any()


def _result(method, value, fid):
    return RunResult(dataset="fashion_mnist", method=method, sweep_value=value, cfg=None, dirs=None,
                     metrics={"fid": fid, "clip_score": 20.0 + value})


def test_a_sweep_renders_each_method_at_its_best_value():
    results = [_result("cfg", 1.0, 50.0), _result("cfg", 3.0, 40.0), _result("cad", 1.0, 30.0),
               _result("cad", 3.0, 35.0)]
    best = {r.method: r for r in best_of_sweep(results, "fid", "sample.guidance_scale")}
    assert best["cfg"].metrics["guidance_scale"] == 3.0 and best["cfg"].metrics["fid"] == 40.0
    assert best["cad"].metrics["guidance_scale"] == 1.0 and best["cad"].metrics["clip_score"] == 21.0
    assert load_experiment("fig3a").best_of == "fid" and load_experiment("fig3a").datasets == ["fashion_mnist", "cc12m"]


def test_the_caption_grid_is_written(tmp_path):
    images = np.random.default_rng(0).integers(0, 255, (6, 32, 64, 1), dtype=np.uint8)
    save_caption_grid(tmp_path / "grid.png", images, [f"caption {i}" for i in range(6)], columns=3)
    from PIL import Image

    with Image.open(tmp_path / "grid.png") as grid:
        assert grid.size[0] == 3 * (64 * 3 + 8) + 8 and grid.size[1] > 2 * 32 * 3
