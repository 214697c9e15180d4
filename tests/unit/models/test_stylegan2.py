"""StyleGAN2-ADA networks: the official parameter counts, the official outputs (golden file), sizes, refusals, truncation, noise.

The golden file data/stylegan2_golden.pt holds NVlabs/stylegan2-ada-pytorch's own state dicts, inputs and outputs for
small conditional networks (three generators, three discriminators: skip/orig/resnet), made once on the CPU with the
official repository at commit d72cc7d041b42ec8e806021a205ed9349f87c6a4 by
    python scripts/make_stylegan2_golden.py /tmp/sg2ada-git
(a checkout of that commit; the script's docstring says what the file holds). Ours must match within 1e-4.
"""

from pathlib import Path

import pytest
import torch

from gantrain.errors import UserError
from gantrain.models.stylegan2 import Discriminator, Generator
from gantrain.models.stylegan2_convert import convert_discriminator, convert_generator, load_discriminator, load_generator

GOLDEN = Path(__file__).parent / "data" / "stylegan2_golden.pt"
TOLERANCE = 1e-4
TINY = dict(channel_base=64, channel_max=16, num_fp16_res=2)  # widths 16, 8, 4 at 4x4, 8x8, 16x16


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# (G, G.mapping, G's buffers, D, D's buffers) of the official networks built with train.py's settings for each --cfg
# (z_dim = w_dim = 512, num_fp16_res 4, conv_clamp 256), counted on the CPU with the official training/networks.py.
# Buffers: noise_const per synthesis layer, w_avg, and the 4x4 resample_filter of each layer and block (ours too,
# though ours are not saved in the state dict, being constant).
OFFICIAL_COUNTS = {
    "cifar": ((3, 32, 32), 0, 32768, 2, 32, "orig", (19_947_539, 525_312, 3_392, 20_720_641, 176)),
    "cifar, 10 classes": ((3, 32, 32), 10, 32768, 2, 32, "orig", (20_215_315, 793_088, 3_392, 23_089_664, 176)),
    "paper256": ((3, 256, 256), 0, 16384, 8, 8, "resnet", (24_767_458, 2_101_248, 175_568, 24_001_089, 416)),
    "paper256, 10 classes": ((3, 256, 256), 10, 16384, 8, 8, "resnet", (25_035_234, 2_369_024, 175_568, 26_370_112, 416)),
}


@pytest.mark.parametrize("config", OFFICIAL_COUNTS)
def test_parameter_counts_equal_the_official_networks(config):
    shape, classes, channel_base, mapping_layers, mbstd, architecture, official = OFFICIAL_COUNTS[config]
    with torch.device("meta"):  # shapes only: a 25M-parameter network costs nothing
        G = Generator(shape, num_classes=classes, channel_base=channel_base, mapping_layers=mapping_layers)
        D = Discriminator(shape, num_classes=classes, channel_base=channel_base, architecture=architecture, mbstd_group_size=mbstd)
    buffers = lambda module: sum(b.numel() for b in module.buffers())  # noqa: E731
    assert (count(G), count(G.mapping), buffers(G), count(D), buffers(D)) == official


@pytest.fixture(scope="module")
def golden() -> dict[str, torch.Tensor]:
    return torch.load(GOLDEN, weights_only=True)


def official_state(golden: dict, network: str) -> dict[str, torch.Tensor]:
    """The official state dict of one network of the golden file (its keys without the network's prefix)."""
    prefix = f"{network}."
    keys = [k for k in golden if k.startswith(prefix) and k[len(prefix):].split(".")[0] in ("mapping", "synthesis", "b4", "b8", "b16")]
    return {k[len(prefix):]: golden[k] for k in keys}


def max_diff(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    assert ours.shape == theirs.shape
    return (ours - theirs).abs().max().item()


@pytest.mark.parametrize("network,architecture", [("G", "skip"), ("G_orig", "orig"), ("G_resnet", "resnet")])
def test_generator_computes_the_official_outputs(golden, network, architecture):
    state = official_state(golden, network)
    _, kwargs = convert_generator(state, num_fp16_res=2, conv_clamp=8.0)
    assert kwargs == dict(
        shape=[3, 16, 16], z_dim=32, num_classes=5, w_dim=32, mapping_layers=2, architecture=architecture,
        channel_base=128, channel_max=16, num_fp16_res=2, conv_clamp=8.0,
    )
    G = load_generator(state, num_fp16_res=2, conv_clamp=8.0).eval()
    z, labels, out = golden["z"], golden["labels"], lambda name: golden[f"{network}.{name}"]  # noqa: E731
    run = lambda **kw: G(z, labels, noise_mode="const", force_fp32=True, **kw)  # noqa: E731
    with torch.no_grad():
        diffs = {
            "ws": max_diff(G.mapping(z, labels), out("ws")),
            "img": max_diff(run(), out("img")),
            "img_psi0.7": max_diff(run(truncation_psi=0.7), out("img_psi0.7")),
            "img_psi0.7_cutoff2": max_diff(run(truncation_psi=0.7, truncation_cutoff=2), out("img_psi0.7_cutoff2")),
        }
    ws = out("ws").clone().requires_grad_(True)  # path-length regularisation differentiates synthesis w.r.t. ws
    (G.synthesis(ws, noise_mode="const", force_fp32=True) * golden["probe"]).sum().backward()
    diffs["ws_grad"] = max_diff(ws.grad, out("ws_grad"))
    G.train()  # modulation by scaling activations (not fused), and w_avg moves
    with torch.no_grad():
        diffs["img_train"] = max_diff(run(), out("img_train"))
    diffs["w_avg_train"] = max_diff(G.mapping.w_avg, out("w_avg_train"))
    print(network, {name: f"{diff:.1e}" for name, diff in diffs.items()})
    assert max(diffs.values()) <= TOLERANCE, diffs


@pytest.mark.parametrize("network,group", [("D_resnet", 2), ("D_orig", 4), ("D_skip", 2)])
def test_discriminator_computes_the_official_logits(golden, network, group):
    state = official_state(golden, network)
    D = load_discriminator(state, mbstd_group_size=group, num_fp16_res=2, conv_clamp=2.0).eval()
    images = golden["images"].clone().requires_grad_(True)
    logits = D(images, golden["labels"], force_fp32=True)
    logits.sum().backward()  # R1 differentiates D w.r.t. its input
    diffs = {"logits": max_diff(logits, golden[f"{network}.logits"]), "img_grad": max_diff(images.grad, golden[f"{network}.img_grad"])}
    print(network, {name: f"{diff:.1e}" for name, diff in diffs.items()})
    assert max(diffs.values()) <= TOLERANCE, diffs


def test_converter_infers_the_discriminator_configuration(golden):
    _, kwargs = convert_discriminator(official_state(golden, "D_skip"), mbstd_group_size=2)
    assert kwargs == dict(
        shape=[3, 16, 16], num_classes=5, architecture="skip", mbstd_num_channels=2, cmap_dim=16, mapping_layers=8,
        channel_base=128, channel_max=16, mbstd_group_size=2, num_fp16_res=4, conv_clamp=256,
    )
    assert convert_discriminator(official_state(golden, "D_orig"))[1]["cmap_dim"] == 8


def test_converter_names_the_first_key_that_does_not_fit(golden):
    state = official_state(golden, "G")
    with pytest.raises(UserError, match=r"synthesis\.b8\.conv0\.weight has shape \(16, 8, 3, 3\)"):
        convert_generator(state | {"synthesis.b8.conv0.weight": torch.zeros(16, 8, 3, 3)})
    with pytest.raises(UserError, match=r"has synthesis\.b8\.conv0\.extra, which"):
        convert_generator(state | {"synthesis.b8.conv0.extra": torch.zeros(1)})
    with pytest.raises(UserError, match=r"lacks .*noise_strength"):
        convert_generator({k: v for k, v in state.items() if k != "synthesis.b8.conv0.noise_strength"})
    with pytest.raises(UserError, match="not an official StyleGAN2 generator.*G_ema"):
        convert_generator(official_state(golden, "D_orig"))
    with pytest.raises(UserError, match="not the \\[1, 3, 3, 1\\] filter"):
        convert_generator(state | {"synthesis.b8.resample_filter": torch.ones(4, 4) / 16})


@pytest.mark.parametrize("size", [16, 32])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("classes", [0, 3])
def test_shapes_resolutions_channels_and_labels(size, channels, classes):
    G = Generator((channels, size, size), z_dim=16, w_dim=16, num_classes=classes, mapping_layers=2, **TINY)
    D = Discriminator((channels, size, size), num_classes=classes, **TINY)
    labels = torch.arange(4) % classes if classes else None
    images = G(torch.randn(4, 16), labels)
    assert images.shape == (4, channels, size, size) and images.dtype == torch.float32
    logits = D(images, labels)
    assert logits.shape == (4,) and logits.dtype == torch.float32
    logits.sum().backward()
    assert all(p.grad is not None for p in G.synthesis.parameters())
    assert G.num_ws == 2 * size.bit_length() - 4  # one w per conv and one for the last toRGB: 6 at 16x16, 8 at 32x32


@pytest.mark.parametrize(
    "shape,options,message",
    [
        ((3, 24, 24), {}, "cannot make 24x24 images.*data.image_size"),
        ((3, 8, 8), {}, "cannot make 8x8 images.*16, 32, 64"),
        ((3, 2048, 2048), {}, "cannot make 2048x2048"),
        ((4, 32, 32), {}, "1- or 3-channel images, the data has 4: set data.channels to 1 or 3"),
        ((3, 32, 16), {}, "square images.*data.image_size"),
        ((3, 32, 32), {"architecture": "dense"}, "architecture=dense: use one of orig, skip, resnet"),
    ],
)
def test_refuses_what_it_cannot_build(shape, options, message):
    with pytest.raises(UserError, match=message):
        Generator(shape, **options)
    with pytest.raises(UserError, match=message):
        Discriminator(shape, **options)


def test_refuses_a_batch_the_minibatch_std_cannot_group():
    D = Discriminator((1, 16, 16), mbstd_group_size=4, **TINY)
    with pytest.raises(UserError, match="batch of 6.*multiple of 4 or set model.discriminator.mbstd_group_size"):
        D(torch.randn(6, 1, 16, 16))
    assert D(torch.randn(2, 1, 16, 16)).shape == (2,)  # smaller batches form one group, as official


def tiny_generator(**options) -> Generator:
    torch.manual_seed(0)
    G = Generator((3, 16, 16), z_dim=16, w_dim=16, mapping_layers=2, **TINY, **options)
    with torch.no_grad():
        G.mapping.w_avg.normal_()
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.5)
    return G.eval()


def test_truncation_pulls_ws_toward_w_avg_up_to_the_cutoff():
    G, z = tiny_generator(), torch.randn(3, 16)
    ws = G.mapping(z)
    assert torch.allclose(G.mapping(z, truncation_psi=0), G.mapping.w_avg.expand_as(ws))
    assert torch.allclose(G.mapping(z, truncation_psi=0.5), (ws + G.mapping.w_avg) / 2, atol=1e-6)
    cut = G.mapping(z, truncation_psi=0.0, truncation_cutoff=2)
    assert torch.allclose(cut[:, :2], G.mapping.w_avg.expand(3, 2, -1)) and torch.equal(cut[:, 2:], ws[:, 2:])
    assert torch.allclose(G(z, truncation_psi=0, noise_mode="const")[0], G(z, truncation_psi=0, noise_mode="const")[2])


def test_w_avg_moves_only_in_training_mode():
    G, z = tiny_generator(), torch.randn(8, 16)
    before = G.mapping.w_avg.clone()
    G(z)
    assert torch.equal(G.mapping.w_avg, before)
    G.train()
    w = G.mapping(z, skip_w_avg_update=True)[:, 0]
    assert torch.equal(G.mapping.w_avg, before)  # style mixing's second z does not move it (official skip_w_avg_update)
    G.mapping(z)
    assert torch.allclose(G.mapping.w_avg, before * 0.995 + w.mean(dim=0) * 0.005, atol=1e-6)


def test_noise_modes():
    G, z = tiny_generator(), torch.randn(2, 16)
    const, none = G(z, noise_mode="const"), G(z, noise_mode="none")
    assert torch.equal(const, G(z, noise_mode="const")) and torch.equal(none, G(z, noise_mode="none"))
    assert not torch.allclose(const, none) and not torch.allclose(G(z), G(z))  # 'random' draws afresh
    assert sum(k.endswith("noise_const") for k in G.state_dict()) == 5  # one per synthesis layer, saved
    with pytest.raises(UserError, match="noise_mode=fixed: use one of random, const, none"):
        G(z, noise_mode="fixed")


def test_reduced_precision_runs_the_top_resolutions_in_bf16_on_the_cpu():
    G = tiny_generator()  # num_fp16_res 2: the 8x8 and 16x16 blocks
    z, seen = torch.randn(2, 16), []
    hook = lambda module, args, out: seen.append(out.dtype)  # noqa: E731
    for block in G.synthesis.blocks:
        block.conv1.register_forward_hook(hook)
    reduced, full = G(z, noise_mode="const"), G(z, noise_mode="const", force_fp32=True)
    assert seen == [torch.float32, torch.bfloat16, torch.bfloat16] + [torch.float32] * 3
    assert reduced.dtype == torch.float32 and 0 < (reduced - full).abs().max() < 0.1 * full.abs().max()


def test_second_order_gradients_flow_for_r1_and_path_length():
    G, D = tiny_generator().train(), Discriminator((3, 16, 16), **TINY).train()
    real = torch.randn(4, 3, 16, 16, requires_grad=True)
    (grad,) = torch.autograd.grad(D(real).sum(), real, create_graph=True)
    grad.square().sum().backward()  # R1: |dD/dx|^2, differentiated w.r.t. D's weights
    assert D.blocks[0].conv0.weight.grad.abs().sum() > 0
    ws = G.mapping(torch.randn(4, 16)).detach().requires_grad_(True)
    # fp32: G's bf16 double backward works too, but its first call imports torch._dynamo (3-5 s) through a decomposition
    images = G.synthesis(ws, force_fp32=True)
    (grad,) = torch.autograd.grad((images * torch.randn(4, 3, 16, 16)).sum(), ws, create_graph=True)
    grad.square().sum().backward()  # path length: |J^T y|^2, differentiated w.r.t. the synthesis weights
    assert G.synthesis.blocks[1].conv0.weight.grad.abs().sum() > 0
