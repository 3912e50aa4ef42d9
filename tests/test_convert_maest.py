"""`videomae convert` on MAE-ST (facebookresearch/mae_st) checkpoints: the result computes what MAE-ST computes.

The reference below is an independent re-implementation of MAE-ST's `MaskedAutoencoderViT` (models_mae.py) and its
fine-tuning `VisionTransformer` (models_vit.py) with the layers of util/video_vit.py, written from that source with
the same parameter names, so `state_dict()` gives exactly MAE-ST's keys. It uses MAE-ST's defaults sep_pos_embed=True
and cls_embed=True. Every parameter, the key biases included, gets its own random values; the files are saved as
MAE-ST saves them and converted through the real CLI.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import run_cli
from torch import nn

import videomae_cli

PATCH, TUBELET, FRAMES, SIZE = 16, 2, 8, 48  # 4 × 3 × 3 = 36 tokens; neither 8 frames nor 48² is a default
DIM, DEPTH, HEADS, DEC_DIM, DEC_DEPTH, DEC_HEADS = 64, 2, 4, 32, 1, 2  # the `test` size (heads are not in weights)
BATCH, MASK_RATIO, NUM_CLASSES = 2, 0.75, 5
ATOL = 1e-5


# ---------------------------------------------------------------------------------------------------------------------
# The MAE-ST reference (util/video_vit.py, models_mae.py, models_vit.py)


class PatchEmbed(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv3d(3, dim, kernel_size=(TUBELET, PATCH, PATCH), stride=(TUBELET, PATCH, PATCH))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("ncts->ntsc", self.proj(x).flatten(3))  # [B, t, h·w, C]


class Attention(nn.Module):
    """Separate q, k, v Linears with biases and an explicit softmax, scale head_dim^-0.5."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = (f(x).reshape(b, n, self.heads, c // self.heads).transpose(1, 2) for f in (self.q, self.k, self.v))
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)  # [B, heads, N, N]
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    """timm's Mlp: fc1 → GELU → fc2."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim, eps=1e-6), Attention(dim, heads)
        self.norm2, self.mlp = nn.LayerNorm(dim, eps=1e-6), Mlp(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def separable_table(spatial: nn.Parameter, temporal: nn.Parameter) -> torch.Tensor:
    """MAE-ST's sep_pos_embed: spatial rows repeated per time slice + temporal rows repeated per patch → [1, N, C]."""
    return spatial.repeat(1, temporal.shape[1], 1) + torch.repeat_interleave(temporal, spatial.shape[1], dim=1)


def param(*shape: int) -> nn.Parameter:
    return nn.Parameter(torch.zeros(*shape))


class MaskedAutoencoderViT(nn.Module):
    """models_mae.MaskedAutoencoderViT with sep_pos_embed=True, cls_embed=True; masking driven by a given noise."""

    def __init__(
        self,
        pred_t_dim: int = FRAMES,
        norm_pix_loss: bool = True,
        dims: tuple[int, int, int, int] = (DIM, HEADS, DEC_DIM, DEC_HEADS),  # (embed_dim, num_heads, decoder ...)
    ) -> None:
        super().__init__()
        dim, heads, dec_dim, dec_heads = dims
        t, hw = FRAMES // TUBELET, (SIZE // PATCH) ** 2
        self.pred_t_dim, self.norm_pix_loss = pred_t_dim, norm_pix_loss
        self.t_pred_patch_size = TUBELET * pred_t_dim // FRAMES
        self.patch_embed = PatchEmbed(dim)
        self.cls_token, self.decoder_cls_token = param(1, 1, dim), param(1, 1, dec_dim)
        self.pos_embed_spatial, self.pos_embed_temporal, self.pos_embed_class = (
            param(1, hw, dim),
            param(1, t, dim),
            param(1, 1, dim),
        )
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(DEPTH))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.decoder_embed = nn.Linear(dim, dec_dim, bias=True)
        self.mask_token = param(1, 1, dec_dim)
        self.decoder_pos_embed_spatial = param(1, hw, dec_dim)
        self.decoder_pos_embed_temporal = param(1, t, dec_dim)
        self.decoder_pos_embed_class = param(1, 1, dec_dim)
        self.decoder_blocks = nn.ModuleList(Block(dec_dim, dec_heads) for _ in range(DEC_DEPTH))
        self.decoder_norm = nn.LayerNorm(dec_dim, eps=1e-6)
        self.decoder_pred = nn.Linear(dec_dim, self.t_pred_patch_size * PATCH**2 * 3, bias=True)

    def patchify(self, imgs: torch.Tensor) -> torch.Tensor:
        """[B, 3, T, H, W] → [B, t·h·w, u·p·p·3] with u = t_pred_patch_size frames per token."""
        b, _, frames, height, width = imgs.shape
        u = self.t_pred_patch_size
        x = imgs.reshape(b, 3, frames // u, u, height // PATCH, PATCH, width // PATCH, PATCH)
        return torch.einsum("nctuhpwq->nthwupqc", x).reshape(b, -1, u * PATCH**2 * 3)

    def forward_encoder(self, imgs: torch.Tensor, mask_ratio: float, noise: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self.patch_embed(imgs)
        b, t, hw, c = x.shape
        x = x.reshape(b, t * hw, c)  # tokens ordered (t, h, w)
        # random_masking: ascending noise keeps, the rest is removed
        num_keep = int(t * hw * (1 - mask_ratio))
        ids_shuffle = torch.argsort(noise, dim=1)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        ids_keep = ids_shuffle[:, :num_keep]
        x = torch.gather(x, 1, ids_keep[..., None].repeat(1, 1, c))  # [B, N_vis, C]
        mask = torch.ones(b, t * hw)
        mask[:, :num_keep] = 0
        mask = torch.gather(mask, 1, ids_restore)  # 1 = removed, in token order
        x = torch.cat((self.cls_token.expand(b, -1, -1), x), dim=1)
        pos = separable_table(self.pos_embed_spatial, self.pos_embed_temporal).expand(b, -1, -1)
        pos = torch.gather(pos, 1, ids_keep[..., None].repeat(1, 1, c))
        x = x + torch.cat((self.pos_embed_class.expand(b, -1, -1), pos), dim=1)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)[:, 1:], mask, ids_restore

    def forward_decoder(self, x: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        x = self.decoder_embed(x)
        b, num_visible, c = x.shape
        num_tokens = ids_restore.shape[1]
        x = torch.cat((x, self.mask_token.repeat(b, num_tokens - num_visible, 1)), dim=1)
        x = torch.gather(x, 1, ids_restore[..., None].repeat(1, 1, c))  # unshuffle: [B, N, Cd]
        x = torch.cat((self.decoder_cls_token.expand(b, -1, -1), x), dim=1)
        table = separable_table(self.decoder_pos_embed_spatial, self.decoder_pos_embed_temporal)
        x = x + torch.cat((self.decoder_pos_embed_class, table), dim=1)
        for block in self.decoder_blocks:
            x = block(x)
        return self.decoder_pred(self.decoder_norm(x))[:, 1:]  # every token, no cls

    def forward_loss(self, imgs: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        frames = torch.linspace(0, imgs.shape[2] - 1, self.pred_t_dim).long()
        target = self.patchify(torch.index_select(imgs, 2, frames))
        if self.norm_pix_loss:
            mean, var = target.mean(dim=-1, keepdim=True), target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1.0e-6) ** 0.5
        loss = ((pred - target) ** 2).mean(dim=-1)  # [B, N]
        return (loss * mask).sum() / mask.sum()

    def forward(self, imgs: torch.Tensor, mask_ratio: float, noise: torch.Tensor) -> tuple[torch.Tensor, ...]:
        latent, mask, ids_restore = self.forward_encoder(imgs, mask_ratio, noise)
        pred = self.forward_decoder(latent, ids_restore)
        return self.forward_loss(imgs, pred, mask), pred, mask


class VisionTransformer(nn.Module):
    """models_vit.VisionTransformer with sep_pos_embed=True, cls_embed=True: mean over patch tokens, norm, head."""

    def __init__(self, dim: int = DIM, heads: int = HEADS) -> None:
        super().__init__()
        self.patch_embed = PatchEmbed(dim)
        self.cls_token = param(1, 1, dim)
        self.pos_embed_spatial = param(1, (SIZE // PATCH) ** 2, dim)
        self.pos_embed_temporal = param(1, FRAMES // TUBELET, dim)
        self.pos_embed_class = param(1, 1, dim)
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(DEPTH))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.dropout = nn.Dropout(0.5)
        self.head = nn.Linear(dim, NUM_CLASSES)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(video).flatten(1, 2)  # [B, N, C]
        b = x.shape[0]
        x = torch.cat((self.cls_token.expand(b, -1, -1), x), dim=1)
        table = separable_table(self.pos_embed_spatial, self.pos_embed_temporal)
        x = x + torch.cat((self.pos_embed_class, table), dim=1)
        for block in self.blocks:
            x = block(x)
        return self.head(self.dropout(self.norm(x[:, 1:, :].mean(dim=1))))


# ---------------------------------------------------------------------------------------------------------------------
# Helpers


def make_clip(seed: int = 0) -> torch.Tensor:
    return torch.randn(BATCH, 3, FRAMES, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def make_noise(seed: int = 1) -> torch.Tensor:
    num_tokens = (FRAMES // TUBELET) * (SIZE // PATCH) ** 2
    return torch.rand(BATCH, num_tokens, generator=torch.Generator().manual_seed(seed))


def save_maest(model: nn.Module, path: Path, args: argparse.Namespace | None = None) -> Path:
    """Released files keep the weights under "model_state"; training checkpoints under "model", with args."""
    state = {k: v.clone() for k, v in model.state_dict().items()}
    torch.save({"model_state": state} if args is None else {"model": state, "args": args}, path)
    return path


# Heads are in no tensor shape and this width is no released MAE-ST model: a file without saved args needs them set.
HEAD_SETS = (f"model.heads={HEADS}", f"model.decoder_heads={DEC_HEADS}")


def convert(src: Path, *sets: str) -> tuple[Path, str]:
    """Run `videomae convert SRC --out SRC.safetensors` → (the checkpoint, the summary on stdout)."""
    out = src.with_suffix(".safetensors")
    # Off a terminal rich fits the summary table into 80 columns and cuts long names ("decoder_blocks.0.attn.k…").
    with pytest.MonkeyPatch.context() as env:
        env.setenv("COLUMNS", "200")
        done = run_cli("convert", str(src), "--out", str(out), *(arg for item in sets for arg in ("--set", item)))
    assert done.returncode == 0, done.stderr
    return out, done.stdout


def randomized(model: nn.Module, seed: int, scale: float = 0.1) -> nn.Module:
    """Every parameter random and distinct (LayerNorm weights around 1), in eval mode. Larger than conftest's
    randomize (0.05) so that every weight moves the loss by well over the 1e-5 tolerance: zeroing the q biases
    changes it by ~3e-4 here, by ~1e-5 at 0.05."""
    gen = torch.Generator().manual_seed(seed)
    norm_weights = {id(m.weight) for m in model.modules() if isinstance(m, nn.LayerNorm)}
    with torch.no_grad():
        for p in model.parameters():
            noise = torch.randn(p.shape, generator=gen)
            p.copy_(1 + scale * noise if id(p) in norm_weights else scale * noise)
    return model.eval()


# ---------------------------------------------------------------------------------------------------------------------
# Pretrain

# name → (how it is saved, pred_t_dim, norm_pix_loss). Released files carry no args: the geometry comes from the
# position tables and pred_t_dim = num_frames // 2 from the decoder head (it predicts linspace(0, 7, 4).long() =
# frames 0, 2, 4, 7, one per token). A training checkpoint carries its args; there pred_t_dim = num_frames predicts
# every frame, and norm_pix_loss=False (MAE-ST's default) trains on the normalised input itself.
PRETRAIN_CASES = {
    "released-pred4": ("model_state", FRAMES // 2, True),
    "training-args-pred8": ("args", FRAMES, True),
    "training-args-unnormalised-target": ("args", FRAMES, False),
}
# Values different from the MAE-ST defaults the converter falls back on (mask ratio 0.9, sampling rate 4).
ARGS_MASK_RATIO, ARGS_SAMPLING_RATE = 0.8, 2
# A small synthetic data spec, so that a converted checkpoint evaluates in seconds.
SMALL_DATA = ("data.synthetic_videos=16", "data.synthetic_val_videos=8", "data.num_workers=0")


def maest_args(pred_t_dim: int, norm_pix_loss: bool = True) -> argparse.Namespace:
    """The training args mae_st's misc.save_model stores beside the weights (its own model name and decoder heads
    included: main_pretrain.py passes vars(args) to the factory)."""
    return argparse.Namespace(
        model="mae_vit_test",  # not a released factory: the encoder heads stay unknown
        decoder_num_heads=DEC_HEADS,
        num_frames=FRAMES,
        input_size=SIZE,
        t_patch_size=TUBELET,
        pred_t_dim=pred_t_dim,
        mask_ratio=ARGS_MASK_RATIO,
        norm_pix_loss=norm_pix_loss,
        sampling_rate=ARGS_SAMPLING_RATE,
        cls_embed=True,
        sep_pos_embed=True,
    )


@pytest.fixture(scope="module")
def conversions(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], dict[str, Any]]:
    """Each pretrain case converted once (with a small synthetic data spec, so that it can be evaluated quickly) and
    run by both models on one clip and one MAE-ST noise."""
    done: dict[str, dict[str, Any]] = {}

    def get(case: str) -> dict[str, Any]:
        if case not in done:
            how, pred_t_dim, norm_pix_loss = PRETRAIN_CASES[case]
            ref = randomized(MaskedAutoencoderViT(pred_t_dim=pred_t_dim, norm_pix_loss=norm_pix_loss), seed=3)
            args = maest_args(pred_t_dim, norm_pix_loss) if how == "args" else None
            src = save_maest(ref, tmp_path_factory.mktemp(case) / "checkpoint.pth", args)
            heads = HEAD_SETS if args is None else HEAD_SETS[:1]  # the args name the decoder's heads
            out, stdout = convert(src, *SMALL_DATA, *heads)
            ours = videomae_cli.load(out)
            video, noise = make_clip(), make_noise()
            with torch.no_grad():
                ref_loss, ref_pred, ref_mask = ref(video, MASK_RATIO, noise)
                mask = ref_mask.bool()  # [B, N], True = masked, tokens (t, h, w)
                got = ours(video, mask)
            done[case] = {"ref": (ref_loss, ref_pred, mask), "ours": got, "model": ours, "path": out, "stdout": stdout}
            done[case] |= {"how": how, "pred_t_dim": pred_t_dim, "norm_pix_loss": norm_pix_loss}
        return done[case]

    return get


@pytest.fixture(params=list(PRETRAIN_CASES))
def pretrain(request: pytest.FixtureRequest, conversions: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
    return conversions(request.param)


def test_converted_pretrain_loss_is_maest_loss(pretrain: dict[str, Any]) -> None:
    ref_loss = pretrain["ref"][0]
    torch.testing.assert_close(pretrain["ours"].loss, ref_loss, atol=ATOL, rtol=0)


def test_converted_pretrain_predicts_what_maest_predicts_at_the_masked_tokens(pretrain: dict[str, Any]) -> None:
    _, ref_pred, mask = pretrain["ref"]
    expected = ref_pred[mask].reshape(BATCH, -1, ref_pred.shape[-1])  # masked rows, ascending token order
    assert pretrain["ours"].pred.shape == expected.shape
    torch.testing.assert_close(pretrain["ours"].pred, expected, atol=ATOL, rtol=0)


def test_converted_pretrain_spec_is_maest_layout(pretrain: dict[str, Any]) -> None:
    model = pretrain["model"].spec.model
    assert model.pos_embed == "separable"
    assert model.cls_token is True
    assert model.decoder_embed_bias is True
    assert model.target == ("patch_norm" if pretrain["norm_pix_loss"] else "input")


def test_converted_pretrain_has_the_clip_geometry_and_predicted_frames(pretrain: dict[str, Any]) -> None:
    spec = pretrain["model"].spec
    assert (spec.data.num_frames, spec.data.input_size) == (FRAMES, SIZE)
    assert spec.model.pred_frames == (None if pretrain["pred_t_dim"] == FRAMES else pretrain["pred_t_dim"])


def test_converted_pretrain_takes_masking_and_sampling_from_saved_args(pretrain: dict[str, Any]) -> None:
    spec = pretrain["model"].spec
    expected = (ARGS_MASK_RATIO, ARGS_SAMPLING_RATE) if pretrain["how"] == "args" else (0.9, 4)  # else defaults
    assert (spec.mask.ratio, spec.data.sampling_rate) == expected
    assert spec.mask.type == "random"  # MAE-ST masks tokens anywhere


def test_convert_summary_names_the_dropped_key_biases(pretrain: dict[str, Any]) -> None:
    dropped = [line for line in pretrain["stdout"].splitlines() if "dropped" in line]
    names = [f"blocks.{i}.attn.k.bias" for i in range(DEPTH)] + [
        f"decoder_blocks.{j}.attn.k.bias" for j in range(DEC_DEPTH)
    ]
    assert len(dropped) == len(names)
    assert all(any(f" {name} " in line for line in dropped) for name in names)


def test_convert_summary_says_where_the_head_counts_came_from(pretrain: dict[str, Any]) -> None:
    rows = {line.split()[1]: line for line in pretrain["stdout"].splitlines() if line.startswith("│ model.")}
    assert "--set" in rows["model.heads"]  # no factory of this width: the tests set it
    expected = "checkpoint args (decoder_num_heads)" if pretrain["how"] == "args" else "--set"
    assert expected in rows["model.decoder_heads"]


def test_maest_key_biases_are_dropped_exactly() -> None:
    """The reference itself: zeroing every k bias leaves MAE-ST's outputs as they are (softmax is shift-invariant per
    row), so the converter may drop them; zeroing the q biases does not, so the tolerance would see a lost bias."""
    ref = randomized(MaskedAutoencoderViT(), seed=5)
    video, noise = make_clip(), make_noise()
    attentions = [block.attn for block in [*ref.blocks, *ref.decoder_blocks]]
    with torch.no_grad():
        loss, pred, _ = ref(video, MASK_RATIO, noise)
        for attn in attentions:
            attn.k.bias.zero_()
        loss_k, pred_k, _ = ref(video, MASK_RATIO, noise)
        for attn in attentions:
            attn.q.bias.zero_()
        loss_q, pred_q, _ = ref(video, MASK_RATIO, noise)
    torch.testing.assert_close((loss_k, pred_k), (loss, pred), atol=1e-6, rtol=0)
    assert (loss_q - loss).abs() > 10 * ATOL and (pred_q - pred).abs().max() > 100 * ATOL


# ---------------------------------------------------------------------------------------------------------------------
# Classifier


def test_converted_classifier_logits_are_maest_logits(tmp_path: Path) -> None:
    ref = randomized(VisionTransformer(), seed=6)
    ours = videomae_cli.load(convert(save_maest(ref, tmp_path / "finetuned.pth"), HEAD_SETS[0])[0])
    video = make_clip(seed=7)
    with torch.no_grad():
        expected, got = ref(video), ours(video)
    assert got.shape == (BATCH, NUM_CLASSES)
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)


# ---------------------------------------------------------------------------------------------------------------------
# Refusals and use


def test_joint_position_table_is_refused_with_one_line(tmp_path: Path) -> None:
    ref = randomized(MaskedAutoencoderViT(), seed=8)
    state = ref.state_dict()
    num_tokens = state["pos_embed_temporal"].shape[1] * state["pos_embed_spatial"].shape[1]
    for prefix, dim in (("", DIM), ("decoder_", DEC_DIM)):  # sep_pos_embed=False: one [1, 1 + N, C] table each
        for part in ("spatial", "temporal", "class"):
            del state[f"{prefix}pos_embed_{part}"]
        state[f"{prefix}pos_embed"] = 0.02 * torch.randn(1, 1 + num_tokens, dim)
    src = tmp_path / "joint.pth"
    torch.save({"model_state": state}, src)
    done = run_cli("convert", str(src), "--out", str(tmp_path / "joint.safetensors"))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert "pos_embed" in lines[0] and "sep_pos_embed" in lines[0]
    assert not (tmp_path / "joint.safetensors").exists()


def test_converted_pretrain_checkpoint_can_be_evaluated(conversions: Callable[[str], dict[str, Any]]) -> None:
    path = conversions("released-pred4")["path"]
    done = run_cli("evaluate", str(path), "--num-workers", "0", "--progress", "off")
    assert done.returncode == 0, done.stderr
    report = json.loads((path.parent / "eval" / "report.json").read_text())
    assert report["kind"] == "pretrain" and report["num_videos"] == 8
    assert report["reconstruction_loss"] > 0
