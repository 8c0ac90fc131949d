"""The latent-space text-to-image path (cad.backbones.latent_vae, TextConditionalDiffusion with ``latent_vae``): the
frozen codec's shapes and scaling with a tiny random AutoencoderKL, offline loading and its named error, a latent
text module that trains on a fixed batch and samples images of the pixel shape in [-1, 1]."""
import json

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from cad.backbones.latent_vae import LatentCodec, VAEWeightsNotFoundError, load_vae
from cad.conditioning import Condition
from cad.tasks.generate import generate
from cad.tasks.text_conditional import TextConditionalDiffusion

TOKEN_DIM = 16
CAD = dict(name="cad", labels="noisy", use_coherence=True, loss="mean", cond_dropout=0.0, filter_threshold=None,
           guidance="cacfg")


def images(n: int, channels: int = 3, height: int = 16, width: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, channels, height, width, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory):
    """A Stable Diffusion-like folder: the tiny VAE under vae/ (config.json + weights)."""
    root = tmp_path_factory.mktemp("sd")
    LatentCodec.tiny(seed=0).vae.save_pretrained(root / "vae")
    return root


def test_encode_is_the_scaled_posterior_mean_and_decode_inverts_the_scaling():
    codec = LatentCodec.tiny(seed=0)
    x = images(2)
    z = codec.encode(x)
    assert z.shape == (2, 4, 8, 16) and codec.latent_shape((3, 16, 32)) == (4, 8, 16)
    mean = codec.vae.encode(x).latent_dist.mean
    assert torch.allclose(z, mean * 0.18215, atol=1e-6) and torch.equal(z, codec.encode(x))  # deterministic
    codec.vae.register_to_config(scaling_factor=1.0)
    unscaled = LatentCodec(codec.vae)
    assert torch.allclose(unscaled.encode(x), mean, atol=1e-6)
    out = codec.decode(z)
    expected = codec.vae.decode(z / 0.18215).sample.clamp(-1, 1)
    assert out.shape == x.shape and out.min() >= -1 and out.max() <= 1 and torch.allclose(out, expected, atol=1e-5)
    gray = codec.decode(z, channels=1)
    assert gray.shape == (2, 1, 16, 32) and torch.allclose(gray, codec.vae.decode(z / 0.18215).sample.mean(1, True)
                                                           .clamp(-1, 1), atol=1e-5)
    assert codec.encode(x[:, :1]).shape == (2, 4, 8, 16)  # one channel is repeated to the VAE's three
    with pytest.raises(ValueError, match="downsampling factor 2"):
        codec.latent_shape((3, 15, 32))
    with pytest.raises(ValueError, match="decode expects"):
        codec.decode(torch.zeros(1, 3, 8, 8))


def test_the_codec_is_frozen():
    codec = LatentCodec.tiny(seed=0)
    assert not any(p.requires_grad for p in codec.parameters())
    codec.train()
    assert not codec.training and not codec.vae.training
    x = images(1).requires_grad_(True)
    assert not codec.encode(x).requires_grad and not codec.decode(codec.encode(x)).requires_grad


def test_load_vae_reads_a_vae_folder_or_a_stable_diffusion_folder_offline(sd_folder):
    reference = LatentCodec.tiny(seed=0)
    for path in (sd_folder, sd_folder / "vae"):
        codec = load_vae(str(path))
        assert not any(p.requires_grad for p in codec.parameters()) and not codec.training
        assert torch.allclose(codec.encode(images(1)), reference.encode(images(1)), atol=1e-6)


def test_missing_weights_raise_the_named_error(tmp_path):
    with pytest.raises(VAEWeightsNotFoundError, match="does not exist.*backbone.latent_vae"):
        load_vae(str(tmp_path / "nowhere"))
    with pytest.raises(VAEWeightsNotFoundError, match="vae/config.json"):
        load_vae(str(tmp_path))  # a folder without any VAE config
    (tmp_path / "config.json").write_text(json.dumps(dict(LatentCodec.tiny().vae.config)))
    with pytest.raises(VAEWeightsNotFoundError, match="cannot load the VAE weights"):
        load_vae(str(tmp_path))  # a config without weights
    with pytest.raises(VAEWeightsNotFoundError, match="huggingface-cli download"):
        load_vae("no-such-owner/no-such-vae")  # a hub name that is not in the local cache: never downloaded


def latent_module(sd_folder, image_shape=(3, 16, 32), latent_vae="default") -> TextConditionalDiffusion:
    torch.manual_seed(0)
    return TextConditionalDiffusion(
        backbone="rin_text_latent_tiny", image_shape=image_shape, token_dim=TOKEN_DIM, method=CAD,
        latent_vae=str(sd_folder) if latent_vae == "default" else latent_vae,
        schedule={"name": "sigmoid", "shift": 1.0}, lr=3e-3, betas=(0.9, 0.999), weight_decay=0.0, warmup_steps=1,
        total_steps=1000, lr_rate=0.8, ema_decay=0.9, ema_warmup=None)


def fixed_batch(n: int = 8, channels: int = 3) -> dict:
    g = torch.Generator().manual_seed(1)
    return {"image": images(n, channels, seed=2), "tokens": torch.randn(n, 5, TOKEN_DIM, generator=g),
            "token_mask": torch.ones(n, 5, dtype=torch.bool), "coherence": torch.rand(n, generator=g)}


def test_the_codec_is_no_trainable_state_of_the_module(sd_folder):
    module = latent_module(sd_folder)
    codec = module.latent_codec
    assert isinstance(codec, LatentCodec) and module.model.in_channels == 4
    codec_ids = {id(p) for p in codec.parameters()}
    assert not codec_ids & {id(p) for p in module.parameters()}
    optimizer = module.configure_optimizers()["optimizer"]
    assert not codec_ids & {id(p) for group in optimizer.param_groups for p in group["params"]}
    pixel_keys = set(latent_module(sd_folder, latent_vae=None).state_dict())
    assert set(module.state_dict()) == pixel_keys  # the same (trainable and EMA) state as in pixel space: no VAE


def test_the_pixel_path_is_unchanged(sd_folder):
    module = latent_module(sd_folder, latent_vae=None)
    batch = fixed_batch()
    assert module.latent_codec is None and module.sample_shape((3, 16, 32)) == (3, 16, 32)
    assert module.prepare(batch, torch.Generator()) is batch and module.to_images(batch["image"]) is batch["image"]
    assert module.model.in_channels == 3


def test_training_step_lowers_the_loss_on_a_fixed_batch(sd_folder):
    module = latent_module(sd_folder)
    batch = fixed_batch()
    latents = module.prepare(batch, torch.Generator())["image"]
    assert latents.shape == (8, 4, 8, 16)

    def loss() -> float:
        module.train()
        return module.model_step(batch, torch.Generator().manual_seed(7))[0].item()

    before = loss()
    trainer = L.Trainer(max_steps=10, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, train_dataloaders=DataLoader([batch] * 10, batch_size=None))  # the same batch
    after = loss()
    assert after < 0.9 * before, (before, after)
    assert not any(p.requires_grad for p in module.latent_codec.parameters())


@pytest.mark.parametrize("channels", [3, 1])
def test_sampling_returns_images_of_the_pixel_shape(sd_folder, channels):
    module = latent_module(sd_folder, image_shape=(channels, 16, 32))

    def condition(requests, device):
        n = len(requests)
        tokens = torch.randn(n, 5, TOKEN_DIM, generator=torch.Generator().manual_seed(3))
        return Condition(tokens=tokens.to(device), token_mask=torch.ones(n, 5, dtype=torch.bool, device=device),
                         coherence=torch.ones(n, device=device))

    x = generate(module.sampling_model, ["a", "b", "c"], [0, 1, 2], condition=condition, pair=None,
                 image_shape=module.sample_shape((channels, 16, 32)), sampler="ddim", steps=3,
                 schedule={"name": "cosine", "shift": 1.0}, guidance_scale=0.0, eta=0.0, clip_x0=False, batch_size=2,
                 progress=False, to_images=module.to_images)
    assert x.shape == (3, channels, 16, 32) and x.min() >= -1 and x.max() <= 1 and x.std() > 0
    latents = generate(module.sampling_model, ["a"], [0], condition=condition, pair=None, image_shape=(4, 8, 16),
                       sampler="ddim", steps=3, schedule={"name": "cosine", "shift": 1.0}, guidance_scale=0.0,
                       eta=0.0, clip_x0=False, batch_size=1, progress=False)
    assert torch.allclose(x[:1], module.to_images(latents), atol=1e-5)  # the hook is the codec's decoder


@pytest.mark.gpu
def test_the_codec_follows_the_module_to_the_gpu(sd_folder):
    module = latent_module(sd_folder).to("cuda")
    batch = {k: v.to("cuda") for k, v in fixed_batch().items()}
    loss, _ = module.model_step(batch, torch.Generator("cuda").manual_seed(0))
    assert torch.isfinite(loss) and next(module.latent_codec.parameters()).device.type == "cuda"


def test_the_paper_scale_latent_preset_is_the_authors_cad_256_rin():
    from cad.backbones import build_backbone, count_parameters

    with torch.device("meta"):
        model = build_backbone("rin_text_latent256", token_dim=2048)  # FLAN-T5-XL's width
    assert (model.in_channels, model.image_size, model.patch_size) == (4, 32, 2)  # SD-VAE latents of 256x256 images
    assert round(count_parameters(model) / 1e6, 1) == 331.5  # as the authors' cad_256 (the preset's comment)
