"""The semantic-map task's paper-scale model (issue 12) on tiny randomly initialised diffusers models: SD's schedule on
continuous time, the ControlNet's zero start and training, the control image's shapes, offline loading with clear
errors, and the map module's training step and one sampling step in latent space."""
import json

import pytest
import torch
from omegaconf import OmegaConf

from cad.backbones.latent_vae import LatentCodec
from cad.backbones.sd_controlnet import SDControlNet, load_sd_unet, tiny_unet
from cad.conditioning import Condition
from cad.conditioning.sd_text import SDTextEncoder, load_sd_text_encoder
from cad.diffusion import available_schedules, get_schedule
from cad.diffusion.sd_schedule import sd_alphas_cumprod, sd_scaled_linear, timestep_from_gamma
from cad.experiment.config import resolve
from cad.sampling import SeededGenerator, get_sampler
from cad.tasks.map_conditional import MapConditionalDiffusion

K = 5  # map channels


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The tiny models' ops take microseconds: one thread skips the per-op thread hand-off, which dominates (70x
    measured) on a machine whose cores are busy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _condition(batch: int = 2, size: int = 64, tokens: bool = False) -> Condition:
    classes = torch.randint(0, K, (batch, size, size))
    return Condition(spatial_map=torch.nn.functional.one_hot(classes, K).permute(0, 3, 1, 2).float(),
                     coherence_map=torch.rand(batch, 1, size, size),
                     tokens=torch.randn(batch, 7, 32) if tokens else None)


def test_the_schedule_is_sds_alphas_cumprod_on_continuous_time():
    from diffusers import DDPMScheduler

    reference = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012).alphas_cumprod
    torch.testing.assert_close(sd_alphas_cumprod().float(), reference, rtol=0, atol=1e-6)
    k = torch.arange(1000)
    torch.testing.assert_close(sd_scaled_linear(k / 999).double(), sd_alphas_cumprod(), rtol=1e-6, atol=0)
    t = torch.linspace(0, 1, 2001)
    gamma = get_schedule("sd_scaled_linear")(t)
    assert "sd_scaled_linear" in available_schedules() and (gamma.diff() < 0).all()
    torch.testing.assert_close(timestep_from_gamma(gamma), t * 999, rtol=0, atol=2e-3)
    # noise levels beyond SD's range clamp to its first and last timesteps
    assert timestep_from_gamma(torch.tensor([1.0, 1e-9])).tolist() == [0.0, 999.0]


@pytest.mark.parametrize("use_coherence", [True, False])
@torch.no_grad()
def test_at_initialisation_the_output_is_the_bare_base_unets(use_coherence):
    torch.manual_seed(0)
    model = SDControlNet.tiny(K, use_coherence).eval()
    assert model.control.controlnet_cond_embedding.conv_in.in_channels == K + int(use_coherence)
    x, gamma = torch.randn(2, 4, 8, 8), torch.tensor([0.9, 0.05])
    for cond in (_condition(), _condition(tokens=True)):
        states = model.null_tokens.expand(2, -1, -1) if cond.tokens is None else cond.tokens
        bare = model.base(x, timestep_from_gamma(gamma), states).sample
        torch.testing.assert_close(model(x, gamma, cond)[0], bare, rtol=0, atol=0)


def test_only_the_controlnet_trains_and_its_zero_convolutions_move_under_adamw():
    torch.manual_seed(0)
    model = SDControlNet.tiny(K, True).train()
    frozen = {k: v.clone() for k, v in model.base.state_dict().items()}
    zero = {k: v.clone() for k, v in model.control.state_dict().items()
            if k.startswith(("controlnet_down_blocks", "controlnet_mid_block", "controlnet_cond_embedding.conv_out"))}
    assert zero and all((v == 0).all() for v in zero.values())
    trainable = model.trainable_parameters()
    assert {id(p) for p in model.parameters() if p.requires_grad} == {id(p) for p in trainable}
    assert {id(p) for p in trainable} == {id(p) for p in model.control.parameters()}
    optimizer = torch.optim.AdamW(trainable, lr=1e-3)
    x, gamma, cond = torch.randn(2, 4, 8, 8), torch.tensor([0.5, 0.2]), _condition()
    target = torch.randn_like(x)
    for _ in range(3):
        loss = (model(x, gamma, cond)[0] - target).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    moved = model.control.state_dict()
    assert all(not torch.equal(moved[k], v) for k, v in zero.items())
    assert all(torch.equal(model.base.state_dict()[k], v) for k, v in frozen.items())


def test_the_control_image_is_given_at_the_image_resolution():
    model = SDControlNet.tiny(K, True)
    x, gamma = torch.randn(1, 4, 8, 8), torch.tensor([0.5])
    assert model(x, gamma, _condition(1, 64))[0].shape == (1, 4, 8, 8)  # maps 64x64 -> latents 8x8
    with pytest.raises(ValueError, match=r"image resolution \(64, 64\).*got \(8, 8\)"):
        model(x, gamma, _condition(1, 8))
    with pytest.raises(ValueError, match="coherence_map is None"):
        model(x, gamma, _condition(1).replace(coherence_map=None))
    with pytest.raises(ValueError, match="tokens has width 16"):
        model(x, gamma, _condition(1).replace(tokens=torch.zeros(1, 7, 16)))


def _sd_folder(tmp_path, prediction_type: str = "epsilon"):
    tiny_unet(seed=1).save_pretrained(tmp_path / "sd" / "unet")
    SDTextEncoder.tiny(seed=2, width=32).save(tmp_path / "sd")
    (tmp_path / "sd" / "scheduler").mkdir()
    (tmp_path / "sd" / "scheduler" / "scheduler_config.json").write_text(json.dumps(
        {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012, "num_train_timesteps": 1000,
         "prediction_type": prediction_type}))
    return tmp_path / "sd"


def test_the_unet_loads_offline_from_a_local_folder_with_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"unet/config.json is missing.*huggingface-cli download"):
        load_sd_unet(tmp_path / "nowhere")
    folder = _sd_folder(tmp_path)
    loaded, built = load_sd_unet(folder), tiny_unet(seed=1)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), built.state_dict().values()))
    (folder / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="UNet weights not found"):
        load_sd_unet(folder)
    with pytest.raises(ValueError, match="prediction_type.*epsilon prediction"):
        load_sd_unet(_sd_folder(tmp_path / "v", prediction_type="v_prediction"))


def test_the_text_encoder_loads_offline_and_encodes_captions_to_77_states(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"tokenizer/tokenizer_config.json is missing"):
        load_sd_text_encoder(tmp_path)
    SDTextEncoder.tiny(seed=2).save(tmp_path)
    encoder, reference = load_sd_text_encoder(tmp_path), SDTextEncoder.tiny(seed=2)
    states = encoder(["a cat", "a dog on a sofa", ""])
    assert states.shape == (3, 77, 32) and not torch.equal(states[0], states[1])
    torch.testing.assert_close(states, reference(["a cat", "a dog on a sofa", ""]))


def _module(tmp_path, monkeypatch, method: str = "cad"):
    cfg = resolve("smoke", "fashion_mnist", method, task="map", accelerator="cpu")
    t = cfg.train
    codec = LatentCodec.tiny(0, factor=8)  # SD's 8x: ControlNet's conditioning embedding expects it
    monkeypatch.setattr(MapConditionalDiffusion, "build_codec", lambda self: codec)
    return MapConditionalDiffusion(
        backbone="sd_controlnet", image_shape=(4, 8, 8), map_channels=K, method=OmegaConf.to_container(cfg.method),
        base_weights=str(_sd_folder(tmp_path)), vae_weights=str(tmp_path / "sd"),
        schedule={"name": "sd_scaled_linear", "shift": 1.0}, lr=1e-3, betas=tuple(t.betas), weight_decay=0.0,
        warmup_steps=0, total_steps=10, lr_rate=t.lr_rate, ema_decay=t.ema_decay, ema_warmup=t.ema_warmup)


def test_the_map_module_trains_the_sd_controlnet_in_latent_space(tmp_path, monkeypatch):
    module = _module(tmp_path, monkeypatch)
    optimizer = module.configure_optimizers()["optimizer"]
    assert isinstance(optimizer, torch.optim.AdamW)
    trained = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert trained == {id(p) for p in module.model.control.parameters()}
    assert not any(k.startswith("_codec") or "codec" in k for k in module.state_dict())
    base = dict(module.model.base.named_parameters())  # the EMA references the frozen UNet (no 3.4 GB copy at SD size)
    assert all(p is base[k] for k, p in module.ema.module.base.named_parameters())
    batch = {"image": torch.rand(2, 3, 64, 64) * 2 - 1, "map": torch.randint(0, K, (2, 64, 64)),
             "coherence_map": torch.rand(2, 1, 64, 64), "caption": ["a red sofa", ""]}
    prepared = module.prepare(batch, torch.Generator())
    assert prepared["image"].shape == (2, 4, 8, 8) and prepared["tokens"].shape == (2, 77, 32)
    torch.testing.assert_close(prepared["tokens"][1:], module.model.null_tokens)  # the empty caption is the null
    precomputed = module.prepare({**batch, "tokens": torch.ones(2, 77, 32)}, torch.Generator())["tokens"]
    assert torch.equal(precomputed, torch.ones(2, 77, 32))  # precomputed caption states are used as they are
    before = module.model.control.controlnet_mid_block.weight.clone()
    for step in range(2):
        loss, per_sample = module.model_step(batch, torch.Generator().manual_seed(step))
        assert per_sample.shape == (2,) and torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert not torch.equal(module.model.control.controlnet_mid_block.weight, before)


def test_condition_one_hots_integer_maps_and_drops_captions_to_the_empty_one(tmp_path, monkeypatch):
    module = _module(tmp_path, monkeypatch)
    module.method = module.method.__class__(**{**module.method.__dict__, "cond_dropout": 0.5})
    batch = {"map": torch.randint(0, K, (200, 16, 16)), "coherence_map": torch.rand(200, 1, 16, 16),
             "tokens": torch.randn(200, 77, 32) + 5}
    cond = module.condition(batch, torch.Generator().manual_seed(0))
    dropped = cond.spatial_map.sum((1, 2, 3)) == 0
    assert 0.35 < dropped.float().mean() < 0.65 and (cond.coherence_map[dropped] == 0).all()
    assert torch.equal(cond.spatial_map[~dropped].argmax(1), batch["map"][~dropped])
    assert torch.equal(cond.tokens[dropped], module.model.null_tokens.expand(int(dropped.sum()), -1, -1))
    assert torch.equal(cond.tokens[~dropped], batch["tokens"][~dropped])


def test_one_sampling_step_runs_in_latent_space(tmp_path, monkeypatch):
    module = _module(tmp_path, monkeypatch)
    model, cond = module.sampling_model.eval(), _condition(2, 64, tokens=True)
    x_T = torch.randn(2, 4, 8, 8)
    x0 = get_sampler("ddim")(lambda x, g, s: (model(x, g, cond)[0], None), x_T, 1,
                             schedule=get_schedule("sd_scaled_linear"), generator=SeededGenerator([0, 1]),
                             clip_x0=False)
    assert x0.shape == x_T.shape and torch.isfinite(x0).all()


def test_latent_space_needs_the_vae_and_pixel_space_refuses_it(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="vae_weights is missing for backbone 'sd_controlnet'"):
        MapConditionalDiffusion(backbone="sd_controlnet", image_shape=(4, 8, 8), map_channels=K, method={},
                                base_weights=str(tmp_path))
    with pytest.raises(ValueError, match="vae_weights is given for backbone 'unet_smoke'"):
        MapConditionalDiffusion(backbone="unet_smoke", image_shape=(1, 32, 64), map_channels=K, method={},
                                base_weights=str(tmp_path), vae_weights=str(tmp_path))
