"""The conveyor's defect classifier: a small CNN on object height maps (ok / defect).

Training data come from the geometric belt (``firmware_bridge.plc.sim``: boxes and cylinders
with dents and bumps) pushed through the same ``ObjectTracker`` the scanner runs, so the maps the
model sees in training are built exactly as on the line. Checkpoints are cached like the zoo's
(``get_or_train``): ``cache_dir()/checkpoints/conveyor-<key>.pt`` + ``.json``.

    model, meta = get_or_train(ConveyorTrainConfig())
    bundle = deploy_classifier(model, "conveyor.cpu.prism")      # (N, 1, 32, 32) float32 -> logits (N, 2)
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
           "quantize_classifier", "deploy_classifier", "CLASSES"]

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


def quantize_classifier(model: ConveyorNet, config: ConveyorTrainConfig, *, scheme: str = "pwlq", bits: int = 4,
                        samples: int = 512, progress: bool = True):
    """Post-training quantization (``sdk.quantize``, PWLQ or uniform) calibrated on ``samples``
    height maps of a scene the model was not trained on; returns the QuantizedModel (deploy it
    with ``deploy_classifier``)."""
    import sdk

    kw = dict(columns=config.columns, belt_width_mm=config.belt_width_mm, mm_per_count=config.mm_per_count,
              map_shape=config.map_shape)
    calib, _ = height_map_dataset(samples, config.seed + 20_000, **kw)
    return sdk.quantize(model, torch.from_numpy(calib[:, None]), scheme=scheme, weight_bits=bits,
                        progress=progress)


def deploy_classifier(model: ConveyorNet, out: str | Path, *, target: str = "cpu", metadata: dict | None = None):
    """Write a bundle taking (N, 1, H, W) float32 height maps (``model``: the FP32 net or its
    QuantizedModel); returns the sdk Bundle."""
    import sdk

    h, w = ConveyorTrainConfig.map_shape
    return sdk.deploy(model, target=target, example_input=np.zeros((1, 1, h, w), np.float32), out=out,
                      name="conveyor_classifier",
                      metadata={"classes": list(CLASSES), "input": "height map, mm / 50", **(metadata or {})})
