"""Bundle format: manifest contents, checksums and the errors a broken bundle gives."""
import json
import shutil

import pytest

import sdk
from sdk.bundle import MANIFEST, SCHEMA_VERSION, read_bundle


@pytest.fixture
def bundle_copy(tiny_bundle, tmp_path):
    dst = tmp_path / "copy.prism"
    shutil.copytree(tiny_bundle.path, dst)
    return dst


def _edit_manifest(path, fn):
    m = json.loads((path / MANIFEST).read_text())
    fn(m)
    (path / MANIFEST).write_text(json.dumps(m))


def test_manifest_records_what_the_issue_names(tiny_bundle):
    m = tiny_bundle.manifest
    assert m["schema_version"] == SCHEMA_VERSION
    assert m["prism_version"] == sdk.__version__
    assert m["target"] == "cpu" and m["precision"] == "fp32"
    g = m["graphs"][0]
    assert g["inputs"] == [{"name": "input", "shape": ["batch", 1, 28, 28], "dtype": "float32"}]
    assert g["outputs"] == [{"name": "logits", "shape": ["batch", 10], "dtype": "float32"}]
    assert m["preprocess"]["pixel_format"] == "Mono8"
    assert m["export"]["opset"] >= 17 and m["export"]["max_abs_diff"] < 1e-4
    assert set(m["files"]) == {"model.onnx"}
    assert len(m["files"]["model.onnx"]["sha256"]) == 64


def test_missing_bundle_names_the_path(tmp_path):
    with pytest.raises(sdk.BundleError, match="bundle not found: .*nope.prism"):
        sdk.load(tmp_path / "nope.prism")


def test_directory_without_manifest(tmp_path):
    with pytest.raises(sdk.BundleError, match="no manifest.json"):
        read_bundle(tmp_path)


def test_corrupted_file_fails_checksum(bundle_copy):
    onnx_file = bundle_copy / "model.onnx"
    data = bytearray(onnx_file.read_bytes())
    data[-1] ^= 0xFF
    onnx_file.write_bytes(bytes(data))
    with pytest.raises(sdk.BundleError, match=r"model.onnx: SHA-256 does not match"):
        sdk.load(bundle_copy)


def test_missing_listed_file(bundle_copy):
    (bundle_copy / "model.onnx").unlink()
    with pytest.raises(sdk.BundleError, match="model.onnx: listed in the manifest but missing"):
        read_bundle(bundle_copy)


@pytest.mark.parametrize("field", ["schema_version", "prism_version", "target", "precision",
                                   "graphs", "files"])
def test_missing_manifest_field_is_named(bundle_copy, field):
    _edit_manifest(bundle_copy, lambda m: m.pop(field))
    with pytest.raises(sdk.BundleError, match=f"missing required field '{field}'"):
        read_bundle(bundle_copy)


def test_newer_schema_is_rejected(bundle_copy):
    _edit_manifest(bundle_copy, lambda m: m.update(schema_version=SCHEMA_VERSION + 1))
    with pytest.raises(sdk.BundleError, match="'schema_version' is 2, newer than this Prism"):
        read_bundle(bundle_copy)


def test_graph_spec_missing_field(bundle_copy):
    _edit_manifest(bundle_copy, lambda m: m["graphs"][0]["inputs"][0].pop("dtype"))
    with pytest.raises(sdk.BundleError, match="missing the field 'dtype'"):
        read_bundle(bundle_copy)


def test_invalid_json(bundle_copy):
    (bundle_copy / MANIFEST).write_text("{not json")
    with pytest.raises(sdk.BundleError, match="not valid JSON"):
        read_bundle(bundle_copy)


def test_deploy_is_atomic_and_overwrites(tiny_model, tmp_path):
    out = tmp_path / "b.prism"
    sdk.deploy(tiny_model, out=out, example_input=__import__("torch").zeros(1, 1, 28, 28))
    first = (out / MANIFEST).read_text()
    sdk.deploy(tiny_model, out=out, example_input=__import__("torch").zeros(2, 1, 28, 28))
    assert (out / MANIFEST).exists() and json.loads(first)["files"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".b.prism")]  # no staging left
