"""DynamicEngine: real early exits with batch compaction, same answers as PyTorch, thresholds at
load time, per-stage statistics, and refusal of bad thresholds or inconsistent bundles."""
import json
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import sdk
from sdk.errors import BundleError, InputError
from sdk.runtime.dynamic import DynamicEngine, DynamicResult

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402


class TinyRes(nn.Module):
    """Two resolutions, a residual add: enough to exercise split, concat and the cache."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.conv = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16))
        self.down = nn.Sequential(nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = self.stem(x)
        x = torch.relu(x + self.conv(x))
        return self.fc(torch.flatten(self.pool(self.down(x)), 1))


def _midpoint_threshold(conf: np.ndarray) -> float:
    """A threshold near the median confidence, far from any sample's (no ties ORT vs torch)."""
    c = np.sort(conf)
    k = len(c) // 4 + int(np.argmax(np.diff(c[len(c) // 4: 3 * len(c) // 4])))
    return float((c[k] + c[k + 1]) / 2)


@pytest.fixture(scope="module")
def dynamic(tmp_path_factory):
    """(net, bundle path, inputs) with thresholds letting about half the samples exit early."""
    from sdk.toolchain.s2dnas import Architecture, transform

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # small tensors: threads only add contention on a shared machine
    torch.manual_seed(0)
    model = TinyRes().eval()
    arch = Architecture(3, 8, ((2, 5), (3, 6)), ((True, True, False), (True, False, True)))
    net = transform(model, arch).eval()
    x = torch.randn(40, 1, 28, 28)
    with torch.no_grad():
        conf = [z.softmax(1).amax(1).numpy() for z in net(x)]
    net.set_thresholds([_midpoint_threshold(conf[0]), _midpoint_threshold(conf[1])])
    path = tmp_path_factory.mktemp("dyn") / "tiny.dynamic.prism"
    sdk.deploy(net, example_input=x[:2], out=path, name="tiny")
    yield net, path, x.numpy()
    torch.set_num_threads(before)


def test_load_gives_a_dynamic_engine_matching_pytorch(dynamic):
    net, path, x = dynamic
    with sdk.load(path) as engine:
        assert isinstance(engine, DynamicEngine) and engine.num_stages == 3
        result = engine.infer(x)
    assert isinstance(result, DynamicResult)
    assert result.logits.shape == (40, 10) and result.logits.dtype == np.float32
    assert result.exit_stage.dtype == np.int8
    logits, exits = net.infer(torch.from_numpy(x))
    np.testing.assert_array_equal(result.exit_stage, exits.numpy())
    np.testing.assert_allclose(result.logits, logits.numpy(), atol=1e-4)
    np.testing.assert_array_equal(result.predictions, logits.argmax(1).numpy())
    assert len(set(result.exit_stage.tolist())) == 3  # the fixture's thresholds use every stage


def test_exited_samples_never_run_later_stages(dynamic):
    _, path, x = dynamic
    engine = sdk.load(path)
    seen = {j: [] for j in range(3)}
    for j, stage in enumerate(engine.stages):  # spy on what each stage graph receives
        def spy(feeds, run=stage.run, j=j):
            seen[j].append({k: v.shape[0] for k, v in feeds.items()})
            return run(feeds)
        stage.run = spy
    result = engine.infer(x)
    counts = np.bincount(result.exit_stage, minlength=3)
    entering = [40, 40 - counts[0], counts[2]]
    for j in range(3):  # one run per stage, input and every cached feature compacted alike
        assert [set(call.values()) for call in seen[j]] == [{entering[j]}]
    stats = engine.stats()
    assert [s["entered"] for s in stats["stages"]] == entering
    assert [s["exited"] for s in stats["stages"]] == counts.tolist()
    assert stats["mean_macs"] == pytest.approx(np.dot(counts, engine.stage_macs) / 40)

    engine.set_thresholds([0.0, 0.0])  # everything stops at stage 1: later graphs never run
    engine.reset_stats()
    assert (engine.infer(x).exit_stage == 0).all()
    assert [s["calls"] for s in engine.stats()["stages"]] == [1, 0, 0]
    engine.close()


def test_thresholds_at_load_time_trade_speed_for_accuracy(dynamic):
    net, path, x = dynamic
    with sdk.load(path, thresholds=[1.0, 1.0]) as engine:
        result = engine.infer(x)
        assert engine.describe()["thresholds"] == [1.0, 1.0]
    assert (result.exit_stage == 2).all()
    with torch.no_grad():
        np.testing.assert_allclose(result.logits, net(torch.from_numpy(x))[-1].numpy(), atol=1e-4)


@pytest.mark.parametrize("bad, message", [
    ([0.5], r"expected 2 thresholds .* got 1"),
    ([0.5, 0.5, 0.5], "expected 2 thresholds"),
    ([1.5, 0.2], r"must lie in \[0, 1\], got \[1.5\]"),
    ([-0.1, float("nan")], r"must lie in \[0, 1\]"),
    ("high", "thresholds must be a list of 2 numbers"),
])
def test_bad_thresholds_are_refused(dynamic, bad, message):
    _, path, _ = dynamic
    with pytest.raises(InputError, match=message):
        sdk.load(path, thresholds=bad)
    with sdk.load(path) as engine:
        with pytest.raises(InputError, match=message):
            engine.set_thresholds(bad)


def test_input_checks_are_the_engines(dynamic):
    _, path, _ = dynamic
    with sdk.load(path) as engine:
        with pytest.raises(InputError, match="input 'input': expected dtype float32, got float64"):
            engine.infer(np.zeros((1, 1, 28, 28)))
        with pytest.raises(InputError, match=r"input 'input': expected shape \(batch, 1, 28, 28\), got \(1, 28, 28\)"):
            engine.infer(np.zeros((1, 28, 28), np.float32))
        with pytest.raises(InputError, match="expected a NumPy array, got list"):
            engine.infer([[0.0]])


def _edited_copy(path, tmp_path, edit):
    copy = tmp_path / "edited.prism"
    shutil.copytree(path, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    edit(manifest)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy


def test_stages_disagreeing_on_a_cached_feature_are_refused(dynamic, tmp_path):
    _, path, _ = dynamic
    manifest = json.loads((path / "manifest.json").read_text())
    name = manifest["dynamic"]["stages"][1]["reuses"][0]

    def edit(m):
        spec = next(t for t in m["graphs"][1]["inputs"] if t["name"] == name)
        spec["shape"][1] += 1

    with pytest.raises(BundleError, match=rf"stage 1 \(graph 'stage1'\) expects the cached feature "
                                          rf"'{name}' as \(batch, \d+, .*but stage 0 \(graph 'stage0'\) produces"):
        sdk.load(_edited_copy(path, tmp_path, edit))


def test_a_feature_no_earlier_stage_writes_is_refused(dynamic, tmp_path):
    _, path, _ = dynamic

    def edit(m):
        m["dynamic"]["stages"][0]["exports"] = []

    with pytest.raises(BundleError, match="stage 1 .* reads the cached feature 's0.*which no earlier stage produces"):
        sdk.load(_edited_copy(path, tmp_path, edit))


def test_bad_thresholds_in_the_manifest_are_refused(dynamic, tmp_path):
    _, path, _ = dynamic
    with pytest.raises(BundleError, match="field 'thresholds': expected 2 thresholds"):
        sdk.load(_edited_copy(path, tmp_path, lambda m: m["dynamic"].update(thresholds=[0.9])))


def test_runs_without_torch(dynamic):
    _, path, x = dynamic
    code = textwrap.dedent(f"""
        import sys
        class BlockTorch:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("torch is blocked for this test")
        sys.meta_path.insert(0, BlockTorch())
        import numpy as np
        import sdk
        engine = sdk.load({str(path)!r})
        r = engine.infer(np.zeros((3, 1, 28, 28), np.float32))
        assert r.logits.shape == (3, 10) and r.exit_stage.shape == (3,)
        assert not any(m == "torch" or m.startswith("torch.") for m in sys.modules)
        print("ok")
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"
