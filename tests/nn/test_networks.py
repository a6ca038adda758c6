import pytest
import torch

from cdiplatform.nn import CDINN2D, CDINN3D, ModelConfig, build_model, cdi_nn_2d_config, cdi_nn_3d_config


def test_cdi_nn_2d_shapes_and_range():
    model = build_model(cdi_nn_2d_config())
    assert isinstance(model, CDINN2D)
    with torch.no_grad():
        amp, p = model(torch.rand(5, 1, 32, 32))
    assert amp.shape == p.shape == (5, 1, 32, 32)
    assert 0 <= float(amp.min()) and float(amp.max()) <= 1
    convs = [m for m in model.shape_net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 32, 64, 64, 128, 128, 128, 128, 64, 64, 32, 32, 1]
    assert all(c.kernel_size == (3, 3) for c in convs)


def test_cdi_nn_3d_full_size_layout():
    model = build_model(cdi_nn_3d_config())
    assert isinstance(model, CDINN3D)
    enc = [m.out_channels for m in model.encoder.modules() if isinstance(m, torch.nn.Conv3d)]
    dec = [m.out_channels for m in model.shape_decoder.modules() if isinstance(m, torch.nn.Conv3d)]
    assert enc == [64, 64, 128, 128, 256, 256]
    assert dec == [256, 256, 128, 128, 64, 64, 1]
    drops = [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    assert drops and set(drops) == {0.1}
    assert isinstance(model.encoder[0], torch.nn.Dropout)  # dropout on the input
    with torch.inference_mode():
        code = model.encoder(torch.zeros(1, 1, 32, 32, 32))
    assert code.shape == (1, 256, 4, 4, 4)


def test_cdi_nn_3d_reduced_forward():
    model = build_model(cdi_nn_3d_config(reduced=True)).eval()
    amp, p = model(torch.rand(2, 1, 32, 32, 32))
    assert amp.shape == p.shape == (2, 1, 32, 32, 32)


@pytest.mark.parametrize("ndim", [2, 3])
def test_batch_norm_and_leaky_relu_follow_every_hidden_conv(ndim):
    arch = "cdi_nn_2d" if ndim == 2 else "cdi_nn_3d"
    config = ModelConfig(arch=arch, ndim=ndim, size=8, widths=(2, 4), batch_norm=True, activation="leaky_relu")
    model = build_model(config)
    layers = [m for m in model.modules() if not isinstance(m, torch.nn.Sequential) and m is not model]
    convs = [i for i, m in enumerate(layers) if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv3d))]
    norm = torch.nn.BatchNorm2d if ndim == 2 else torch.nn.BatchNorm3d
    hidden = [i for i in convs if not isinstance(layers[i + 1], torch.nn.Sigmoid)]
    assert len(convs) - len(hidden) == 2  # one output conv per network (2D) or decoder (3D)
    for i in hidden:
        assert isinstance(layers[i + 1], norm) and isinstance(layers[i + 2], torch.nn.LeakyReLU)
    assert not any(isinstance(m, torch.nn.ReLU) for m in layers)
    with pytest.raises(ValueError, match="activation"):
        ModelConfig(arch=arch, ndim=ndim, activation="tanh")


@pytest.mark.parametrize("scaling", ["linear", "log"])
@pytest.mark.parametrize("ndim", [2, 3])
def test_first_convolution_sees_the_scaled_input(ndim, scaling):
    arch = "cdi_nn_2d" if ndim == 2 else "cdi_nn_3d"
    model = build_model(ModelConfig(arch=arch, ndim=ndim, size=8, widths=(2, 4), input_scaling=scaling,
                                    input_floor=1e-2))
    plain = build_model(ModelConfig(arch=arch, ndim=ndim, size=8, widths=(2, 4)))
    assert model.state_dict().keys() == plain.state_dict().keys()  # the scaling has no weights
    seen = []
    first = next(m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv3d)))
    first.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    x = torch.rand(2, 1, *(8,) * ndim) ** 4
    with torch.no_grad():
        model(x)
    want = x if scaling == "linear" else torch.log1p(x / 1e-2) / torch.log1p(torch.tensor(1 / 1e-2))
    torch.testing.assert_close(seen[0], want)
    assert float(seen[0].max()) <= 1.0


def test_model_refuses_wrong_input_shape():
    model = build_model(ModelConfig(arch="cdi_nn_2d", ndim=2, size=16, widths=(4, 8)))
    with pytest.raises(ValueError, match=r"\(B, 1, 16, 16\)"):
        model(torch.rand(2, 1, 32, 32))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"arch": "unet", "ndim": 2}, "unknown architecture"),
        ({"arch": "cdi_nn_2d", "ndim": 2, "size": 36}, "divisible"),
        ({"arch": "cdi_nn_3d", "ndim": 3, "dropout": 1.0}, "dropout"),
        ({"arch": "cdi_nn_3d", "ndim": 3, "oversampling": (3.0, 2.0)}, "oversampling"),
        ({"arch": "cdi_nn_3d", "ndim": 3, "input_scaling": "sqrt"}, "input_scaling"),
        ({"arch": "cdi_nn_3d", "ndim": 3, "input_floor": 0.0}, "input_floor"),
    ],
)
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ModelConfig(**kwargs)


def test_config_round_trip_through_json_dict():
    config = cdi_nn_3d_config(reduced=True, epochs=(1, 2, 3, 4)).replace(oversampling=(1.8, 2.4))
    again = ModelConfig.from_dict(config.to_dict())
    assert again == config
    assert again.training.epochs == 10 and again.training.phase_of_epoch(3) == 2
    with pytest.raises(ValueError, match="unknown model config keys: colour"):
        ModelConfig.from_dict({**config.to_dict(), "colour": 1})


def test_build_model_seeded_and_leaves_global_rng():
    config = ModelConfig(arch="cdi_nn_2d", ndim=2, size=16, widths=(4, 8))
    state = torch.get_rng_state()
    a, b, c = build_model(config, seed=1), build_model(config, seed=1), build_model(config, seed=2)
    assert torch.equal(torch.get_rng_state(), state)
    pa, pb, pc = (next(m.parameters()) for m in (a, b, c))
    assert torch.equal(pa, pb) and not torch.equal(pa, pc)
