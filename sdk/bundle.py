"""Deployment bundles: a directory with ``manifest.json``, ONNX graph(s) and side files.

A bundle is what ``sdk.deploy`` writes and ``sdk.load`` reads. It is self-describing and
verifiable: the manifest lists every file with its SHA-256, and readers refuse a bundle whose
files do not match, whose manifest lacks a field, or that was written with a newer schema.

Layout::

    resnet20.prism/
      manifest.json        # this schema
      model.onnx           # one file per graph (several for multi-stage / dynamic models)
      ...                  # quantization tables (.npz), engine caches live beside, not inside

Manifest (schema version 1), required fields marked *::

    schema_version*   int, bumped on incompatible changes; readers reject newer versions
    prism_version*    version of Prism that wrote the bundle
    target*           deployment target name (see sdk.toolchain.targets), e.g. "cpu", "jetson"
    precision*        "fp32", "fp16", "int8", "pwlq4", ...
    graphs*           list of graphs: {name, file, inputs: [TensorSpec], outputs: [TensorSpec]}
                      the first graph is the entry point; multi-stage bundles list one per stage
    files*            {relative path: {"sha256": hex, "bytes": int}} for every file but manifest.json
    preprocess        PreprocessRecipe dict (sdk.preprocess) that turns u8 frames into the input
    export            how the ONNX was produced: opset, exporter, max |onnx - torch| on the example
    quantization      scheme, bits, per-layer breakpoints (PWLQ bundles)
    dynamic           stages, thresholds, FLOPs per stage (S2DNAS bundles)
    native            {"plan": "plan.json", "tables": "tables.npz"} for the native backend, or
                      {"unsupported": why}
    tensorrt          per graph: lint findings, shape profile, accuracy check (Jetson bundles)
    metadata          free-form: model name, dataset, accuracy, labels
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._version import __version__
from .errors import BundleError

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
REQUIRED_FIELDS = ("schema_version", "prism_version", "target", "precision", "graphs", "files")
DTYPES = ("float32", "float16", "uint8", "int8", "int32", "int64", "bool")


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape and dtype of a graph input or output.

    ``shape`` holds ints for fixed dimensions and strings for symbolic ones (``"batch"``).
    """

    name: str
    shape: tuple[int | str, ...]
    dtype: str = "float32"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str) -> "TensorSpec":
        for key in ("name", "shape", "dtype"):
            if key not in d:
                raise BundleError(f"{where}: tensor spec is missing the field '{key}'")
        if d["dtype"] not in DTYPES:
            raise BundleError(f"{where}: tensor '{d['name']}' has unknown dtype '{d['dtype']}' "
                              f"(known: {', '.join(DTYPES)})")
        return cls(str(d["name"]), tuple(d["shape"]), str(d["dtype"]))

    def matches(self, shape: tuple[int, ...]) -> bool:
        """True if a concrete ``shape`` fits this spec (symbolic dimensions match any size)."""
        return len(shape) == len(self.shape) and all(
            isinstance(want, str) or want == got for want, got in zip(self.shape, shape))


@dataclass(frozen=True)
class GraphSpec:
    """One ONNX graph of a bundle."""

    name: str
    file: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    extra: dict[str, Any] = field(default_factory=dict)  # per-graph fields (stage FLOPs, form)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "file": self.file,
                "inputs": [t.to_dict() for t in self.inputs],
                "outputs": [t.to_dict() for t in self.outputs], **self.extra}

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str) -> "GraphSpec":
        for key in ("name", "file", "inputs", "outputs"):
            if key not in d:
                raise BundleError(f"{where}: graph is missing the field '{key}'")
        name = d["name"]
        extra = {k: v for k, v in d.items() if k not in ("name", "file", "inputs", "outputs")}
        return cls(name, d["file"],
                   tuple(TensorSpec.from_dict(t, f"{where} graph '{name}' input") for t in d["inputs"]),
                   tuple(TensorSpec.from_dict(t, f"{where} graph '{name}' output") for t in d["outputs"]),
                   extra)


@dataclass
class Bundle:
    """A verified bundle on disk. Use :func:`read_bundle` to open one."""

    path: Path
    manifest: dict[str, Any]
    graphs: tuple[GraphSpec, ...]

    @property
    def target(self) -> str:
        return self.manifest["target"]

    @property
    def precision(self) -> str:
        return self.manifest["precision"]

    @property
    def entry(self) -> GraphSpec:
        return self.graphs[0]

    def graph(self, name: str) -> GraphSpec:
        for g in self.graphs:
            if g.name == name:
                return g
        raise BundleError(f"{self.path}: no graph named '{name}' "
                          f"(graphs: {', '.join(g.name for g in self.graphs)})")

    def file(self, rel: str) -> Path:
        return self.path / rel

    @property
    def preprocess(self) -> dict[str, Any] | None:
        return self.manifest.get("preprocess")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def write_bundle(out: str | os.PathLike, files: dict[str, Path | bytes], *, target: str,
                 precision: str, graphs: list[GraphSpec], overwrite: bool = True,
                 **sections: Any) -> Bundle:
    """Write a bundle atomically: staged in a temporary sibling directory, then renamed.

    ``files`` maps a bundle-relative name to a source path (copied) or to bytes (written).
    ``sections`` are the optional manifest sections (preprocess, export, quantization, dynamic,
    metadata); ``None`` values are left out.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise BundleError(f"{out}: already exists (pass overwrite=True to replace it)")
    for g in graphs:
        if g.file not in files:
            raise BundleError(f"graph '{g.name}' refers to '{g.file}', which is not among the "
                              f"bundle files ({', '.join(files)})")
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        index = {}
        for rel, src in files.items():
            dst = stage / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(src, (bytes, bytearray)):
                dst.write_bytes(src)
            else:
                shutil.copyfile(src, dst)
            index[rel] = {"sha256": sha256_file(dst), "bytes": dst.stat().st_size}
        manifest = {"schema_version": SCHEMA_VERSION, "prism_version": __version__,
                    "target": target, "precision": precision,
                    "graphs": [g.to_dict() for g in graphs], "files": index}
        manifest.update({k: v for k, v in sections.items() if v is not None})
        (stage / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
        if out.exists():
            shutil.rmtree(out)
        stage.rename(out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return read_bundle(out)


def read_bundle(path: str | os.PathLike, *, verify: bool = True) -> Bundle:
    """Open and validate a bundle directory.

    Raises :class:`BundleError` naming the path, file or field when the bundle is missing,
    its manifest is incomplete or newer than this Prism, or a file fails its checksum.
    """
    path = Path(path)
    if not path.exists():
        raise BundleError(f"bundle not found: {path}")
    if not path.is_dir():
        raise BundleError(f"{path}: a bundle is a directory holding {MANIFEST}, this is a file")
    mpath = path / MANIFEST
    if not mpath.is_file():
        raise BundleError(f"{path}: no {MANIFEST} in this directory, it is not a Prism bundle")
    try:
        manifest = json.loads(mpath.read_text())
    except json.JSONDecodeError as e:
        raise BundleError(f"{mpath}: not valid JSON ({e})") from None
    if not isinstance(manifest, dict):
        raise BundleError(f"{mpath}: the manifest must be a JSON object")
    for key in REQUIRED_FIELDS:
        if key not in manifest:
            raise BundleError(f"{mpath}: missing required field '{key}'")
    version = manifest["schema_version"]
    if not isinstance(version, int) or version < 1:
        raise BundleError(f"{mpath}: field 'schema_version' must be a positive integer, got {version!r}")
    if version > SCHEMA_VERSION:
        raise BundleError(f"{mpath}: field 'schema_version' is {version}, newer than this Prism "
                          f"{__version__} reads (≤ {SCHEMA_VERSION}); upgrade prism-sdk")
    if not isinstance(manifest["graphs"], list) or not manifest["graphs"]:
        raise BundleError(f"{mpath}: field 'graphs' must be a non-empty list")
    graphs = tuple(GraphSpec.from_dict(g, str(mpath)) for g in manifest["graphs"])
    files = manifest["files"]
    if not isinstance(files, dict):
        raise BundleError(f"{mpath}: field 'files' must map file names to checksums")
    for g in graphs:
        if g.file not in files:
            raise BundleError(f"{mpath}: graph '{g.name}' file '{g.file}' is not listed in 'files'")
    for rel, entry in files.items():
        fpath = path / rel
        if not fpath.is_file():
            raise BundleError(f"{fpath}: listed in the manifest but missing from the bundle")
        if not isinstance(entry, dict) or "sha256" not in entry:
            raise BundleError(f"{mpath}: files['{rel}'] is missing the field 'sha256'")
        if verify and sha256_file(fpath) != entry["sha256"]:
            raise BundleError(f"{fpath}: SHA-256 does not match the manifest (file corrupted or "
                              f"modified after deploy)")
    return Bundle(path=path, manifest=manifest, graphs=graphs)
