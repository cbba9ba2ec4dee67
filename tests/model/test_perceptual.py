import pytest
import torch

from archiver.errors import InputError
from archiver.model.perceptual import Lpips, MsSsimDistance, load_lpips, make_perceptual


def _save_lpips_layout(folder, seed=0):
    """Random weights saved the way torchvision (alexnet-*.pth) and lpips (alex.pth) publish theirs."""
    torch.manual_seed(seed)
    model = Lpips()
    folder.mkdir(exist_ok=True)
    net = {k: torch.randn_like(v) * 0.05 for k, v in model.net.state_dict().items()}
    net["classifier.1.weight"] = torch.zeros(1)  # torchvision's file also holds the classifier
    torch.save(net, folder / "alexnet-owt-7be5be79.pth")
    lin = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate((64, 192, 384, 256, 256))}
    torch.save(lin, folder / "alex.pth")
    return net, lin


def test_lpips_loads_the_published_layout(tmp_path):
    net, lin = _save_lpips_layout(tmp_path / "w")
    model = load_lpips(tmp_path / "w")
    assert torch.equal(model.net.features[0].weight, net["features.0.weight"])
    assert torch.equal(model.lins[4][1].weight, lin["lin4.model.1.weight"])
    x = torch.rand(1, 3, 64, 64)
    assert model(x, x).item() == pytest.approx(0.0, abs=1e-6)
    assert model(torch.rand(1, 3, 64, 64), x).item() > 0
    assert not any(p.requires_grad for p in model.parameters())
    y = torch.rand(1, 3, 64, 64, requires_grad=True)
    model(y, x).backward()  # gradients reach the image (the codec), not the frozen network
    assert y.grad is not None and y.grad.abs().sum() > 0


def test_lpips_without_weights_says_what_to_do(tmp_path):
    with pytest.raises(InputError, match=r"--perceptual lpips needs pretrained weights, which cannot be downloaded here: pass --lpips-weights DIR"):
        make_perceptual("lpips", None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"empty: LPIPS weights folder must hold alexnet-\*\.pth and alex\.pth"):
        load_lpips(tmp_path / "empty")


def test_lpips_with_wrong_weights_is_an_input_error(tmp_path):
    _save_lpips_layout(tmp_path / "w")
    torch.save({"lin0.model.1.weight": torch.zeros(3)}, tmp_path / "w" / "alex.pth")
    with pytest.raises(InputError, match="LPIPS weights do not load"):
        load_lpips(tmp_path / "w")


def test_msssim_distance():
    d = MsSsimDistance()
    x = torch.rand(2, 3, 128, 128)
    assert d(x, x).item() == pytest.approx(0.0, abs=1e-5)
    assert 0 < d((x + 0.2 * torch.randn_like(x)).clamp(0, 1), x).item() < 1
    assert make_perceptual("none") is None
    with pytest.raises(InputError, match="--perceptual must be one of none, msssim, lpips"):
        make_perceptual("vgg")


def test_msssim_matches_the_reference_implementation():
    """Same value as pytorch-msssim (the benchmarks' metric) where that one is defined (side > 96 px)."""
    pytorch_msssim = pytest.importorskip("pytorch_msssim")
    torch.manual_seed(1)
    x = torch.rand(2, 3, 128, 128)
    y = (x + 0.1 * torch.randn_like(x)).clamp(0, 1)
    ref = pytorch_msssim.ms_ssim(y, x, data_range=1.0, win_size=7)
    assert MsSsimDistance()(y, x).item() == pytest.approx(1 - ref.item(), abs=1e-4)


@pytest.mark.parametrize("side", [8, 16, 32, 64])
def test_msssim_works_on_small_crops(side):
    x = torch.rand(1, 3, side, side)
    d = MsSsimDistance()
    assert d(x, x).item() == pytest.approx(0.0, abs=1e-5)
    assert d(torch.rand(1, 3, side, side), x).item() > 0.1
