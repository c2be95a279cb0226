"""HarDNet: the harmonic link rule, parity with pytorchcv, and the official PyTorch naming."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from pytorchcv.model_provider import get_model as pytorchcv_model

import models
from models import registry
from models.hardnet_arch import CONFIGS, block_output_layers, harmonic_layer
from tests.torch_utils import official_state_dict, random_images, randomize_batchnorm


@pytest.mark.parametrize(
    "k, links",
    [
        (1, (0,)),
        (2, (1, 0)),
        (3, (2,)),
        (4, (3, 2, 0)),
        (8, (7, 6, 4, 0)),
        (12, (11, 10, 8)),
        (16, (15, 14, 12, 8, 0)),
    ],
)
def test_links_are_nearest_first(k, links):
    assert harmonic_layer(k, 64, 14, 1.7).links == links


def test_widths_and_block_output_match_the_spec():
    # hardnet68 block 1 (spec 1.3): input 64, growth 14, m 1.7.
    layers = [harmonic_layer(k, 64, 14, 1.7) for k in range(1, 9)]
    assert [s.out_channels for s in layers] == [14, 24, 14, 40, 14, 24, 14, 68]
    assert [s.in_channels for s in layers] == [64, 78, 24, 102, 40, 54, 24, 142]
    assert block_output_layers(8) == [1, 3, 5, 7, 8]
    assert sum(layers[k - 1].out_channels for k in block_output_layers(8)) == 124
    # hardnet68 block 5: [160, 272, 160, 462] -> 782, in_ch [640, 800, 272, 1072].
    last = [harmonic_layer(k, 640, 160, 1.7) for k in range(1, 5)]
    assert [s.out_channels for s in last] == [160, 272, 160, 462]
    assert [s.in_channels for s in last] == [640, 800, 272, 1072]


@pytest.mark.slow  # 224 px parity
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_logits_match_pytorchcv(name):
    """pytorchcv (random init, random BN statistics, eval) vs ours with its converted weights."""
    reference = randomize_batchnorm(pytorchcv_model(name, pretrained=False), seed=1)
    x_torch, x = random_images(2, 224, 224, seed=2)
    import torch

    with torch.no_grad():
        expected = reference(x_torch).numpy()
    model = models.from_torch(name, reference.state_dict())
    got = np.asarray(jax.jit(lambda m, x: m(x))(model, x))
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    np.testing.assert_array_equal(got.argmax(-1), expected.argmax(-1))


def _random_canonical(name: str) -> dict[str, np.ndarray]:
    """Random weights of the right shapes, without running the model's init."""
    rng = np.random.default_rng(0)
    shapes = models.weights.shapes(registry.abstract(name))
    return {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}


# Key counts and sample keys of the official state dicts (spec 3.2, measured on hardnet.py).
OFFICIAL = {
    "hardnet68": (
        404,
        {
            "base.0.conv.weight": (32, 3, 3, 3),
            "base.3.layers.0.conv.weight": (14, 64, 3, 3),
            "base.15.conv.weight": (1024, 782, 1, 1),
            "base.16.3.weight": (1000, 1024),
        },
    ),
    "hardnet85": (506, {"base.19.3.weight": (1000, 1280)}),
    "hardnet68ds": (
        788,
        {
            "base.3.layers.0.layer1.conv.weight": (14, 64, 1, 1),
            "base.3.layers.0.layer2.dwconv.weight": (14, 1, 3, 3),
            "base.2.dwconv.weight": (64, 1, 3, 3),
        },
    ),
    "hardnet39ds": (446, {"base.14.3.weight": (1000, 1024)}),
}


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_official_naming_round_trip(name):
    count, samples = OFFICIAL[name]
    original = _random_canonical(name)
    sd = official_state_dict(original)
    assert len(sd) == count
    for key, shape in samples.items():
        assert sd[key].shape == shape, key
    model = models.from_torch(name, {"state_dict": sd})  # wrapper keys are unwrapped
    restored = models.weights.flatten(model)
    assert restored.keys() == original.keys()
    for key, value in original.items():
        np.testing.assert_array_equal(restored[key], value)


def test_torch_file_loader_reads_pth_and_safetensors(tmp_path):
    import torch
    from safetensors.torch import save_file

    reference = pytorchcv_model("hardnet39ds", pretrained=False)
    sd = reference.state_dict()
    torch.save({"state_dict": sd}, tmp_path / "h39.pth")
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "h39.safetensors"))
    for path in ("h39.pth", "h39.safetensors"):
        loaded = models.load_torch_file(tmp_path / path)
        model = models.from_torch("hardnet39ds", loaded, num_classes=1000)
        np.testing.assert_array_equal(
            models.weights.flatten(model)["base.14.3.bias"], sd["output.fc.bias"].numpy()
        )


def test_convert_cli_writes_canonical_weights(tmp_path, capsys):
    import torch

    from models import torch_import

    sd = pytorchcv_model("hardnet39ds", pretrained=False).state_dict()
    torch.save(sd, tmp_path / "h39.pth")
    torch_import.main(["hardnet39ds", str(tmp_path / "h39.pth"), str(tmp_path / "h39.safetensors")])
    flat, meta = models.weights.read(tmp_path / "h39.safetensors")
    assert meta["model"] == "hardnet39ds" and meta["source"] == "h39.pth"
    np.testing.assert_array_equal(flat["base.14.3.bias"], sd["output.fc.bias"].numpy())
    assert "wrote" in capsys.readouterr().out


def test_mis_shaped_torch_weights_name_the_key():
    sd = pytorchcv_model("hardnet39ds", pretrained=False).state_dict()
    sd["features.init_block.conv1.conv.weight"] = sd["features.init_block.conv1.conv.weight"][:, :2]
    with pytest.raises(ValueError, match=r"base\.0\.conv\.kernel"):
        models.from_torch("hardnet39ds", sd)
