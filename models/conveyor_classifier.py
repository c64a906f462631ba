"""The conveyor's defect classifier: a small CNN on object height maps (ok / defect).

Training data come from the geometric belt (``firmware_bridge.plc.sim``: boxes and cylinders
with dents and bumps) pushed through the same ``ObjectTracker`` the scanner runs, so the maps the
model sees in training are built exactly as on the line. Checkpoints are cached like the zoo's
(``get_or_train``): ``cache_dir()/checkpoints/conveyor-<key>.pt`` + ``.json``.

    model, meta = get_or_train(ConveyorTrainConfig())
    bundle = deploy_classifier(model, "conveyor.cpu.prism")      # (N, 1, 32, 32) float32 -> logits (N, 2)

**Optical height maps.** ``optical_height_map_dataset`` renders a diffraction belt
(``sdk.runtime.conveyor.optical.OpticalConveyor``: other shapes' defects — dents, notches, missing
corners — seen through the tilted light plane, with its back-face ramps and undecoded stretches),
decodes it with the line LUT and tracks it exactly as ``prism conveyor --optics diffraction``
does; ``get_or_train_optical(OpticalTrainConfig())`` fine-tunes the geometric model on those maps
(cached as ``conveyor-optical-<key>``). Rendering is the cost (~200 lines/s on two cores), so the
recipe uses few objects at 2 mm of travel per line: its accuracy is what the report states.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from firmware_bridge.plc.sim import GeometricConveyor, random_objects
from sdk.runtime.conveyor.tracker import ObjectTracker

from .train import cache_dir

__all__ = ["ConveyorNet", "ConveyorTrainConfig", "height_map_dataset", "train", "get_or_train",
           "compress_classifier", "deploy_classifier", "CLASSES", "OpticalTrainConfig",
           "optical_height_map_dataset", "optical_maps", "get_or_train_optical", "accuracy"]

CLASSES = ("ok", "defect")
RECIPE_VERSION = 1


class ConveyorNet(nn.Module):
    """(N, 1, H, W) height maps (mm / 50) -> (N, 2) logits. Three conv blocks, global max pool:
    a defect is a local feature wherever it sits on the object."""

    def __init__(self, width: int = 16):
        super().__init__()

        def block(cin, cout):
            return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]

        self.features = nn.Sequential(*block(1, width), nn.MaxPool2d(2), *block(width, 2 * width),
                                      nn.MaxPool2d(2), *block(2 * width, 2 * width))
        self.head = nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(2 * width, 2))

    def forward(self, x):
        return self.head(self.features(x))


@dataclass(frozen=True)
class ConveyorTrainConfig:
    samples: int = 3000
    epochs: int = 12
    lr: float = 3e-3
    batch_size: int = 64
    seed: int = 0
    width: int = 16
    columns: int = 64
    belt_width_mm: float = 200.0
    mm_per_count: float = 0.5
    map_shape: tuple[int, int] = (32, 32)

    def key(self) -> str:
        blob = json.dumps({**dataclasses.asdict(self), "recipe": RECIPE_VERSION}, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def height_map_dataset(n: int, seed: int, *, columns: int = 64, belt_width_mm: float = 200.0,
                       mm_per_count: float = 0.5, map_shape: tuple[int, int] = (32, 32),
                       chunk_lines: int = 20_000) -> tuple[np.ndarray, np.ndarray]:
    """``n`` objects on a simulated belt through the ObjectTracker: maps (n, H, W) float32 and
    labels (n,) int64 (1 = defect)."""
    from sdk.runtime.conveyor.tracker import LineProfile

    objects = random_objects(n, seed, mm_per_count=mm_per_count, belt_width_mm=belt_width_mm)
    belt = GeometricConveyor(objects, columns=columns, belt_width_mm=belt_width_mm, mm_per_count=mm_per_count)
    tracker = ObjectTracker(mm_per_count=mm_per_count, column_pitch_mm=belt.column_pitch_mm, map_shape=map_shape)
    maps, labels = [], []
    end = objects[-1].end + 200
    for start in range(0, end, chunk_lines):
        positions = np.arange(start, min(start + chunk_lines, end))
        heights = belt.heights(positions)
        for k, pos in enumerate(positions):
            for obj in tracker.feed(LineProfile(int(pos), int(pos), 0, heights[k])):
                truth = belt.object_at(obj.first_count, obj.last_count)
                if truth is None:
                    raise RuntimeError(f"tracked object at counts {obj.first_count}..{obj.last_count} "
                                       "matches nothing in the scene")
                maps.append(obj.height_map)
                labels.append(int(truth.defect is not None))
    if len(maps) != n:
        raise RuntimeError(f"the tracker found {len(maps)} objects in a scene of {n}")
    return np.stack(maps), np.asarray(labels, np.int64)


def train(config: ConveyorTrainConfig, progress: bool = True) -> tuple[ConveyorNet, dict]:
    """Train on ``samples`` maps (seed ``seed``), validate on 500 maps of another seed."""
    from tqdm import tqdm

    torch.manual_seed(config.seed)
    kw = dict(columns=config.columns, belt_width_mm=config.belt_width_mm, mm_per_count=config.mm_per_count,
              map_shape=config.map_shape)
    t0 = time.perf_counter()
    x, y = height_map_dataset(config.samples, config.seed, **kw)
    xv, yv = height_map_dataset(500, config.seed + 10_000, **kw)
    model = ConveyorNet(config.width)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    steps = config.epochs * int(np.ceil(len(x) / config.batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=steps)
    xt, yt = torch.from_numpy(x[:, None]), torch.from_numpy(y)
    gen = torch.Generator().manual_seed(config.seed)
    for _ in tqdm(range(config.epochs), desc="conveyor classifier", disable=not progress):
        model.train()
        for idx in torch.randperm(len(xt), generator=gen).split(config.batch_size):
            xb = xt[idx]
            if torch.rand(1, generator=gen).item() < 0.5:  # flips keep the label
                xb = xb.flip(2)
            if torch.rand(1, generator=gen).item() < 0.5:
                xb = xb.flip(3)
            loss = nn.functional.cross_entropy(model(xb), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    with torch.no_grad():
        val = float((model(torch.from_numpy(xv[:, None])).argmax(1).numpy() == yv).mean())
    meta = {"config": dataclasses.asdict(config), "classes": list(CLASSES), "val_accuracy": val,
            "defect_rate_train": float(y.mean()), "seconds": time.perf_counter() - t0,
            "torch": torch.__version__}
    return model, meta


def get_or_train(config: ConveyorTrainConfig = ConveyorTrainConfig(), progress: bool = True) -> tuple[ConveyorNet, dict]:
    """The cached checkpoint for ``config``, else train and cache it. ``meta["cached"]`` says which."""
    stem = cache_dir() / "checkpoints" / f"conveyor-{config.key()}"
    pt, js = stem.with_suffix(".pt"), stem.with_suffix(".json")
    if pt.exists() and js.exists():
        meta = json.loads(js.read_text())
        model = ConveyorNet(config.width)
        model.load_state_dict(torch.load(pt, weights_only=True))
        return model.eval(), {**meta, "cached": True, "checkpoint": str(stem)}
    model, meta = train(config, progress)
    stem.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), pt)
    js.write_text(json.dumps(meta, indent=2))
    return model, {**meta, "cached": False, "checkpoint": str(stem)}


def accuracy(model: nn.Module, maps: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of ``maps`` (N, H, W) whose arg-max class equals ``labels`` (N,)."""
    model.eval()
    with torch.no_grad():
        return float((model(torch.from_numpy(maps[:, None])).argmax(1).numpy() == labels).mean())


def optical_height_map_dataset(n_objects: int, seed: int, *, lut, mm_per_line: float = 2.0,
                               chunk_lines: int = 256, progress: bool = True) -> tuple[np.ndarray, np.ndarray, dict]:
    """A diffraction belt of ``n_objects`` (``OpticalConveyor.random``, seed ``seed``) rendered,
    decoded with ``lut`` (LineLUT or .npz) and tracked as the optical scanner does: maps
    (M, 32, 32) float32, labels (M,) int64 (1 = defect) and counts (``tracked``, ``matched``,
    ``phantom``: tracked objects overlapping no scene object, left out; ``missed``: scene objects
    no tracked object overlapped)."""
    from tqdm import tqdm

    from sdk.runtime.conveyor.optical import OpticalConveyor

    line = OpticalConveyor.random(n_objects, seed, mm_per_line=mm_per_line)
    geo = line.scanner_geometry()
    extractor = line.extractor(lut)
    tracker = ObjectTracker(mm_per_count=geo["mm_per_count"], column_pitch_mm=geo["column_pitch_mm"],
                            min_height_mm=geo["min_height_mm"], gap_lines=geo["gap_lines"])
    from sdk.runtime.conveyor.tracker import LineProfile

    total = line.lines_for()
    cam = line.camera
    tracked = []
    for start in tqdm(range(0, total, chunk_lines), desc="optical height maps", unit="chunk", disable=not progress):
        ids = np.arange(start, min(start + chunk_lines, total))
        rows = line.generator(ids, np.zeros(len(ids), np.int64), line.generator.width)
        heights = extractor.heights(rows.reshape(len(ids), cam.rois, 1, cam.Q, 3))
        for k, i in enumerate(ids):
            tracked += tracker.feed(LineProfile(int(i), int(i), 0, heights[k]))
    maps, labels, used = [], [], set()
    phantom = 0
    for obj in tracked:
        hits = [t for t in line.objects if t.start <= obj.last_count and obj.first_count < t.end]
        if not hits:
            phantom += 1
            continue
        truth = max(hits, key=lambda t: min(t.end - 1, obj.last_count) - max(t.start, obj.first_count))
        used.add(truth.object_id)
        maps.append(obj.height_map)
        labels.append(int(truth.defect is not None))
    counts = {"tracked": len(tracked), "matched": len(maps), "phantom": phantom,
              "missed": len(line.objects) - len(used)}
    return np.stack(maps), np.asarray(labels, np.int64), counts


@dataclass(frozen=True)
class OpticalTrainConfig:
    """Fine-tune ``base``'s model on optical height maps: ``objects`` training objects (seed
    ``seed``), ``val_objects`` validation objects (seed ``seed + 10_000``), ``mm_per_line`` of
    travel per rendered line; ``lut_key``: the LUT file's name (part of the cache key)."""

    objects: int = 640
    val_objects: int = 100
    epochs: int = 40
    lr: float = 1e-3
    batch_size: int = 32
    seed: int = 0
    mm_per_line: float = 2.0
    lut_key: str = ""
    base: ConveyorTrainConfig = ConveyorTrainConfig()

    def key(self) -> str:
        blob = json.dumps({**dataclasses.asdict(self), "recipe": RECIPE_VERSION}, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def optical_maps(config: "OpticalTrainConfig", lut, split: str, progress: bool = True) -> tuple[np.ndarray, np.ndarray, dict]:
    """``optical_height_map_dataset`` of ``config``'s ``split`` ("train": ``objects`` at seed
    ``seed``; "val": ``val_objects`` at ``seed + 10_000``) measured with ``lut``, cached as
    ``cache_dir()/datasets/conveyor-optical-<key>-<split>.npz`` (rendering costs minutes; the
    fine-tune, the quantizer's calibration and the exit search all read the same maps)."""
    if split not in ("train", "val"):
        raise ValueError(f"split: expected 'train' or 'val', got {split!r}")
    n, seed = (config.objects, config.seed) if split == "train" else (config.val_objects, config.seed + 10_000)
    blob = json.dumps({"lut": config.lut_key or Path(lut).stem, "objects": n, "seed": seed,
                       "mm_per_line": config.mm_per_line, "recipe": RECIPE_VERSION}, sort_keys=True).encode()
    path = cache_dir() / "datasets" / f"conveyor-optical-maps-{hashlib.sha256(blob).hexdigest()[:16]}.npz"
    if path.exists():
        with np.load(path) as z:
            return z["maps"], z["labels"], json.loads(str(z["counts"]))
    maps, labels, counts = optical_height_map_dataset(n, seed, lut=lut, mm_per_line=config.mm_per_line,
                                                      progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, maps=maps, labels=labels, counts=json.dumps(counts))
    tmp.replace(path)
    return maps, labels, counts


def get_or_train_optical(config: OpticalTrainConfig, lut, progress: bool = True) -> tuple[ConveyorNet, dict]:
    """The cached optical fine-tune for ``config`` (``lut``: the LUT that measures the maps), else
    render, measure, fine-tune and cache it. ``meta`` holds the validation accuracy on optical maps
    of the fine-tuned model and of the geometric base (the peer), and the dataset counts."""
    from tqdm import tqdm

    config = dataclasses.replace(config, lut_key=config.lut_key or Path(lut).stem)
    stem = cache_dir() / "checkpoints" / f"conveyor-optical-{config.key()}"
    pt, js = stem.with_suffix(".pt"), stem.with_suffix(".json")
    if pt.exists() and js.exists():
        model = ConveyorNet(config.base.width)
        model.load_state_dict(torch.load(pt, weights_only=True))
        return model.eval(), {**json.loads(js.read_text()), "cached": True, "checkpoint": str(stem)}
    t0 = time.perf_counter()
    base, _ = get_or_train(config.base, progress)
    x, y, train_counts = optical_maps(config, lut, "train", progress)
    xv, yv, val_counts = optical_maps(config, lut, "val", progress)
    base_val = accuracy(base, xv, yv)
    model = ConveyorNet(config.base.width)
    model.load_state_dict(base.state_dict())
    torch.manual_seed(config.seed)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    xt, yt = torch.from_numpy(x[:, None]), torch.from_numpy(y)
    gen = torch.Generator().manual_seed(config.seed)
    for _ in tqdm(range(config.epochs), desc="optical fine-tune", disable=not progress):
        model.train()
        for idx in torch.randperm(len(xt), generator=gen).split(config.batch_size):
            xb = xt[idx]
            if torch.rand(1, generator=gen).item() < 0.5:  # across the belt: mirror-symmetric
                xb = xb.flip(3)
            loss = nn.functional.cross_entropy(model(xb), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    meta = {"config": dataclasses.asdict(config), "classes": list(CLASSES),
            "val_accuracy": accuracy(model, xv, yv), "val_accuracy_geometric_base": base_val,
            "train_accuracy": accuracy(model, x, y), "val_defect_rate": float(yv.mean()),
            "train_counts": train_counts, "val_counts": val_counts, "seconds": time.perf_counter() - t0,
            "torch": torch.__version__}
    stem.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), pt)
    js.write_text(json.dumps(meta, indent=2))
    return model, {**meta, "cached": False, "checkpoint": str(stem)}


def compress_classifier(model: ConveyorNet, *, quantize: str | None = None, bits: int = 4, dynamic: bool = False,
                        maps: np.ndarray | None = None, labels: np.ndarray | None = None,
                        calib: np.ndarray | None = None, seed: int = 0, progress: bool = True):
    """``model`` made a two-stage S2DNAS network (``sdk.make_dynamic``, small exit search on the
    (N, H, W) height ``maps`` and their ``labels``) if ``dynamic``, then post-training quantized
    (``sdk.quantize``, ``quantize`` = "pwlq"/"uniform", ``bits``) calibrated on the height maps
    ``calib``; deploy the result with ``deploy_classifier``."""
    import sdk

    if dynamic:
        if maps is None or labels is None:
            raise ValueError("compress_classifier(dynamic=True) needs maps and labels for the exit search")
        # the stages are retrained from the static weights: SGD at lr 0.01 (0.1, the paper's
        # ImageNet/CIFAR rate, leaves these small maps' stages at chance)
        model = sdk.make_dynamic(model, (maps[:, None], labels), stages=2, candidates=4,
                                 finetune_epochs=0.5, epochs=15, lr=0.01, seed=seed, progress=progress)
    if quantize:
        if calib is None:
            raise ValueError(f"compress_classifier(quantize={quantize!r}) needs calibration maps (calib)")
        model = sdk.quantize(model, torch.from_numpy(np.ascontiguousarray(calib[:, None])), scheme=quantize,
                             weight_bits=bits, progress=progress)
    return model


def deploy_classifier(model: ConveyorNet, out: str | Path, *, target: str = "cpu", metadata: dict | None = None):
    """Write a bundle taking (N, 1, H, W) float32 height maps (``model``: the FP32 net or its
    QuantizedModel); returns the sdk Bundle."""
    import sdk

    h, w = ConveyorTrainConfig.map_shape
    return sdk.deploy(model, target=target, example_input=np.zeros((1, 1, h, w), np.float32), out=out,
                      name="conveyor_classifier",
                      metadata={"classes": list(CLASSES), "input": "height map, mm / 50", **(metadata or {})})
