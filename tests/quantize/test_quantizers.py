"""Math and invariants of the quantisers."""

import copy
import io

import pytest
import torch

from vqbet.quantize import FSQ, ResidualFSQ, ResidualVQ, VectorQuantizer, kmeans, nearest_code
from vqbet.quantize.common import row_min
from vqbet.quantize.vq import rotate_to


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def brute_force(x, codebook):
    return torch.cdist(x.double(), codebook.double()).argmin(dim=1)


@pytest.mark.parametrize(
    ("n", "k", "d", "block"),
    [(100, 7, 3, 1 << 22), (5000, 64, 16, 1000), (300, 1024, 8, 1 << 22), (700, 512, 8, 100_000)],
)
def test_nearest_code_equals_brute_force(n, k, d, block):
    x, codebook = torch.randn(n, d), torch.randn(k, d)
    codes, offsets = nearest_code(x, codebook, block_elements=block)  # block < n*k: chunked path
    dist = offsets + x.square().sum(1)
    assert torch.equal(codes, brute_force(x, codebook))
    expected = (x - codebook[codes]).square().sum(1)
    torch.testing.assert_close(dist, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("k", [16, 256, 1024, 1000])
def test_row_min_equals_min_with_first_index_on_ties(k):
    # Integer-valued rows have many equal minima: the two-level search (k >= 256, k % 64 == 0)
    # must return the same values and the same (first) indices as torch.min.
    d = torch.randint(0, 5, (513, k)).float()
    d[7] = 3.0  # a row that is all one value: index 0
    d[11, -1] = -1.0  # the minimum in the very last column
    values, indices = row_min(d)
    expected_values, expected_indices = d.min(dim=1)
    assert torch.equal(values, expected_values)
    assert torch.equal(indices, expected_indices)
    assert indices[7] == 0 and indices[11] == k - 1
    first = (d == d.amin(dim=1, keepdim=True)).float().argmax(dim=1)
    assert torch.equal(indices, first)


def test_straight_through_gradient_reaches_input():
    vq = VectorQuantizer(dim=4, codebook_size=8)
    x = torch.randn(32, 4, requires_grad=True)
    out = vq(x)
    weights = torch.randn(32, 4)
    (out.quantized * weights).sum().backward()
    # STE: d(quantized)/dx = identity, plus the commitment term (not included above: loss unused).
    torch.testing.assert_close(x.grad, weights)
    assert vq.codebook.grad is None or vq.codebook.grad.abs().sum() == 0


def test_codebook_and_commitment_losses():
    vq = VectorQuantizer(dim=3, codebook_size=4, commitment_weight=0.5)
    x = torch.randn(20, 3, requires_grad=True)
    out = vq(x)
    q = vq.codebook[out.codes]
    expected = 1.5 * (x - q).square().mean()
    torch.testing.assert_close(out.loss, expected)
    out.loss.backward()
    assert vq.codebook.grad.abs().sum() > 0  # the codebook term moves codes


def test_rotation_trick_value_is_code_and_gradient_is_rotated():
    x = torch.randn(16, 5, requires_grad=True)
    q = torch.randn(16, 5)
    out = rotate_to(x, q)
    torch.testing.assert_close(out, q, atol=1e-5, rtol=1e-5)
    g = torch.randn(16, 5)
    (out * g).sum().backward()
    # Gradient is s * R^T g: its norm is scaled by |q|/|x| exactly (R is orthogonal).
    ratio = q.norm(dim=1) / x.detach().norm(dim=1)
    torch.testing.assert_close(x.grad.norm(dim=1), g.norm(dim=1) * ratio, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(x.grad, g)


def test_ema_update_matches_formula():
    vq = VectorQuantizer(dim=2, codebook_size=2, ema=True, decay=0.5, eps=0.0)
    with torch.no_grad():
        vq.codebook.copy_(torch.tensor([[0.0, 0.0], [10.0, 10.0]]))
        vq.ema_sum.copy_(vq.codebook)
        vq.ema_count.fill_(1.0)
    x = torch.tensor([[1.0, 1.0], [3.0, 1.0], [9.0, 9.0]])
    out = vq(x)
    assert out.codes.tolist() == [0, 0, 1]
    # counts: 0.5*1 + 0.5*[2, 1] = [1.5, 1.0]; sums: 0.5*e + 0.5*[[4,2],[9,9]]
    torch.testing.assert_close(vq.ema_count, torch.tensor([1.5, 1.0]))
    torch.testing.assert_close(vq.ema_sum, torch.tensor([[2.0, 1.0], [9.5, 9.5]]))
    torch.testing.assert_close(vq.codebook, torch.tensor([[2.0 / 1.5, 1.0 / 1.5], [9.5, 9.5]]))


def test_ema_laplace_smoothing_keeps_unused_code_finite():
    vq = VectorQuantizer(dim=2, codebook_size=3, ema=True, decay=0.0, eps=1e-5)
    vq(torch.zeros(8, 2) + vq.codebook[0].detach())
    assert torch.isfinite(vq.codebook).all()


def test_kmeans_places_codes_on_data():
    centres = torch.tensor([[-5.0, 0.0], [5.0, 0.0], [0.0, 5.0], [0.0, -5.0]])
    x = torch.cat([c + 0.1 * torch.randn(250, 2) for c in centres])
    found, counts = kmeans(x, 4, iters=20)
    dist = torch.cdist(found, centres)
    assert dist.min(dim=1).values.max() < 0.1  # each found centre sits on a true one
    assert sorted(dist.argmin(dim=1).tolist()) == [0, 1, 2, 3]
    assert counts.sum() == 1000


def test_kmeans_init_sets_consistent_ema_state():
    vq = VectorQuantizer(dim=2, codebook_size=4, ema=True, kmeans_init=True)
    assert not vq.initialized
    x = torch.cat([c + 0.05 * torch.randn(100, 2) for c in torch.eye(2).repeat(2, 1) * 4 - 2])
    vq(x)
    assert vq.initialized
    torch.testing.assert_close(vq.ema_centres(), vq.codebook, atol=1e-3, rtol=1e-3)
    before = vq.codebook.clone()
    vq(x)  # same data: an EMA step must not move the k-means centres
    torch.testing.assert_close(vq.codebook, before, atol=1e-2, rtol=1e-2)


@pytest.mark.parametrize("ema", [True, False])
def test_dead_code_reset_recovers_from_collapse(ema):
    k = 32
    vq = VectorQuantizer(dim=2, codebook_size=k, ema=ema, dead_code_threshold=1.0)
    with torch.no_grad():
        vq.codebook.copy_(torch.zeros(k, 2))  # every code at one point: total collapse
        if ema:
            vq.ema_sum.zero_()
    plain = VectorQuantizer(dim=2, codebook_size=k, ema=ema)
    with torch.no_grad():
        plain.codebook.copy_(torch.zeros(k, 2))
        if ema:
            plain.ema_sum.zero_()
    for _ in range(200):
        x = torch.randn(512, 2) + 10.0  # data far from the collapse point
        out, ref = vq(x), plain(x)
    assert out.usage.used_fraction.item() > 0.9
    assert ref.usage.used_fraction.item() <= 1 / k + 1e-6  # without the remedy it stays collapsed


def test_eval_mode_leaves_buffers_unchanged():
    rvq = ResidualVQ(
        dim=4, codebook_size=8, num_layers=3, ema=True, kmeans_init=True, dead_code_threshold=5.0
    )
    rvq.eval()
    before = {k: v.clone() for k, v in rvq.state_dict().items()}
    for _ in range(3):
        rvq(torch.randn(64, 4))
        rvq.encode(torch.randn(64, 4))
    for key, value in rvq.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_residual_decode_equals_quantized_in_eval():
    rvq = ResidualVQ(dim=6, codebook_size=16, num_layers=3, ema=True, kmeans_init=True)
    rvq(torch.randn(500, 6))  # fit by k-means
    rvq.eval()
    x = torch.randn(100, 6)
    out = rvq(x)
    assert out.codes.shape == (100, 3) and out.codes.dtype == torch.int64
    assert torch.equal(rvq.decode(out.codes), out.quantized)  # one embedding_bag sum in both
    assert torch.equal(rvq.encode(x), out.codes)
    with torch.enable_grad():  # the autograd path gives the same codes and values
        xg = x.clone().requires_grad_(True)
        out_g = rvq(xg)
    assert torch.equal(out_g.codes, out.codes)
    torch.testing.assert_close(out_g.quantized, out.quantized)
    torch.testing.assert_close(out_g.loss, out.loss)


@pytest.mark.parametrize("layers", [1, 2, 4])
@pytest.mark.parametrize(
    "options",
    [
        dict(ema=True, kmeans_init=True, dead_code_threshold=20.0),
        # usage decaying fast: every layer re-seeds codes after the first step, from rows the
        # update rebuilds from the latent and the codes (layers 2 and 3: two and three steps back)
        dict(ema=True, kmeans_init=True, dead_code_threshold=20.0, usage_decay=0.5),
        dict(ema=True, cosine=True, dead_code_threshold=20.0, usage_decay=0.5),
        dict(ema=True, cosine=True),
    ],
)
def test_residual_no_grad_path_equals_layer_forwards(layers, options):
    """The no-grad path (one kept residual buffer, an embedding_bag output) gives the layers' own
    forward's codes, output, loss and training-mode state updates, whatever the batch size."""
    fast = ResidualVQ(dim=6, codebook_size=16, num_layers=layers, **options)
    slow = copy.deepcopy(fast)
    for step, n in enumerate([300, 64, 300, 1]):
        x = torch.randn(n, 2, 6) * 3
        torch.manual_seed(step)  # dead-code reset draws its seeds
        with torch.no_grad():
            out = fast(x)
        torch.manual_seed(step)
        out_ref = slow(x.clone().requires_grad_(True))  # the layers' forward, with autograd
        assert torch.equal(out.codes, out_ref.codes)
        torch.testing.assert_close(out.quantized, out_ref.quantized.detach())
        torch.testing.assert_close(out.loss, out_ref.loss.detach())
        for key, value in slow.state_dict().items():
            torch.testing.assert_close(fast.state_dict()[key], value, msg=key)
    assert all(not ws.requires_grad for ws in fast.__dict__.get("_workspaces", {}).values())


def test_residual_codebook_learns_by_gradient_from_raw_inputs():
    """Inputs without a gradient (no encoder) still train a gradient-learned codebook."""
    rvq = ResidualVQ(dim=4, codebook_size=8, num_layers=2)
    rvq(torch.randn(64, 4)).loss.backward()
    assert all(
        layer.codebook.grad is not None and layer.codebook.grad.abs().sum() > 0 for layer in rvq.layers
    )


def test_residual_workspace_is_not_saved_or_copied():
    rvq = ResidualVQ(dim=64, codebook_size=16, num_layers=3, ema=True)
    with torch.no_grad():
        rvq(torch.randn(4096, 64))
    assert rvq.__dict__["_workspaces"]  # kept for the next call
    assert "_workspaces" not in copy.deepcopy(rvq).__dict__
    buffer = io.BytesIO()
    torch.save(rvq, buffer)
    assert buffer.tell() < 4096 * 64 * 4  # the module's state, not the 1 MiB scratch buffers


def test_residual_error_falls_with_layers():
    x = torch.randn(2000, 8)
    errors = []
    for layers in (1, 2, 4):
        torch.manual_seed(1)
        rvq = ResidualVQ(dim=8, codebook_size=16, num_layers=layers, ema=True, kmeans_init=True)
        for _ in range(5):
            rvq(x)
        rvq.eval()
        errors.append((rvq(x).quantized - x).square().mean().item())
    assert errors[0] > errors[1] > errors[2]


def test_fsq_round_trip_and_gradient():
    fsq = FSQ(levels=[8, 5, 3])
    assert fsq.codebook_size == 120
    x = torch.randn(1000, 3) * 3
    out = fsq(x)
    assert out.codes.min() >= 0 and out.codes.max() < 120
    torch.testing.assert_close(fsq.decode(out.codes), out.quantized)
    assert torch.equal(fsq.encode(x), out.codes)
    all_codes = torch.arange(120)
    grid = fsq.decode(all_codes)
    assert torch.unique(grid, dim=0).shape[0] == 120 and grid.abs().max() <= 1.0  # a bijection
    xg = x.clone().requires_grad_(True)
    fsq(xg).quantized.sum().backward()
    assert (xg.grad != 0).any()  # straight-through rounding passes gradient


def test_residual_fsq_reduces_error():
    x = torch.rand(500, 4) * 1.6 - 0.8
    one = ResidualFSQ(levels=[5, 5, 5, 5], num_layers=1)
    two = ResidualFSQ(levels=[5, 5, 5, 5], num_layers=2)
    e1 = (one(x).quantized - x).abs().max()
    out = two(x)
    assert (out.quantized - x).abs().max() < e1 / 2
    torch.testing.assert_close(two.decode(out.codes), out.quantized)


def test_gumbel_trains_codebook_and_anneals():
    vq = VectorQuantizer(dim=3, codebook_size=8, gradient="gumbel", gumbel_temperature=1.0)
    x = torch.randn(64, 3, requires_grad=True)
    out = vq(x)
    out.quantized.sum().backward()
    assert vq.codebook.grad.abs().sum() > 0 and x.grad.abs().sum() > 0
    vq.set_temperature(0.1)
    assert vq.temperature.item() == pytest.approx(0.1)
    vq.eval()
    assert torch.equal(vq(x.detach()).codes, vq.encode(x.detach()))  # eval is deterministic


def test_cosine_codebook_is_unit_norm():
    vq = VectorQuantizer(dim=4, codebook_size=8, ema=True, cosine=True, kmeans_init=True)
    vq(torch.randn(100, 4) * 5)
    torch.testing.assert_close(vq.codebook.norm(dim=1), torch.ones(8))


def test_usage_statistics():
    vq = VectorQuantizer(dim=1, codebook_size=4)
    with torch.no_grad():
        vq.codebook.copy_(torch.tensor([[0.0], [1.0], [2.0], [3.0]]))
    vq.eval()
    out = vq(torch.tensor([[0.0], [0.1], [1.0], [0.9]]))  # codes 0,0,1,1
    assert out.usage.perplexity.item() == pytest.approx(2.0)
    assert out.usage.used_fraction.item() == pytest.approx(0.5)


def test_usage_read_later_describes_its_own_pass():
    # Usage is computed when first read: it must still describe the pass it came from after
    # later training steps have changed the running counts and codebooks.
    rvq = ResidualVQ(dim=2, codebook_size=4, num_layers=2, usage_decay=0.0)
    first = rvq(torch.zeros(64, 2))  # every vector the same: one code per layer
    running = torch.stack([layer.usage.clone() for layer in rvq.layers])
    rvq(torch.randn(64, 2) * 3)
    torch.testing.assert_close(first.usage.used_fraction, torch.full((2,), 0.25))
    torch.testing.assert_close(first.usage.perplexity, torch.ones(2))
    torch.testing.assert_close(first.usage.dead_codes, (running < 1e-3).sum(dim=1).float())
    assert first.usage.dead_codes.tolist() == [3.0, 3.0]
    assert set(first.usage.as_dict("q/")) == {
        f"q/{n}/{i}" for n in ("perplexity", "used_fraction", "dead_codes") for i in (0, 1)
    }


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda: VectorQuantizer(dim=4, codebook_size=1), "codebook_size"),
        (lambda: ResidualVQ(dim=4, codebook_size=8, num_layers=0), "num_layers"),
        (lambda: FSQ(levels=[1, 5]), "levels"),
        (lambda: FSQ(levels=[]), "levels"),
        (lambda: VectorQuantizer(dim=4, codebook_size=8, gradient="magic"), "gradient"),
    ],
)
def test_bad_arguments_raise(factory, message):
    with pytest.raises(ValueError, match=message):
        factory()


def test_wrong_input_dim_names_shape():
    with pytest.raises(ValueError, match=r"\(\.\.\., 4\)"):
        ResidualVQ(dim=4, codebook_size=8, num_layers=2)(torch.randn(3, 5))


def test_codes_match_vector_quantize_pytorch():
    vqp = pytest.importorskip("vector_quantize_pytorch")
    ours = ResidualVQ(dim=16, codebook_size=32, num_layers=4).eval()
    ref = vqp.ResidualVQ(dim=16, codebook_size=32, num_quantizers=4).eval()
    with torch.no_grad():
        for layer, ref_layer in zip(ours.layers, ref.layers, strict=True):
            ref_layer._codebook.embed[0].copy_(layer.codebook)
            ref_layer._codebook.initted.fill_(True)
        x = torch.randn(3000, 16)
        ref_quantized, ref_codes, _ = ref(x)
        out = ours(x)
    assert torch.equal(out.codes, ref_codes)
    torch.testing.assert_close(out.quantized, ref_quantized, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_search_is_float32_inside_autocast(mode):
    """Inside a bf16 autocast region a residual quantiser (its no-grad path, and `encode`) picks
    the codes it picks outside: its distances stay float32 (bf16 distances pick wrong codes)."""
    torch.manual_seed(0)
    rvq = ResidualVQ(dim=16, codebook_size=64, num_layers=3, ema=True).train(mode == "train")
    twin = copy.deepcopy(rvq)
    x = torch.randn(512, 16)
    with torch.no_grad():
        plain = rvq(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            cast = twin(x)
            encoded = twin.encode(x)
    assert torch.equal(cast.codes, plain.codes)
    assert torch.equal(cast.quantized, plain.quantized)
    assert torch.equal(encoded, rvq.encode(x))
    for key, value in rvq.state_dict().items():
        assert torch.equal(twin.state_dict()[key], value), key
