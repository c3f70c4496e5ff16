"""Training: the EDM loss against its closed form, exact resume, learning, export provenance."""
import dataclasses
import hashlib
import json

import torch

from diffcourse.prior.train import (PRESETS, edm_loss, export, phantom_batch, sharp_phantom_batch, train,
                                    training_batch)

TINY = dataclasses.replace(PRESETS["tiny"], steps=10, checkpoint_every=4)


def test_edm_loss_closed_form_for_gaussian_data():
    """x0 ~ N(mu, tau^2) per pixel, exact denoiser: E||D - x0||^2 = tau^2 s^2 / (tau^2 + s^2) per pixel."""
    mu, tau, sigma, sd = 0.3, 0.2, 0.4, 0.5
    g = torch.Generator().manual_seed(0)
    x0 = mu + tau * torch.randn(4000, 1, 4, 4, generator=g, dtype=torch.float64)

    def exact(x, s):
        s = torch.as_tensor(s, dtype=x.dtype).reshape(-1, 1, 1, 1)
        return mu + tau**2 / (tau**2 + s**2) * (x - mu)

    loss = edm_loss(exact, x0, g, P_mean=float(torch.tensor(sigma).log()), P_std=0.0, sigma_data=sd)
    weight = (sigma**2 + sd**2) / (sigma * sd) ** 2
    expected = weight * tau**2 * sigma**2 / (tau**2 + sigma**2)
    assert abs(loss.mean().item() - expected) < 0.03 * expected
    # a worse denoiser (no shrinkage at all) has a larger loss
    worse = edm_loss(lambda x, s: x, x0, g, P_mean=float(torch.tensor(sigma).log()), P_std=0.0)
    assert worse.mean() > 1.5 * loss.mean()


def test_phantom_batch_is_seeded_and_mixed():
    a = phantom_batch(8, 32, torch.Generator().manual_seed(0))
    b = phantom_batch(8, 32, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.shape == (8, 1, 32, 32)
    assert 0 <= a.min() and a.max() <= 1


def test_sharp_phantom_batch_mixes_the_families():
    x = sharp_phantom_batch(64, 32, torch.Generator().manual_seed(0))
    assert torch.equal(x, sharp_phantom_batch(64, 32, torch.Generator().manual_seed(0)))
    n_levels = torch.tensor([len(torch.unique(im)) for im in x])
    sharp = (n_levels < 30).float().mean()          # hard-edged images have few grey levels
    assert 0.25 < sharp < 0.6, sharp                # 2/5 of the mix is sharp-edged
    cfg = dataclasses.replace(PRESETS["phantom64_sharp"], size=32, batch_size=64)
    assert torch.equal(training_batch(cfg, torch.Generator().manual_seed(0)), x)


def test_init_starts_from_the_given_weights(tmp_path):
    first, _ = train(TINY, None)
    torch.save(first.state_dict(), tmp_path / "init.pt")
    zero = dataclasses.replace(TINY, steps=0, init=str(tmp_path / "init.pt"))
    started, state = train(zero, None)
    for a, b in zip(first.state_dict().values(), started.state_dict().values()):
        assert torch.equal(a, b)
    assert state["config"]["init"] == str(tmp_path / "init.pt")
    assert "init" not in TINY.to_dict()             # records without init are unchanged
    try:
        train(dataclasses.replace(TINY, init=str(tmp_path / "missing.pt")), None)
    except FileNotFoundError as err:
        assert "init" in str(err)
    else:
        raise AssertionError("a missing init file must fail")


def test_exact_resume_is_bitwise(tmp_path):
    uninterrupted, _ = train(TINY, None)
    train(TINY, tmp_path, stop_after=6)                    # "interrupted" after step 6
    resumed, state = train(TINY, tmp_path)
    assert state["step"] == TINY.steps and len(state["losses"]) == TINY.steps
    for a, b in zip(uninterrupted.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)


def test_resume_refuses_other_settings(tmp_path):
    train(TINY, tmp_path, stop_after=4)
    other = dataclasses.replace(TINY, lr=TINY.lr * 2)
    try:
        train(other, tmp_path)
    except ValueError as err:
        assert "other settings" in str(err)
    else:
        raise AssertionError("resuming with other settings must fail")


def test_resume_across_a_learning_rate_decay_added_at_the_end(tmp_path):
    train(TINY, tmp_path)                                    # 10 steps at a constant rate
    longer = dataclasses.replace(TINY, steps=14, lr_decay_steps=4, lr_final=0.1)
    resumed, state = train(longer, tmp_path)                 # the decay starts where the run ended
    fresh, _ = train(longer, None)
    for a, b in zip(fresh.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    assert state["step"] == 14
    early = dataclasses.replace(TINY, steps=14, lr_decay_steps=8)   # would have decayed from step 6
    try:
        train(early, tmp_path)
    except ValueError as err:
        assert "other settings" in str(err)
    else:
        raise AssertionError("a schedule that differs before the checkpoint's step must not resume")


def test_tiny_model_learns():
    cfg = dataclasses.replace(PRESETS["tiny"], steps=60)
    _, state = train(cfg, None)
    first, last = sum(state["losses"][:10]) / 10, sum(state["losses"][-10:]) / 10
    assert last < 0.6 * first, (first, last)


def test_export_records_provenance(tmp_path):
    train(TINY, tmp_path / "run")
    meta = export(tmp_path / "run", tmp_path / "w" / "tiny.pt")
    on_disk = json.loads((tmp_path / "w" / "tiny.json").read_text())
    assert on_disk["sha256"] == hashlib.sha256((tmp_path / "w" / "tiny.pt").read_bytes()).hexdigest()
    assert on_disk["steps"] == TINY.steps and on_disk["config"]["lr"] == TINY.lr
    assert meta["final_loss"] > 0
    weights = torch.load(tmp_path / "w" / "tiny.pt", weights_only=True)
    assert set(weights) == set(train(TINY, tmp_path / "run")[0].state_dict())


def test_command_line_trains_resumes_and_exports(tmp_path, capsys):
    """`python -m diffcourse.prior.train --preset tiny ...`: the checkpoint records the settings, the
    revision and the final loss; a second call resumes to more steps; the printed loss is the mean of
    the steps actually taken."""
    from diffcourse.prior.train import final_loss, main

    run, out = tmp_path / "run", tmp_path / "w" / "tiny.pt"
    main(["--preset", "tiny", "--run-dir", str(run), "--steps", "5"])
    saved = torch.load(run / "checkpoint.pt", weights_only=True)
    assert saved["step"] == 5 and saved["config"]["lr"] == PRESETS["tiny"].lr and "revision" in saved
    assert saved["final_loss"] == final_loss(saved["losses"]) == sum(saved["losses"]) / 5
    assert f"mean loss of the last 5 steps {saved['final_loss']:.4f}" in capsys.readouterr().out
    main(["--preset", "tiny", "--run-dir", str(run), "--steps", "8", "--export", str(out)])
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["steps"] == 8 and "--preset tiny --steps 8" in meta["command"]
    assert meta["final_loss"] == torch.load(run / "checkpoint.pt", weights_only=True)["final_loss"]


def test_training_leaves_the_global_random_state_alone():
    before = torch.random.get_rng_state()
    train(dataclasses.replace(TINY, steps=1), None)
    assert torch.equal(torch.random.get_rng_state(), before)


def test_held_out_phantoms_for_any_count_are_prefixes_of_one_family():
    from diffcourse.prior.train import held_out_phantoms
    for n in (1, 2, 3, 4, 5):
        x = held_out_phantoms(n, 32)
        assert x.shape == (n, 1, 32, 32) and 0 <= float(x.min()) and float(x.max()) <= 1
    # four images: three heads then one ellipse phantom, the same heads as in a set of eight
    torch.testing.assert_close(held_out_phantoms(4, 32)[:3], held_out_phantoms(8, 32)[:3])
