"""Batched image augmentations for the SSL learners (run on the training device).

Why batched tensors instead of per-image PIL transforms: the SSL loop draws up to 64 + 3 x 448
views per step; per-image Python calls would dominate a CPU step on small images, and on a GPU the
augmentation would starve the network. Every random draw comes from an explicit
`torch.Generator`, so a step's views depend only on (seed, step) and a resumed run sees exactly the
images an uninterrupted one would.

Views (a learner declares which ones it needs):

- ``weak``: random horizontal flip (when the policy allows it) + random translation by up to
  ``pad`` pixels with reflect padding (the "flip + reflect-padded crop" of FixMatch; a translation
  by an integer shift through reflection-padded sampling is exactly a crop of the padded image).
- ``strong``: ``weak``, then RandAugment with random magnitudes (FixMatch's "RA" variant):
  ``n_ops`` ops (2 or 3, drawn per image when ``n_ops_max > n_ops_min``) chosen uniformly from the
  14-op list below, each with a magnitude drawn uniformly in its range, then Cutout of a square
  whose side is a random fraction (up to ``cutout``) of the image side, filled with ``fill``.
- ``none``: the image as is (evaluation, distillation teachers).

The 14 RandAugment ops (FixMatch list) and their magnitude ranges:

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

VIEWS = ("none", "weak", "strong")

OPS = ("identity", "autocontrast", "brightness", "color", "contrast", "equalize", "posterize",
       "rotate", "sharpness", "shear_x", "shear_y", "solarize", "translate_x", "translate_y")


@dataclass(frozen=True)
class AugmentPolicy:
    flip: bool = True
    pad_fraction: float = 0.125       # max translation of the weak view, fraction of the side
    n_ops_min: int = 2
    n_ops_max: int = 3
    cutout: float = 0.5               # max Cutout side, fraction of the image side
    fill: float = 0.5                 # value ([0, 1]) for pixels that come from outside the image
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


def policy_for(name: str, image_size: int) -> AugmentPolicy:
    """Resolve a policy name; "auto" = digits policy for images of 16 px or less, cifar otherwise."""
    from ..errors import UserError

    if name == "auto":
        name = "digits" if image_size <= 16 else "cifar"
    if name not in POLICIES:
        raise UserError(f"Unknown augmentation policy {name!r}; known: auto, {', '.join(sorted(POLICIES))}.")
    return POLICIES[name]


def augment(images: torch.Tensor, view: str, policy: AugmentPolicy, generator: torch.Generator) -> torch.Tensor:
    """uint8 (B, C, H, W) -> float (B, C, H, W) in [0, 1], augmented as `view`."""
    x = images.float() / 255.0
    if view == "none":
        return x
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}")
    x = weak(x, policy, generator)
    if view == "strong":
        x = randaugment(x, policy, generator)
        x = cutout(x, policy, generator)
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
    """RandAugment with random magnitudes: each image gets n ops (uniform choice, with repetition)."""
    b = x.shape[0]
    device = x.device
    n_ops = torch.randint(policy.n_ops_min, policy.n_ops_max + 1, (b,), generator=generator, device=device)
    for slot in range(policy.n_ops_max):
        choice = torch.randint(0, len(OPS), (b,), generator=generator, device=device)
        magnitude = torch.rand(b, generator=generator, device=device)
        signs = torch.where(torch.rand(b, generator=generator, device=device) < 0.5, -1.0, 1.0)
        active = slot < n_ops
        theta = torch.eye(2, 3, device=device).repeat(b, 1, 1)
        geometric = torch.zeros(b, dtype=torch.bool, device=device)
        for op_index, op in enumerate(OPS):
            members = active & (choice == op_index)
            if op == "identity" or not bool(members.any()):
                continue
            if op in _GEOMETRIC:
                geometric |= members
                theta[members] = _affine(op, magnitude[members] * signs[members], policy)
                continue
            x[members] = _apply_colour_op(x[members], op, magnitude[members], signs[members])
        if bool(geometric.any()):
            x[geometric] = _warp(x[geometric], theta[geometric], policy.fill)
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

