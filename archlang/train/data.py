"""Training data for `archc train`, as in-memory tensors shaped for the network's input.

- `digits`: scikit-learn's bundled handwritten digits (1,797 real 8x8 scans, no download),
  resized to the network's HxW, with a fixed 80/20 train/validation split.
- `synthetic`: random images and labels, for measuring throughput only (nothing to learn).
- a folder: one sub-folder per class of image files (read with Pillow), or `train/` and
  `val/` folders each holding those class folders; without them, a fixed 80/20 split.

Images are resized to the network's HxW, made grey (C=1) or RGB (C=3), and standardised per
channel with the training split's mean and standard deviation.  Colour images made grey for a
1-channel network, and grey images repeated into a 3-channel one, get a note (`Data.notes`),
which the run prints before it trains.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

SPLIT_SEED = 20261123  # the validation split never changes with --seed
VAL_FRACTION = 0.2
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
SYNTHETIC_SIZE = (2048, 512)


class DataError(Exception):
    """The data cannot be read, or cannot feed this network."""


@dataclass
class Data:
    name: str  # what the run reports: "digits", "synthetic" or the folder
    classes: list[str]
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    notes: list[str] = field(default_factory=list)  # what was done to the images to fit the network

    def describe(self) -> str:
        return (f"{self.name}: {len(self.train_y):,} training and {len(self.val_y):,} validation images, "
                f"{len(self.classes)} classes, {'x'.join(map(str, self.train_x.shape[1:]))}")


def load(spec: str, input_shape: tuple[int, ...], outputs: int) -> Data:
    """The dataset `spec` (digits, synthetic or a folder), shaped for a network taking
    `input_shape`; synthetic labels take `outputs` classes."""
    if spec == "synthetic":
        return _synthetic(input_shape, outputs)
    _image_layout(input_shape)  # fail on an unusable input before reading anything
    if spec == "digits":
        return _digits(input_shape)
    return _folder(Path(spec), input_shape)


def _image_layout(shape: tuple[int, ...]) -> tuple[int, int, int, bool]:
    """(C, H, W, flatten): images become CxHxW; a vector input of k*k features takes kxk grey images."""
    if len(shape) == 3:
        c, h, w = shape
        if c not in (1, 3):
            raise DataError(f"the network takes {c}-channel images; image data gives 1 (grey) or 3 (RGB) channels")
        return c, h, w, False
    (features,) = shape
    side = round(features ** 0.5)
    if side * side != features:
        raise DataError(f"the network takes a vector of {features} features; image data fits a vector input "
                        "only when it is k*k (a kxk grey image, flattened)")
    return 1, side, side, True


def _channel_note(name: str, colour: bool, channels: int) -> str | None:
    """The note for images of `name` (in colour or grey) fed to a network of `channels` channels."""
    if colour and channels == 1:
        return (f"{name}: the images are in colour and the network takes 1 channel: they are made grey "
                "(give the network a 3-channel input to keep the colour)")
    if not colour and channels == 3:
        return f"{name}: the images are grey and the network takes 3 channels: each holds the same grey image"
    return None


def _shape_images(x: torch.Tensor, input_shape: tuple[int, ...]) -> torch.Tensor:
    """N x c x h x w floats in [0, 1] → N x input_shape."""
    c, h, w, flatten = _image_layout(input_shape)
    if x.shape[2:] != (h, w):
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    if x.shape[1] != c:
        x = x.mean(1, keepdim=True) if c == 1 else x.expand(-1, c, -1, -1)
    x = x.contiguous()
    return x.flatten(1) if flatten else x


def _standardise(train: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    dims = [0] + list(range(2, train.dim()))
    mean = train.mean(dim=dims, keepdim=True)
    std = train.std(dim=dims, keepdim=True).clamp_min(1e-6)
    return [(t - mean) / std for t in (train, *others)]


def _split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    order = torch.randperm(n, generator=torch.Generator().manual_seed(SPLIT_SEED))
    n_val = max(1, round(n * VAL_FRACTION))
    return order[n_val:], order[:n_val]


def _digits(input_shape: tuple[int, ...]) -> Data:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataError("--data digits needs scikit-learn: pip install 'archlang[train]'") from None
    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0  # N x 1 x 8 x 8, 0..1
    y = torch.tensor(bunch.target, dtype=torch.long)
    x = _shape_images(x, input_shape)
    train, val = _split(len(y))
    tx, vx = _standardise(x[train], x[val])
    note = _channel_note("digits", False, _image_layout(input_shape)[0])
    return Data("digits", [str(d) for d in range(10)], tx, y[train], vx, y[val], notes=[note] if note else [])


def _synthetic(input_shape: tuple[int, ...], k: int) -> Data:
    g = torch.Generator().manual_seed(SPLIT_SEED)
    n_train, n_val = SYNTHETIC_SIZE
    x = torch.randn((n_train + n_val, *input_shape), generator=g)
    y = torch.randint(0, k, (n_train + n_val,), generator=g)
    return Data("synthetic", [str(i) for i in range(k)], x[:n_train], y[:n_train], x[n_train:], y[n_train:])


def _class_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _folder(root: Path, input_shape: tuple[int, ...]) -> Data:
    if not root.exists():
        raise DataError(f"--data {root}: no such folder (use digits, synthetic, or a folder of class folders)")
    if not root.is_dir():
        raise DataError(f"--data {root}: not a folder (use digits, synthetic, or a folder of class folders)")
    try:
        from PIL import Image  # noqa: F401
    except ImportError:
        raise DataError("--data FOLDER needs Pillow: pip install 'archlang[train]'") from None
    if (root / "train").is_dir() and (root / "val").is_dir():
        classes = [p.name for p in _class_folders(root / "train")]
        tx, ty, colour = _read_tree(root / "train", classes, input_shape)
        val_classes = [p.name for p in _class_folders(root / "val")]
        if val_classes != classes:
            raise DataError(f"{root / 'val'} has the classes {', '.join(val_classes)}, but {root / 'train'} has "
                            f"{', '.join(classes)}: both need the same class folders")
        vx, vy, val_colour = _read_tree(root / "val", classes, input_shape)
        colour = colour or val_colour
    else:
        classes = [p.name for p in _class_folders(root)]
        x, y, colour = _read_tree(root, classes, input_shape)
        if len(y) < 2:
            raise DataError(f"{root}: {len(y)} image; a training and a validation split need at least 2")
        train, val = _split(len(y))
        tx, ty, vx, vy = x[train], y[train], x[val], y[val]
    tx, vx = _standardise(tx, vx)
    note = _channel_note(str(root), colour, _image_layout(input_shape)[0])
    return Data(str(root), classes, tx, ty, vx, vy, notes=[note] if note else [])


GREY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


def _in_colour(im) -> bool:
    """Whether a Pillow image holds colour: a colour mode whose channels are not all equal
    (an RGB file of a grey picture is grey)."""
    if im.mode in GREY_MODES:
        return False
    r, g, b = im.convert("RGB").split()
    return r.tobytes() != g.tobytes() or g.tobytes() != b.tobytes()


def _read_tree(root: Path, classes: list[str],
               input_shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """The images and labels under `root`, and whether any image is in colour."""
    from PIL import Image, UnidentifiedImageError

    if len(classes) < 2:
        found = f"only {classes[0]}/" if classes else "no class folders"
        raise DataError(f"{root}: {found}; it needs one sub-folder per class (at least 2), each holding images")
    c, h, w, flatten = _image_layout(input_shape)
    mode = "L" if c == 1 else "RGB"
    images, labels, colour = [], [], False
    for label, name in enumerate(classes):
        files = sorted(p for p in (root / name).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not files:
            raise DataError(f"{root / name}: no images (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
        for path in files:
            try:
                with Image.open(path) as im:
                    colour = colour or _in_colour(im)
                    im = im.convert(mode).resize((w, h), Image.Resampling.BILINEAR)
                    data = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8)
            except Image.DecompressionBombError:
                raise DataError(f"the image {path} is too large to read safely (over Pillow's limit of "
                                f"{Image.MAX_IMAGE_PIXELS:,} pixels): it may be a decompression bomb") from None
            except (UnidentifiedImageError, OSError, ValueError) as err:
                raise DataError(f"cannot read the image {path}: {err}") from None
            images.append(data.view(h, w, c).permute(2, 0, 1).float() / 255.0)
            labels.append(label)
    x = torch.stack(images)
    return (x.flatten(1) if flatten else x), torch.tensor(labels, dtype=torch.long), colour
