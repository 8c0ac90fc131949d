"""Coherence-Aware Diffusion (CAD) reproduction library.

Sub-packages, one concept each:
    diffusion/     schedules (t -> gamma), noising, losses, self-conditioning
    sampling/      DDPM and DDIM samplers with per-sample seeds
    guidance.py    classifier-free guidance and coherence-aware CFG as denoiser wrappers
    conditioning/  the Condition batch and its embedders (label, coherence, text, spatial maps)
    backbones/     RIN and a small U-Net, in a registry keyed by preset name
    data/          datamodules, label-noise synthesis, classifiers
    training/      optimizer, learning-rate schedule, EMA
    tasks/         thin LightningModules over the shared denoiser
    experiment/    config composition, run directories, the train -> sample -> evaluate -> render stages
"""
