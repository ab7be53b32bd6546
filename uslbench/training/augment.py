"""Every augmentation of uslbench, in one module: the batched SSL views of the image learners, the
batched contrastive view of USL-T's backbone mode, the per-image SimCLR pipeline of pretraining, and
USL-T's feature-space stand-in for image augmentation.

| function | used by | input | randomness |
|---|---|---|---|
| `augment` (views ``none`` / ``weak`` / ``strong`` / ``cld``) | image learners (learners/) | uint8 (B, C, H, W) on the device | an explicit `torch.Generator` per step |
| `contrastive_augment` | USL-T ``mode=backbone`` | float (B, C, H, W) in [0, 1] | an explicit `torch.Generator` |
| `simclr_transform` | SimCLR pretraining (encoders/pretrain.py) | one PIL image | torch's global generator (per worker) |
| `feature_augment` | USL-T ``mode=head`` | float (B, d) feature rows | an explicit `torch.Generator` |

Why batched tensors instead of per-image PIL transforms for the SSL views: the SSL loop draws up to
64 + 3 x 448 views per step; per-image Python calls would dominate a CPU step on small images, and on
a GPU the augmentation would starve the network. Every random draw comes from an explicit
`torch.Generator`, so a step's views depend only on (seed, step) and a resumed run sees exactly the
images an uninterrupted one would.

SSL views (a learner declares which ones it needs):

- ``weak``: random horizontal flip (when the policy allows it) + random translation by up to
  ``pad`` pixels with reflect padding (the "flip + reflect-padded crop" of FixMatch; a translation
  by an integer shift through reflection-padded sampling is exactly a crop of the padded image).
- ``strong``: ``weak``, then RandAugment and Cutout. Two variants (`AugmentPolicy.randaugment`):

  * ``fork`` (default): the RandAugment of the USL authors' FixMatch fork, which produced the
    paper's FixMatch numbers (TonyLianLong/UnsupervisedSelectiveLabeling,
    semisup-fixmatch-cifar/dataset/randaugment.py, ``RandAugmentMC(n=2, m=10)``; the scheme of
    google-research/fixmatch's ``AugmentPoolRAM``): 2 ops drawn with replacement from the 14 of
    `FORK_OPS`, each applied with probability 0.5 at a level v drawn uniformly in 1..9; at level v
    the enhance factor is 0.05 + 0.09 v, posterize keeps 4 + int(0.4 v) bits, solarize inverts
    from 256 - int(25.6 v), rotate int(v x max_rotate / 10) degrees, shear v x max_shear / 10,
    translate int(v x max_translate / 10 x side) pixels (random signs; black fill, `warp_fill`);
    then a FIXED Cutout: a square of int(cutout x side) pixels (16 at 32) at a uniform centre,
    clipped at the border, grey (`fill`, 127 / 255), as the fork's ``CutoutAbs``.
  * ``usb``: the previous variant, as USB's re-implementation (semilearn RandAugment): 2-3 ops
    (drawn per image) always applied, magnitudes uniform in their ranges (table below), then
    Cutout of a random side up to ``cutout`` of the image side, filled with ``fill``.
- ``cld``: the training augmentation of CLD / MoCo v2 that the USL paper's SimCLRv2-CLD
  fine-tuning uses (`cld_view`): random resized crop, colour jitter, greyscale, Gaussian blur, flip.
- ``none``: the image as is (evaluation, distillation teachers).

The 14 RandAugment ops of the ``usb`` variant and their magnitude ranges:

| op | range | op | range |
|---|---|---|---|
| Identity | - | Posterize | 4..8 bits |
| AutoContrast | - | Rotate | -30..30 degrees |
| Brightness | 0.05..0.95 blend factor, x (1 +- v) | Sharpness | 0.05..0.95, x (1 +- v) |
| Color (saturation) | 0.05..0.95, x (1 +- v) | ShearX / ShearY | -0.3..0.3 |
| Contrast | 0.05..0.95, x (1 +- v) | Solarize | threshold 0..1 |
| Equalize | - (torchvision's `equalize`) | TranslateX / TranslateY | -0.3..0.3 of the side |

The blend ops follow PIL's ImageEnhance (blend with black / grey / the mean / a smoothed image);
Equalize is torchvision's batched ``equalize`` on uint8; the geometric ops of one image are composed
into one affine map and applied with one ``grid_sample`` call for the whole batch.

Per data set policies: ``cifar`` (flip, pad 4 px = 1/8 of 32, grey fill as in FixMatch),
``digits`` (no flip: a mirrored 3 is not a 3; 1 px translation; black fill; rotations limited to
+-15 degrees), ``medical`` (flip, pad 1/8, black fill). `policy_for(dataset)` picks one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import UserError

VIEWS = ("none", "weak", "strong", "cld")
RANDAUGMENT_VARIANTS = ("fork", "usb")

OPS = ("identity", "autocontrast", "brightness", "color", "contrast", "equalize", "posterize",
       "rotate", "sharpness", "shear_x", "shear_y", "solarize", "translate_x", "translate_y")


@dataclass(frozen=True)
class AugmentPolicy:
    flip: bool = True
    pad_fraction: float = 0.125       # max translation of the weak view, fraction of the side
    n_ops_min: int = 2
    n_ops_max: int = 3
    cutout: float = 0.5               # Cutout side, fraction of the image side (fork: fixed; usb: the maximum)
    fill: float = 127 / 255           # Cutout value in [0, 1] (and, for usb, pixels from outside the image)
    warp_fill: float = 0.0            # fork: pixels from outside the image after a geometric op (PIL's black)
    randaugment: str = "fork"         # strong view: "fork" (USL FixMatch fork, default) or "usb"
    fork_ops: int = 2                 # fork: ops drawn per image (RandAugmentMC n)
    max_rotate_degrees: float = 30.0
    max_shear: float = 0.3
    max_translate: float = 0.3

    def pad_pixels(self, size: int) -> int:
        return int(round(self.pad_fraction * size))


POLICIES = {
    "cifar": AugmentPolicy(),
    "digits": AugmentPolicy(flip=False, pad_fraction=0.125, cutout=0.4, fill=0.0, max_rotate_degrees=15.0,
                            max_shear=0.2, max_translate=0.2),
    "medical": AugmentPolicy(fill=0.0),
}


def policy_for(name: str, image_size: int, randaugment: str | None = None) -> AugmentPolicy:
    """Resolve a policy name; "auto" = digits policy for images of 16 px or less, cifar otherwise.
    `randaugment` (fork | usb) replaces the policy's strong-view variant when given.

    Raises
    ------
    UserError
        For a name that is neither "auto" nor a key of `POLICIES`, or an unknown `randaugment`.
    """
    if name == "auto":
        name = "digits" if image_size <= 16 else "cifar"
    if name not in POLICIES:
        raise UserError(f"Unknown augmentation policy {name!r}; known: auto, {', '.join(sorted(POLICIES))}.")
    if randaugment is None:
        return POLICIES[name]
    if randaugment not in RANDAUGMENT_VARIANTS:
        raise UserError(f"Unknown randaugment variant {randaugment!r}; known: {', '.join(RANDAUGMENT_VARIANTS)}.")
    from dataclasses import replace

    return replace(POLICIES[name], randaugment=randaugment)


def augment(images: torch.Tensor, view: str, policy: AugmentPolicy, generator: torch.Generator) -> torch.Tensor:
    """uint8 (B, C, H, W) -> float (B, C, H, W) in [0, 1], augmented as `view`."""
    x = images.float() / 255.0
    if view == "none":
        return x
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}")
    if view == "cld":
        return cld_view(x, policy, generator)
    x = weak(x, policy, generator)
    if view == "strong":
        if policy.randaugment == "fork":
            x = randaugment_fork(x, policy, generator)
            x = cutout_fixed(x, policy, generator)
        elif policy.randaugment == "usb":
            x = randaugment(x, policy, generator)
            x = cutout(x, policy, generator)
        else:
            raise ValueError(f"unknown randaugment variant {policy.randaugment!r}")
    return x


def weak(x: torch.Tensor, policy: AugmentPolicy, generator: torch.Generator) -> torch.Tensor:
    """Random flip + integer translation with reflect padding (= crop of the reflect-padded image)."""
    b, _, h, w = x.shape
    device = x.device
    flips = torch.rand(b, generator=generator, device=device) < 0.5
    pad = policy.pad_pixels(min(h, w))
    shifts = torch.randint(-pad, pad + 1, (b, 2), generator=generator, device=device)
    if policy.flip:
        x = torch.where(flips[:, None, None, None], x.flip(-1), x)
    if pad == 0:
        return x
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    rows = torch.arange(h, device=device)[None, :] + pad + shifts[:, 0:1]   # (B, H)
    cols = torch.arange(w, device=device)[None, :] + pad + shifts[:, 1:2]   # (B, W)
    batch = torch.arange(b, device=device)[:, None, None]
    # gather rows then columns, per image
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()


def _grey(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 3:
        return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
    return x.mean(1, keepdim=True)


def _blend(x: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return (other + factor[:, None, None, None] * (x - other)).clamp(0.0, 1.0)


def _smooth(x: torch.Tensor) -> torch.Tensor:
    """PIL's SMOOTH kernel (centre 5, others 1, / 13); the border keeps the original pixels."""
    c = x.shape[1]
    kernel = torch.ones(3, 3, device=x.device, dtype=x.dtype)
    kernel[1, 1] = 5.0
    kernel = (kernel / 13.0).expand(c, 1, 3, 3)
    out = x.clone()
    if x.shape[-1] > 2 and x.shape[-2] > 2:
        out[..., 1:-1, 1:-1] = F.conv2d(x, kernel, groups=c)
    return out


def _apply_colour_op(x: torch.Tensor, op: str, v: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    """One photometric op on a sub-batch with per-image magnitudes v in [0, 1] and signs +-1."""
    if op == "autocontrast":
        low = x.amin(dim=(2, 3), keepdim=True)
        high = x.amax(dim=(2, 3), keepdim=True)
        return torch.where(high > low, (x - low) / (high - low).clamp_min(1e-6), x)
    if op == "equalize":
        from torchvision.transforms.v2 import functional as TF

        return TF.equalize((x * 255.0).round().to(torch.uint8)).float() / 255.0
    if op == "posterize":
        bits = (4 + torch.floor(v * 4.999)).to(torch.int64)  # 4..8
        mask = (255 - (2 ** (8 - bits) - 1)).to(torch.uint8)[:, None, None, None]
        return torch.bitwise_and((x * 255.0).round().to(torch.uint8), mask).float() / 255.0
    if op == "solarize":
        return torch.where(x >= v[:, None, None, None], 1.0 - x, x)
    factor = 1.0 + sign * (0.05 + 0.9 * v)  # PIL ImageEnhance factor 1 +- (0.05..0.95)
    return _enhance(x, op, factor)


def _enhance(x: torch.Tensor, op: str, factor: torch.Tensor) -> torch.Tensor:
    """PIL's ImageEnhance ops on a (B, C, H, W) batch in [0, 1]: blend with a degenerate image
    (black, grey, mean grey, smoothed) by `factor` (B,) (1 = unchanged)."""
    if op == "brightness":
        return _blend(x, torch.zeros_like(x), factor)
    if op == "color":
        return _blend(x, _grey(x).expand_as(x), factor)
    if op == "contrast":
        return _blend(x, _grey(x).mean(dim=(2, 3), keepdim=True).expand_as(x), factor)
    if op == "sharpness":
        return _blend(x, _smooth(x), factor)
    raise ValueError(op)


_GEOMETRIC = {"rotate", "shear_x", "shear_y", "translate_x", "translate_y"}


def randaugment(x: torch.Tensor, policy: AugmentPolicy, generator: torch.Generator) -> torch.Tensor:
    """RandAugment with random magnitudes: each image gets n ops (uniform choice, with repetition).

    Which images an op applies to is decided on the host: one copy of the slot's op choices per
    slot (nothing on the CPU, where it is already), then index tensors; a boolean mask tested or
    indexed per op would make the host wait for the GPU about 15 times per slot."""
    b = x.shape[0]
    device = x.device
    n_ops = torch.randint(policy.n_ops_min, policy.n_ops_max + 1, (b,), generator=generator, device=device)
    for slot in range(policy.n_ops_max):
        choice = torch.randint(0, len(OPS), (b,), generator=generator, device=device)
        magnitude = torch.rand(b, generator=generator, device=device)
        signs = torch.where(torch.rand(b, generator=generator, device=device) < 0.5, -1.0, 1.0)
        op_of = torch.where(slot < n_ops, choice, -1).cpu()  # -1: no op in this slot
        theta = torch.eye(2, 3, device=device).repeat(b, 1, 1)
        geometric: list[torch.Tensor] = []
        for op_index, op in enumerate(OPS):
            members = torch.nonzero(op_of == op_index).squeeze(1)  # increasing image indices, on the host
            if op == "identity" or len(members) == 0:
                continue
            if members.device != device:
                members = members.to(device, non_blocking=True)
            if op in _GEOMETRIC:
                geometric.append(members)
                theta[members] = _affine(op, magnitude[members] * signs[members], policy)
                continue
            x[members] = _apply_colour_op(x[members], op, magnitude[members], signs[members])
        if geometric:
            rows = torch.sort(torch.cat(geometric)).values
            x[rows] = _warp(x[rows], theta[rows], policy.fill)
    return x


def _affine(op: str, signed: torch.Tensor, policy: AugmentPolicy) -> torch.Tensor:
    """Affine matrices (normalised coordinates, as affine_grid expects) for signed magnitudes in [-1, 1]."""
    n = signed.shape[0]
    theta = torch.eye(2, 3, device=signed.device).repeat(n, 1, 1)
    if op == "rotate":
        angle = signed * math.radians(policy.max_rotate_degrees)
        theta[:, 0, 0] = torch.cos(angle)
        theta[:, 0, 1] = -torch.sin(angle)
        theta[:, 1, 0] = torch.sin(angle)
        theta[:, 1, 1] = torch.cos(angle)
    elif op == "shear_x":
        theta[:, 0, 1] = signed * policy.max_shear
    elif op == "shear_y":
        theta[:, 1, 0] = signed * policy.max_shear
    elif op == "translate_x":
        theta[:, 0, 2] = signed * policy.max_translate * 2.0  # normalised coordinates span 2
    elif op == "translate_y":
        theta[:, 1, 2] = signed * policy.max_translate * 2.0
    return theta


def _warp(x: torch.Tensor, theta: torch.Tensor, fill: float) -> torch.Tensor:
    """Apply per-image affine maps; pixels from outside the image get `fill` (nearest sampling)."""
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    ones = torch.ones_like(x[:, :1])
    # sample the image and a validity mask; zeros padding marks outside pixels
    sampled = F.grid_sample(torch.cat([x, ones], 1), grid, mode="nearest", padding_mode="zeros",
                            align_corners=False)
    image, valid = sampled[:, :-1], sampled[:, -1:]
    return image * valid + fill * (1.0 - valid)


def cutout(x: torch.Tensor, policy: AugmentPolicy, generator: torch.Generator) -> torch.Tensor:
    """Cutout: a square (side uniform in (0, cutout] x image side) centred at a random pixel."""
    b, _, h, w = x.shape
    device = x.device
    side = (torch.rand(b, generator=generator, device=device) * policy.cutout * min(h, w)).clamp_min(1.0)
    cy = torch.rand(b, generator=generator, device=device) * h
    cx = torch.rand(b, generator=generator, device=device) * w
    ys = torch.arange(h, device=device, dtype=torch.float32)[None, :] + 0.5
    xs = torch.arange(w, device=device, dtype=torch.float32)[None, :] + 0.5
    inside_y = (ys - cy[:, None]).abs() <= side[:, None] / 2
    inside_x = (xs - cx[:, None]).abs() <= side[:, None] / 2
    mask = (inside_y[:, :, None] & inside_x[:, None, :])[:, None]
    return torch.where(mask, torch.full_like(x, policy.fill), x)

# ---------------------------------------------------------------------------------------------
# RandAugment of the USL FixMatch fork (the default strong view)

FORK_OPS = ("autocontrast", "brightness", "color", "contrast", "equalize", "identity", "posterize", "rotate",
            "sharpness", "shear_x", "shear_y", "solarize", "translate_x", "translate_y")


@dataclass(frozen=True)
class RandAugmentPlan:
    """The draws of one batch's fork-style RandAugment: for each image and op slot, the op (index
    into FORK_OPS, with replacement), its level (1 .. levels - 1), whether it is applied
    (probability `p_apply`) and its sign (geometric ops). Tensors of shape (B, n_ops)."""

    ops: torch.Tensor
    levels: torch.Tensor
    applied: torch.Tensor
    signs: torch.Tensor


def draw_randaugment_plan(batch: int, generator: torch.Generator, n_ops: int = 2, levels: int = 10,
                          p_apply: float = 0.5, device: torch.device | str = "cpu") -> RandAugmentPlan:
    """Draw `n_ops` ops per image, uniformly with replacement from the 14 of FORK_OPS, each with a
    level uniform in 1 .. levels - 1 and applied with probability `p_apply` (the fork's
    RandAugmentMC(n=2, m=10): ``random.choices(pool, k=n)``, ``np.random.randint(1, m)``,
    ``random.random() < 0.5``)."""
    shape = (batch, n_ops)
    ops = torch.randint(0, len(FORK_OPS), shape, generator=generator, device=device)
    level = torch.randint(1, levels, shape, generator=generator, device=device)
    applied = torch.rand(shape, generator=generator, device=device) < p_apply
    signs = torch.where(torch.rand(shape, generator=generator, device=device) < 0.5, -1.0, 1.0)
    return RandAugmentPlan(ops, level, applied, signs)


def _fork_colour(x: torch.Tensor, op: str, level: torch.Tensor) -> torch.Tensor:
    """One photometric op of the fork at integer levels (per image): enhance factor 0.05 + 0.09 v
    (PIL ImageEnhance: blend with black / grey / the grey mean / a smoothed image), posterize to
    4 + int(0.4 v) bits, solarize above 256 - int(25.6 v)."""
    v = level.to(x.dtype)
    if op in ("autocontrast", "equalize"):
        return _apply_colour_op(x, op, v, v)
    if op == "posterize":
        bits = 4 + torch.div(level * 4, 10, rounding_mode="floor")
        mask = (255 - (2 ** (8 - bits) - 1)).to(torch.uint8)[:, None, None, None]
        return torch.bitwise_and((x * 255.0).round().to(torch.uint8), mask).float() / 255.0
    if op == "solarize":
        threshold = (256 - torch.div(level * 256, 10, rounding_mode="floor")).to(x.dtype)[:, None, None, None]
        return torch.where(x * 255.0 >= threshold - 0.5, 1.0 - x, x)
    factor = 0.05 + 0.09 * v
    return _enhance(x, op, factor)


def _fork_affine(op: str, level: torch.Tensor, sign: torch.Tensor, policy: AugmentPolicy, size: int) -> torch.Tensor:
    """Affine maps (normalised output -> input coordinates) of the fork's geometric ops at integer
    levels: rotate int(v x max_rotate / 10) degrees, shear v x max_shear / 10, translate
    int(v x max_translate / 10 x side) pixels; each with a random sign."""
    v = level.to(torch.float32)
    n = v.shape[0]
    theta = torch.eye(2, 3, device=v.device).repeat(n, 1, 1)
    if op == "rotate":
        angle = sign * torch.floor(v * policy.max_rotate_degrees / 10.0) * (math.pi / 180.0)
        theta[:, 0, 0] = torch.cos(angle)
        theta[:, 0, 1] = -torch.sin(angle)
        theta[:, 1, 0] = torch.sin(angle)
        theta[:, 1, 1] = torch.cos(angle)
    elif op in ("shear_x", "shear_y"):
        shear = sign * v * policy.max_shear / 10.0
        theta[:, 0 if op == "shear_x" else 1, 1 if op == "shear_x" else 0] = shear
    elif op in ("translate_x", "translate_y"):
        pixels = sign * torch.floor(v * policy.max_translate / 10.0 * size)
        theta[:, 0 if op == "translate_x" else 1, 2] = 2.0 * pixels / size
    return theta


def randaugment_fork(x: torch.Tensor, policy: AugmentPolicy, generator: torch.Generator,
                     plan: RandAugmentPlan | None = None) -> torch.Tensor:
    """The fork's RandAugment on a float batch in [0, 1]: for each op slot in turn, every image
    whose drawn op is applied gets it at its level (geometric ops fill with `policy.warp_fill`,
    black as PIL's default)."""
    b, _, h, w = x.shape
    if plan is None:
        plan = draw_randaugment_plan(b, generator, policy.fork_ops, 10, 0.5, x.device)
    # which images get which op is decided on the host, from one copy of the plan's ops (none on
    # the CPU): a boolean mask tested and indexed per op would make the host wait for the GPU
    # about 26 times per slot
    op_of = torch.where(plan.applied, plan.ops, -1).cpu()  # -1: not applied
    for slot in range(plan.ops.shape[1]):
        level, sign = plan.levels[:, slot], plan.signs[:, slot]
        for op_index, op in enumerate(FORK_OPS):
            members = torch.nonzero(op_of[:, slot] == op_index).squeeze(1)  # increasing image indices
            if op == "identity" or len(members) == 0:
                continue
            members = members.to(x.device, non_blocking=True)
            if op in _GEOMETRIC:
                theta = _fork_affine(op, level[members], sign[members], policy, min(h, w))
                x[members] = _warp(x[members], theta, policy.warp_fill)
            else:
                x[members] = _fork_colour(x[members], op, level[members])
    return x


def cutout_fixed(x: torch.Tensor, policy: AugmentPolicy, generator: torch.Generator) -> torch.Tensor:
    """The fork's CutoutAbs: side v = int(cutout x side) (16 px at 32 px), corner
    (int(max(0, c - v / 2)) for a uniform centre c, filled with `policy.fill` over the inclusive
    box [x0, x0 + v] clipped to the image (PIL's rectangle includes both corners)."""
    b, _, h, w = x.shape
    device = x.device
    side = int(policy.cutout * min(h, w))
    if side < 1:
        return x
    cy = torch.rand(b, generator=generator, device=device) * h
    cx = torch.rand(b, generator=generator, device=device) * w
    y0 = torch.clamp(cy - side / 2.0, min=0.0).floor()
    x0 = torch.clamp(cx - side / 2.0, min=0.0).floor()
    rows = torch.arange(h, device=device, dtype=torch.float32)[None, :]
    cols = torch.arange(w, device=device, dtype=torch.float32)[None, :]
    inside_y = (rows >= y0[:, None]) & (rows <= y0[:, None] + side)
    inside_x = (cols >= x0[:, None]) & (cols <= x0[:, None] + side)
    mask = (inside_y[:, :, None] & inside_x[:, None, :])[:, None]
    return torch.where(mask, torch.full_like(x, policy.fill), x)


# ---------------------------------------------------------------------------------------------
# CLD's training augmentation (the SimCLRv2-CLD fine-tuning view)


def _rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB in [0, 1] -> HSV in [0, 1]. Hand-written because torchvision's
    `adjust_hue` takes one hue factor per call and the CLD view needs one per image."""
    r, g, b = x.unbind(1)
    maxc, _ = x.max(1)
    minc, _ = x.min(1)
    delta = maxc - minc
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    rc, gc, bc = (maxc - r) / safe, (maxc - g) / safe, (maxc - b) / safe
    hue = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    hue = torch.where(delta > 0, (hue / 6.0) % 1.0, torch.zeros_like(hue))
    sat = torch.where(maxc > 0, delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc)), torch.zeros_like(maxc))
    return torch.stack([hue, sat, maxc], 1)


def _hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    h, s, v = x.unbind(1)
    i = torch.floor(h * 6.0)
    f = h * 6.0 - i
    i = i.to(torch.int64) % 6
    p, q, t = v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f))
    choices = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    out = torch.zeros_like(x)
    for k, (r, g, b) in enumerate(choices):
        sel = (i == k)[:, None]
        out = torch.where(sel, torch.stack([r, g, b], 1), out)
    return out


def _colour_jitter(x: torch.Tensor, generator: torch.Generator, strength: tuple[float, float, float, float]) -> torch.Tensor:
    """torchvision's ColorJitter(brightness, contrast, saturation, hue) with per-image factors and
    a per-image random order of the four adjustments."""
    b = x.shape[0]
    device = x.device
    bri, con, sat, hue = strength
    factors = {
        "brightness": 1.0 + (torch.rand(b, generator=generator, device=device) * 2.0 - 1.0) * bri,
        "contrast": 1.0 + (torch.rand(b, generator=generator, device=device) * 2.0 - 1.0) * con,
        "saturation": 1.0 + (torch.rand(b, generator=generator, device=device) * 2.0 - 1.0) * sat,
        "hue": (torch.rand(b, generator=generator, device=device) * 2.0 - 1.0) * hue,
    }
    order = torch.argsort(torch.rand(b, 4, generator=generator, device=device), dim=1)
    order_host = order.cpu()  # the membership tests on the host: one copy instead of 16 waits on a GPU
    names = list(factors)
    for slot in range(4):
        for op_index, name in enumerate(names):
            members = torch.nonzero(order_host[:, slot] == op_index).squeeze(1)
            if len(members) == 0:
                continue
            members = members.to(device, non_blocking=True)
            part, factor = x[members], factors[name][members]
            if name == "brightness":
                part = _blend(part, torch.zeros_like(part), factor)
            elif name == "contrast":
                part = _blend(part, _grey(part).mean(dim=(1, 2, 3), keepdim=True).expand_as(part), factor)
            elif name == "saturation":
                part = _blend(part, _grey(part).expand_as(part), factor) if part.shape[1] == 3 else part
            elif part.shape[1] == 3:
                hsv = _rgb_to_hsv(part)
                hsv[:, 0] = (hsv[:, 0] + factor[:, None, None]) % 1.0
                part = _hsv_to_rgb(hsv)
            x[members] = part
    return x


def _gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur with one sigma (pixels) per image, reflect padding, kernel radius
    ceil(3 sigma_max)."""
    b, c, h, w = x.shape
    radius = int(math.ceil(3.0 * float(sigma.max())))
    radius = max(1, min(radius, min(h, w) - 1))
    offsets = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (offsets[None, :] / sigma[:, None]) ** 2)
    kernel = kernel / kernel.sum(1, keepdim=True)                        # (B, K)
    weights = kernel.repeat_interleave(c, 0)                             # (B * C, K)
    flat = x.reshape(1, b * c, h, w)
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="reflect"), weights[:, None, None, :], groups=b * c)
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="reflect"), weights[:, None, :, None], groups=b * c)
    return flat.reshape(b, c, h, w)


def cld_view(x: torch.Tensor, policy: AugmentPolicy, generator: torch.Generator) -> torch.Tensor:
    """CLD's training augmentation (MoCo v2 style), batched with per-image draws: random resized
    crop (area 0.2-1, aspect 3/4-4/3, bilinear), colour jitter 0.4 / 0.4 / 0.4 / 0.1 with
    probability 0.8, greyscale with probability 0.2, Gaussian blur (sigma 0.1-2 px) with
    probability 0.5, horizontal flip (when the policy allows it). Reference:
    TonyLianLong/UnsupervisedSelectiveLabeling, shared/utils/nn_utils_cifar.py,
    `train_dataset_cifar("CLD-cifar10")`. The crop's sides are clamped to the image instead of
    torchvision's 10 retries."""
    b, c, h, w = x.shape
    device = x.device

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(b, generator=generator, device=device)

    area = uniform(0.2, 1.0)
    ratio = torch.exp(uniform(math.log(3 / 4), math.log(4 / 3)))
    sx = torch.sqrt(area * ratio).clamp(max=1.0)
    sy = torch.sqrt(area / ratio).clamp(max=1.0)
    theta = torch.zeros(b, 2, 3, device=device)
    theta[:, 0, 0] = sx
    theta[:, 0, 2] = uniform(-1.0, 1.0) * (1 - sx)
    theta[:, 1, 1] = sy
    theta[:, 1, 2] = uniform(-1.0, 1.0) * (1 - sy)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    jitter = uniform(0.0, 1.0) < 0.8
    if bool(jitter.any()):
        x[jitter] = _colour_jitter(x[jitter], generator, (0.4, 0.4, 0.4, 0.1)).clamp(0.0, 1.0)
    grey = (uniform(0.0, 1.0) < 0.2) & (c == 3)
    if bool(grey.any()):
        x[grey] = _grey(x[grey]).expand(-1, c, -1, -1).contiguous()
    blur = uniform(0.0, 1.0) < 0.5
    sigma = uniform(0.1, 2.0)
    if bool(blur.any()):
        x[blur] = _gaussian_blur(x[blur], sigma[blur])
    flips = uniform(0.0, 1.0) < 0.5
    if policy.flip:
        x = torch.where(flips[:, None, None, None], x.flip(-1), x)
    return x.clamp(0.0, 1.0)


# ---------------------------------------------------------------------------------------------
# contrastive views: USL-T's backbone mode (batched) and SimCLR pretraining (per image)


def contrastive_augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Batched SimCLR-style view of float images, used by USL-T's backbone mode.

    Random resized crop (area 0.2-1, aspect ratio 3/4-4/3) with horizontal flip (one affine map per
    image, reflection padding), colour jitter (brightness, contrast, saturation 0.4, p 0.8),
    greyscale (p 0.2, colour images only), cutout of a half-side square filled with 0.5 (p 0.5).

    Parameters
    ----------
    images : torch.Tensor
        float (B, C, H, W) in [0, 1], any device.
    generator : torch.Generator
        CPU generator; every random draw comes from it, in a fixed order.

    Returns
    -------
    torch.Tensor
        float (B, C, H, W) in [0, 1] on the device of `images`.

    Reference: Chen et al. 2020 (SimCLR) augmentations as used for USL-T (Wang, Lian, Yu, ECCV 2022).
    """
    b, c, h, w = images.shape
    device = images.device

    def uniform(low, high, *shape):
        return (low + (high - low) * torch.rand(shape or (b,), generator=generator)).to(device)

    area = uniform(0.2, 1.0)
    ratio = torch.exp(uniform(math.log(3 / 4), math.log(4 / 3)))
    sx = torch.sqrt(area * ratio).clamp(max=1.0)
    sy = torch.sqrt(area / ratio).clamp(max=1.0)
    tx = (uniform(-1.0, 1.0) * (1 - sx))
    ty = (uniform(-1.0, 1.0) * (1 - sy))
    flip = torch.where(uniform(0.0, 1.0) < 0.5, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3, device=device)
    theta[:, 0, 0] = sx * flip
    theta[:, 0, 2] = tx
    theta[:, 1, 1] = sy
    theta[:, 1, 2] = ty
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    out = F.grid_sample(images, grid, padding_mode="reflection", align_corners=False)
    jitter = (uniform(0.0, 1.0) < 0.8).float().view(b, 1, 1, 1)
    brightness = uniform(0.6, 1.4).view(b, 1, 1, 1)
    contrast = uniform(0.6, 1.4).view(b, 1, 1, 1)
    jittered = out * brightness
    mean = jittered.mean(dim=(1, 2, 3), keepdim=True)
    jittered = (jittered - mean) * contrast + mean
    if c == 3:
        grey = (0.299 * jittered[:, 0] + 0.587 * jittered[:, 1] + 0.114 * jittered[:, 2]).unsqueeze(1)
        saturation = uniform(0.6, 1.4).view(b, 1, 1, 1)
        jittered = (jittered - grey) * saturation + grey
    out = (jitter * jittered + (1 - jitter) * out).clamp(0.0, 1.0)
    if c == 3:
        to_grey = (uniform(0.0, 1.0) < 0.2).float().view(b, 1, 1, 1)
        grey = (0.299 * out[:, 0] + 0.587 * out[:, 1] + 0.114 * out[:, 2]).unsqueeze(1).expand_as(out)
        out = to_grey * grey + (1 - to_grey) * out
    cut = uniform(0.0, 1.0) < 0.5
    cy, cx = (uniform(0.0, 1.0) * h).long(), (uniform(0.0, 1.0) * w).long()
    rows = torch.arange(h, device=device).view(1, h, 1)
    cols = torch.arange(w, device=device).view(1, 1, w)
    half_h, half_w = max(1, h // 4), max(1, w // 4)
    box = ((rows - cy.view(b, 1, 1)).abs() <= half_h) & ((cols - cx.view(b, 1, 1)).abs() <= half_w)
    box &= cut.view(b, 1, 1)
    return out.masked_fill(box.unsqueeze(1), 0.5)


def simclr_transform(size: int, mean: tuple[float, ...], std: tuple[float, ...],
                     crop_scale: tuple[float, float] = (0.2, 1.0)):
    """Per-image SimCLR pipeline of pretraining (torchvision transforms on a PIL RGB image).

    RandomResizedCrop(size, scale=crop_scale), horizontal flip, colour jitter 0.4/0.4/0.4/0.1
    (p 0.8), greyscale (p 0.2), Gaussian blur (p 0.5, kernel ~ 10% of the side) only for images of
    64 px and more, then to a float tensor normalised with `mean` / `std` (one value per channel,
    or one value repeated for the three channels).

    Returns
    -------
    Callable[[PIL.Image.Image], torch.Tensor]
        image -> float (3, size, size). Randomness: torch's global generator (per DataLoader worker).

    Reference: Chen et al. 2020 (SimCLR); CIFAR settings of SCAN's SimCLR.
    """
    from torchvision import transforms as T

    steps = [T.RandomResizedCrop(size, scale=crop_scale), T.RandomHorizontalFlip(),
             T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8), T.RandomGrayscale(p=0.2)]
    if size >= 64:
        kernel = max(3, int(0.1 * size) // 2 * 2 + 1)
        steps.append(T.RandomApply([T.GaussianBlur(kernel, sigma=(0.1, 2.0))], p=0.5))
    mean3 = tuple(mean) * 3 if len(mean) == 1 else tuple(mean)
    std3 = tuple(std) * 3 if len(std) == 1 else tuple(std)
    steps += [T.ToTensor(), T.Normalize(mean3, std3)]
    return T.Compose(steps)


# ---------------------------------------------------------------------------------------------
# feature space


def feature_augment(x: torch.Tensor, dropout: float, noise_std: float, generator: torch.Generator) -> torch.Tensor:
    """USL-T head mode's stand-in for strong image augmentation on frozen features.

    Inverted dropout (p = `dropout`, kept entries scaled by 1 / (1 - p)) plus Gaussian noise of
    standard deviation `noise_std` / sqrt(d) per entry (so ~`noise_std` per unit-norm row).

    Parameters
    ----------
    x : torch.Tensor
        float (B, d) on any device.
    dropout, noise_std : float
        Drop probability in [0, 1); noise level per row.
    generator : torch.Generator
        Generator for both draws (mask first, then noise), which are made on its device: give one
        on `x`'s device (a CPU generator with GPU features works, at the price of a copy per draw).

    Returns
    -------
    torch.Tensor
        float (B, d) on `x`'s device.
    """
    where = generator.device
    keep = (torch.rand(x.shape, generator=generator, device=where) >= dropout).to(x.device, x.dtype)
    keep = keep / max(1.0 - dropout, 1e-6)
    noise = torch.randn(x.shape, generator=generator, device=where).to(x.device) * (noise_std / math.sqrt(x.shape[1]))
    return x * keep + noise
