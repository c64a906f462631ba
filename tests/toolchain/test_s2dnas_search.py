"""Controller + PPO, Eq. 3 training, the make_dynamic API (small budget), the naive baseline."""
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import sdk  # noqa: E402
from sdk.errors import InputError  # noqa: E402
from sdk.models import build_model  # noqa: E402
from sdk.toolchain.s2dnas import Architecture, Controller, PPO, PPOSettings, build_layerwise  # noqa: E402
from sdk.toolchain.s2dnas.arch import split_choices  # noqa: E402
from sdk.toolchain.s2dnas.training import LabelledData, multi_stage_loss  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def one_thread():  # tiny tensors: threads only add contention on a shared machine
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _tiny():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.Conv2d(16, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10)).eval()


def _data(n=120, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 10
    x = rng.standard_normal((n, 1, 28, 28)).astype(np.float32) * 0.3
    x[np.arange(n), 0, 2 * y + 4, 2 * y + 4] += 4.0  # a learnable cue per class
    return x, y


def test_controller_samples_valid_architectures():
    c = Controller(num_settings=3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        s = c.sample(gen)
        assert isinstance(s.arch, Architecture) and s.arch.num_settings == 3
        assert len(s.actions) == 3 * 4  # per setting: one split choice + three concat bits
        logp, _ = c.log_prob(torch.tensor([s.actions]))
        assert logp.item() == pytest.approx(s.log_prob, abs=1e-5)


def test_ppo_moves_the_policy_towards_rewarded_settings():
    torch.manual_seed(0)
    c = Controller(num_settings=1, hidden=16)
    ppo = PPO(c, PPOSettings(lr=0.1))
    gen = torch.Generator().manual_seed(1)
    target = split_choices(8, 3).index((2, 5))

    def p_target():  # probability of the first decision (the split) choosing the target
        with torch.no_grad():
            return float(torch.softmax(c.heads[0](c.cell(c.start)[0]), 1)[0, target])

    before = p_target()
    for _ in range(8):
        samples = [c.sample(gen) for _ in range(6)]
        ppo.update(samples, [1.0 if s.actions[0] == target else 0.0 for s in samples])
    assert p_target() > 5 * before


def test_multi_stage_loss_is_eq3():
    y = torch.tensor([1, 2])
    logits = [torch.randn(2, 10) for _ in range(3)]
    ce = nn.functional.cross_entropy
    assert torch.isclose(multi_stage_loss(logits, y), sum(ce(z, y) for z in logits))
    assert torch.isclose(multi_stage_loss(logits, y, [1, 0, 2]), ce(logits[0], y) + 2 * ce(logits[2], y))


def test_held_out_split_is_stratified_and_disjoint():
    x, y = _data(200)
    fit, held = LabelledData(x, y).split(0.1, seed=0)
    assert len(held) == 20 and np.bincount(held.y).tolist() == [2] * 10 and len(fit) == 180


def test_make_dynamic_small_budget(tmp_path):
    x, y = _data()
    net = sdk.make_dynamic(_tiny(), (x, y), candidates=3, finetune_epochs=0.5, epochs=1,
                           log_dir=tmp_path, progress=False)
    assert net.num_stages == 3 and len(net.thresholds) == 2
    assert all(0.0 <= t <= 1.0 for t in net.thresholds)
    log = [json.loads(line) for line in (tmp_path / "search_log.jsonl").read_text().splitlines()]
    assert len(log) == 3 and {"reward", "accuracy", "relative_cost", "arch", "ppo_update"} <= set(log[0])
    best = json.loads((tmp_path / "best_architecture.json").read_text())
    assert best["best_outcome"]["reward"] == max(r["reward"] for r in log)
    assert Architecture.from_dict(best["best"]) == net.arch
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["held_out_samples"] == 10 and report["thresholds"]["thresholds"] == net.thresholds


def test_make_dynamic_with_a_given_architecture_and_accuracy_target():
    x, y = _data()
    arch = Architecture.even(2, concat=False)
    net = sdk.make_dynamic(_tiny(), (x, y), arch=arch.to_dict(), epochs=1, target_accuracy=1.0, progress=False)
    assert net.arch == arch and net.report["search"] is None
    assert net.report["thresholds"]["objective"] == "accuracy >= 1.0000"


def test_make_dynamic_refuses_unknown_options():
    with pytest.raises(InputError, match="unknown option 'candidate'"):
        sdk.make_dynamic(_tiny(), _data(), candidate=3)


def test_naive_baseline_keeps_the_static_prediction():
    model = build_model("resnet20").eval()
    net = build_layerwise(model).eval()
    assert net.exits == ["stage1_2_relu2", "stage2_2_relu2"]
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        outs = net(x)
        torch.testing.assert_close(outs[-1], model(x))
    assert [o.shape for o in outs] == [(2, 10)] * 3
    assert net.stage_macs[-1] == net.static_macs + (16 + 32) * 10
    assert net.stage_macs[0] < net.stage_macs[1] < net.stage_macs[2]


def test_search_can_price_candidates_by_measured_latency(tmp_path):
    x, y = _data()
    net = sdk.make_dynamic(_tiny(), (x, y), candidates=2, finetune_epochs=0.3, epochs=0.3, cost="latency",
                           log_dir=tmp_path, progress=False)
    log = [json.loads(line) for line in (tmp_path / "search_log.jsonl").read_text().splitlines()]
    assert [r["cost"] for r in log] == ["latency", "latency"]
    assert all(r["relative_cost"] > 0 and 0 < r["relative_macs"] < 1 for r in log)
    assert net.report["cost"] == "latency"
