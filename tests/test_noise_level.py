"""The noise-level classifier p(σ | x) of DMCMC (Kim & Ye, ICML 2023) on phantoms: the shipped weights
(integrity, loading), its accuracy on held-out phantoms against an untrained network, the adapter's
normalisation, Bayes restriction to a sub-grid and batch invariance, exact resume of its training,
and a tiny DMCMC run on phantoms with it."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from diffcourse.prior import noise_level as NL
from diffcourse.prior import pretrained
from diffcourse.prior.samplers import CountingDenoiser, dmcmc, draw_sigma
from diffcourse.prior.train import held_out_phantoms

from _util import gen

NAME = "noise_level_phantom64"


@pytest.fixture(scope="module")
def net():
    return pretrained.load_noise_level(NAME)


def test_shipped_classifier_is_small_listed_apart_and_verified(tmp_path, monkeypatch):
    assert NAME in pretrained.available("noise_level") and NAME not in pretrained.available()
    assert "phantom64" in pretrained.available() and "phantom64" not in pretrained.available("noise_level")
    meta = pretrained.info(NAME)
    assert meta["kind"] == "noise_level" and meta["steps"] == meta["config"]["steps"]
    assert "python -m diffcourse.prior.noise_level" in meta["command"]
    assert not any(a.startswith("/") for a in meta["command"].split())
    assert (pretrained.WEIGHTS_DIR / f"{NAME}.pt").stat().st_size < 0.5e6
    state = torch.load(pretrained.WEIGHTS_DIR / f"{NAME}.pt", weights_only=True)   # plain tensors only
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    with pytest.raises(ValueError, match="load_noise_level"):
        pretrained.load(NAME)
    with pytest.raises(ValueError, match="noise_level"):
        pretrained.load_noise_level("phantom64")
    for suffix in (".pt", ".json"):
        shutil.copy(pretrained.WEIGHTS_DIR / f"{NAME}{suffix}", tmp_path / f"{NAME}{suffix}")
    data = bytearray((tmp_path / f"{NAME}.pt").read_bytes())
    data[-100] ^= 0xFF
    (tmp_path / f"{NAME}.pt").write_bytes(bytes(data))
    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(RuntimeError, match="SHA-256"):
        pretrained.load_noise_level(NAME)


def test_predicted_sigma_tracks_the_true_sigma_on_held_out_phantoms(net):
    """Mean |log σ̂ - log σ| over 64 held-out phantoms at levels uniform over the grid (0.002 ... 80)
    is below 0.1 (the grid's spacing is log 1.18 = 0.17); at each of 0.01, 0.1, 1 and 10 the
    estimate is within 25 %. An untrained network of the same architecture is off by more than 1."""
    assert NL.log_sigma_error(net) < 0.1
    untrained = NL.NoiseLevelNet(net.config).eval()
    assert NL.log_sigma_error(untrained) > 1.0
    x0 = held_out_phantoms(8, 64, 20_001)
    for sigma in (0.01, 0.1, 1.0, 10.0):
        x = x0 + sigma * torch.randn(x0.shape, generator=gen(int(100 * sigma)))
        ratio = NL.predict_sigma(net, x) / sigma
        assert ratio.min() > 0.8 and ratio.max() < 1.25, (sigma, ratio)


def test_adapter_is_normalised_batch_invariant_and_restricts_by_bayes(net):
    x = held_out_phantoms(3, 64, 20_002) + 0.1 * torch.randn(3, 1, 64, 64, generator=gen(1))
    full = NL.log_p_sigma(net)(x)
    assert full.shape == (3, net.config.levels)
    torch.testing.assert_close(full.exp().sum(1), torch.ones(3))
    one_by_one = torch.cat([NL.log_p_sigma(net)(x[i:i + 1]) for i in range(3)])
    torch.testing.assert_close(full, one_by_one, atol=1e-5, rtol=1e-4)    # far tails: log p ~ -1e3
    sub = net.config.grid()[20:40]
    restricted = NL.log_p_sigma(net, sub)(x)                        # uniform prior over the sub-grid
    torch.testing.assert_close(restricted, torch.log_softmax(full[:, 20:40], 1), atol=1e-5, rtol=1e-4)
    assert NL.log_p_sigma(net, sub.double())(x.double()).dtype == torch.float64
    with pytest.raises(ValueError, match="sigma_grid"):
        NL.log_p_sigma(net, torch.tensor([0.1, 0.2, 0.3]))          # not levels of the grid
    with pytest.raises(ValueError, match="sigma_grid"):
        NL.log_p_sigma(net, sub.flip(0))


def test_training_resumes_exactly_and_exports_a_loadable_record(tmp_path, monkeypatch):
    cfg = NL.NoiseTrainConfig(steps=4, batch_size=2, size=32, warmup=2, checkpoint_every=2, pool=8,
                              net=NL.NoiseLevelConfig(levels=6, channels=(4, 4, 4, 4), hidden=8))
    whole, _ = NL.train_noise_level(cfg, tmp_path / "a")
    NL.train_noise_level(cfg, tmp_path / "b", stop_after=2)
    resumed, state = NL.train_noise_level(cfg, tmp_path / "b")
    assert state["step"] == 4 and len(state["losses"]) == 4
    for (k, v), w in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(v, w), k
    meta = NL.export_noise_level(tmp_path / "b", tmp_path / "w" / "tiny.pt")
    assert json.loads((tmp_path / "w" / "tiny.json").read_text())["sha256"] == meta["sha256"]
    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", tmp_path / "w")
    assert pretrained.available("noise_level") == ["tiny"] and pretrained.available() == []
    loaded = pretrained.load_noise_level("tiny")
    x = torch.rand(2, 1, 32, 32, generator=gen(2))
    torch.testing.assert_close(loaded(x), resumed(x))


def test_dmcmc_on_phantoms_with_the_classifier(net):
    """Two phantoms at σ = 0.2 (a sub-grid 0.05 ... 1): the Gibbs draws land within 1.5x of 0.2, and
    one DMCMC sweep + a 4-level Heun ODE (7 NFE) from the drawn σ gives images at least 20x closer to
    the phantoms in mean squared error (measured 53x; with σ forced 4x too high 7x, 4x too low 2.6x:
    the ODE invents structure or leaves noise)."""
    D = CountingDenoiser(pretrained.load("phantom64"))
    grid = net.config.grid()
    sub = grid[(grid > 0.05) & (grid < 1.0)]
    x0 = held_out_phantoms(2, 64, 20_003)
    x = x0 + 0.2 * torch.randn(x0.shape, generator=gen(3))
    log_p = NL.log_p_sigma(net, sub)
    s = draw_sigma(x.repeat(32, 1, 1, 1), sub, log_p, generator=gen(4))               # 32 draws each
    assert s.min() > 0.2 / 1.5 and s.max() < 0.2 * 1.5, s
    with torch.no_grad():
        out = dmcmc(D, x, sub, log_p, n_gibbs=1, n_ode=4, generator=gen(5))
    assert out.shape == x.shape and bool(torch.isfinite(out).all())
    assert D.evaluations == 2 * (1 + 7)
    assert ((out - x0) ** 2).mean() < ((x - x0) ** 2).mean() / 20
