"""The guidance-aligned training loss (issue 14; "Bridging the Gap", arXiv 2311.00938): off by default, the plain loss
at w = 0, the hand-computed gradient, per-sample scales, the task's negative branch, and a short real training."""
import pytest
import torch

from cad.diffusion.guidance_loss import GuidanceLoss, guided_prediction
from cad.experiment import stages
from cad.experiment.config import ConfigError, resolve
from cad.experiment.runs import is_done, run_dirs
from tests.test_class_conditional import make_batch, make_module


def test_off_by_default_and_w_zero_is_the_plain_prediction():
    assert not GuidanceLoss().enabled
    assert resolve("smoke", "mnist", "cad").train.guidance_loss.w == 0.0
    pos, neg = torch.randn(2, 4, 1, 3, 3).unbind(0)
    torch.testing.assert_close(guided_prediction(pos, neg, torch.zeros(4)), pos)
    w = torch.tensor([0.0, 1.0, 2.0, 3.0])
    torch.testing.assert_close(guided_prediction(pos, neg, w), pos + w[:, None, None, None] * (pos - neg))


@pytest.mark.parametrize("method", ["cfg", "cad"])
def test_the_aligned_step_at_w_zero_is_the_plain_step(method, monkeypatch):
    """Both branches run (two forwards), every sample draws w = 0: the loss is the plain step's, to the bit."""
    batch = make_batch()
    plain = make_module(method)
    aligned = make_module(method, guidance_loss={"w": 1.0})
    aligned.load_state_dict(plain.state_dict())
    monkeypatch.setattr(GuidanceLoss, "draw_scales", lambda self, n, device, generator=None: torch.zeros(n))
    expected = plain.model_step(batch, torch.Generator().manual_seed(3))[1]
    got = aligned.model_step(batch, torch.Generator().manual_seed(3))[1]
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("stop_gradient", [False, True])
def test_the_gradient_matches_a_hand_computation_on_a_linear_model(stop_gradient):
    """eps(x, c) = x W + e_c on flattened inputs; L = mean_i ||eps_i - ((1 + w_i) p_i - w_i n_i)||^2 / D gives
    dL/dp_i = -2 (1 + w_i) r_i / (B D), dL/dn_i = 2 w_i r_i / (B D) (0 with the stop-gradient), r = eps - combination;
    W collects x^T of both, e_c the rows of its branch."""
    torch.manual_seed(0)
    b, d = 5, 6
    x, target = torch.randn(b, d), torch.randn(b, d)
    weight, emb = torch.randn(d, d, requires_grad=True), torch.randn(2, d, requires_grad=True)  # row 0 pos, row 1 neg
    w = torch.tensor([0.0, 0.5, 1.0, 2.0, 3.0])
    pos, neg = x @ weight + emb[0], x @ weight + emb[1]
    loss = (target - guided_prediction(pos, neg, w, stop_gradient)).square().mean()
    loss.backward()
    with torch.no_grad():
        r = target - ((1 + w[:, None]) * pos - w[:, None] * neg)
        d_pos = -2 * (1 + w[:, None]) * r / (b * d)
        d_neg = torch.zeros_like(r) if stop_gradient else 2 * w[:, None] * r / (b * d)
        torch.testing.assert_close(weight.grad, x.T @ (d_pos + d_neg))
        torch.testing.assert_close(emb.grad, torch.stack([d_pos.sum(0), d_neg.sum(0)]))


def test_scales_fixed_drawn_from_a_range_and_a_plain_share():
    g = torch.Generator().manual_seed(0)
    assert torch.equal(GuidanceLoss(w=2.0).draw_scales(8, torch.device("cpu"), g), torch.full((8,), 2.0))
    drawn = GuidanceLoss(w=1.0, w_max=3.0).draw_scales(20_000, torch.device("cpu"), g)
    assert drawn.min() >= 1.0 and drawn.max() <= 3.0 and abs(drawn.mean().item() - 2.0) < 0.02
    shared = GuidanceLoss(w=1.0, plain_share=0.25).draw_scales(20_000, torch.device("cpu"), g)
    assert set(shared.unique().tolist()) == {0.0, 1.0} and abs((shared == 0).float().mean().item() - 0.25) < 0.01


def test_the_negative_branch_is_the_null_label_for_cfg_and_coherence_zero_for_cad():
    batch = make_batch()
    cfg_module = make_module("cfg")
    cond = cfg_module.condition(batch, torch.Generator().manual_seed(0))
    pos, neg = cfg_module.training_pair(cond)
    assert torch.equal(pos.label_null, cond.label_null) and neg.label_null.all()
    cad_module = make_module("cad")
    cond = cad_module.condition(batch)
    pos, neg = cad_module.training_pair(cond)
    assert torch.equal(pos.coherence, batch["coherence"]) and not neg.coherence.any()
    assert torch.equal(pos.label, neg.label) and not neg.label_null.any()


def test_a_method_without_guidance_is_refused():
    with pytest.raises(ConfigError, match="method 'baseline' has no guided branch"):
        resolve("smoke", "mnist", "baseline", ["train.guidance_loss.w=1"])


@pytest.mark.parametrize("override, message", [
    ("train.guidance_loss.w=-1", r"train.guidance_loss.w=-1 is not valid; valid: w >= 0"),
    ("train.guidance_loss.w_max=0.5", r"train.guidance_loss.w_max=0.5 is not valid"),
    ("train.guidance_loss.plain_share=1", r"train.guidance_loss.plain_share=1 is not valid"),
])
def test_bad_settings_name_the_valid_ones(override, message):
    with pytest.raises(ConfigError, match=message):
        resolve("smoke", "mnist", "cad", ["train.guidance_loss.w=1", override])


def test_a_short_training_with_the_aligned_loss_runs_to_the_end(tmp_path):
    cfg = resolve("smoke", "mnist", "cad", ["train.total_steps=6", "train.checkpoint_every=3", "data.subset=256",
                                            "data.batch_size=16", "train.guidance_loss.w=1",
                                            "train.guidance_loss.w_max=3", "train.guidance_loss.plain_share=0.1"])
    dirs = run_dirs(cfg, "aligned", tmp_path)
    stages.train(cfg, dirs, accelerator="cpu", devices=1, num_nodes=1, progress=False)
    assert is_done(dirs.train, "train") and (dirs.train / "model_ema.pt").is_file()


def test_the_ablation_runs_each_method_once_per_loss_and_labels_its_lines():
    from cad.experiment import cli, report
    from cad.experiment.config import TRAIN_KEYS, config_hash, load_experiment

    experiment = load_experiment("guidance_loss")
    planned = cli._configs(experiment, "cpu", ["fashion_mnist"], experiment.methods, [],
                           cli.parse_args(["guidance_loss"]))
    assert {(r.method, r.variant) for r in planned} == {(m, v) for m in ("cfg", "cad") for v in ("plain", "aligned")}
    trains = {(r.method, r.variant): config_hash(r.cfg, TRAIN_KEYS) for r in planned}
    assert len(set(trains.values())) == 4  # one trained model per method and loss, shared by its sweep points
    # the plain CAD run is table5d's CAD run in fp32 (the ablation pins fp32 at the cpu scale; table5d's `auto` is bf16
    # where bf16 is native), so a table5d run made in fp32 is reused, on any machine
    table5d_cad = resolve("cpu", "fashion_mnist", "cad", ["train.precision=32-true"])
    assert trains[("cad", "plain")] == config_hash(table5d_cad, TRAIN_KEYS)
    aligned = next(r for r in planned if r.variant == "aligned")
    assert aligned.cfg.train.guidance_loss.w_max == 3.0
    results = [report.RunResult(r.dataset, r.method, r.value, r.cfg, None, {"fid": 1.0}, r.variant) for r in planned]
    assert results[0].label == "CFG (plain)" and report.output_name(experiment, results) == "guidance_loss"
    header, first = report.sweep_csv(results, experiment.sweep_key).splitlines()[:2]
    assert header == "dataset,method,variant,sample.guidance_scale,fid" and first == "fashion_mnist,cfg,plain,0.0,1.0"


def test_the_unconditional_measure_shows_the_guidance_free_points_under_its_own_name():
    """sample.null_label=true is refused with guidance: the table shows each trained CFG run at w = 0 only (the
    whole experiment's methods and values are tried; CAD, without condition dropout, has no null label)."""
    from cad.experiment import cli, report
    from cad.experiment.config import load_experiment

    experiment = load_experiment("guidance_loss")
    args = cli.parse_args(["guidance_loss", "sample.null_label=true"])
    shown = cli.shown_configs(experiment, args, ["fashion_mnist"])
    assert sorted((r.method, r.variant, r.value) for r in shown) == [("cfg", "aligned", 0.0), ("cfg", "plain", 0.0)]
    results = [report.RunResult(r.dataset, r.method, r.value, r.cfg, None, {"fid": 1.0}, r.variant) for r in shown]
    assert report.output_name(experiment, results) == "guidance_loss-null_label-True"
