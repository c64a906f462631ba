"""S2DNAS (Yuan et al., ECCV 2020): transform a static CNN into a multi-stage network for dynamic
inference, searched with reinforcement learning.

    import sdk
    net = sdk.make_dynamic(model, sdk.data.load_dataset("mnist5k", "train"), candidates=32)
    bundle = sdk.deploy(net, example_input=x, out="resnet20.dynamic.prism")
    result = sdk.load(bundle.path).infer(x)      # DynamicResult(logits, exit_stage)

Rooms: ``graph`` (trace the model, decide how each tensor's channels split; per-layer handlers),
``arch`` (split points + concat matrices), ``stages`` (``transform``: slice weights into stages
that share a feature cache), ``training`` (Eq. 3 loss, SGD step schedule), ``thresholds`` (exit
simulation, reward Eq. 2, grid search, trade-off curve), ``latency`` (measured stage cost),
``controller`` (RNN policy, PPO), ``nas`` (``search``: the NAS loop), ``api`` (``make_dynamic``),
``export`` (one ONNX graph per stage, deploy packager), ``layerwise`` (the naive early-exit
baseline). The runtime side is ``sdk.runtime.dynamic``.

Names are imported on first use so that ``sdk.deploy``'s registry can import ``packaging``
without PyTorch.
"""
import importlib

_NAMES = {
    "make_dynamic": "api", "DynamicConfig": "api",
    "Architecture": "arch",
    "analyze": "graph", "Plan": "graph", "TransformError": "graph", "HANDLERS": "graph",
    "transform": "stages", "MultiStageNet": "stages",
    "TrainSettings": "training", "train_stages": "training", "stage_probabilities": "training",
    "LabelledData": "training", "as_labelled": "training",
    "ExitProfile": "thresholds", "choose_thresholds": "thresholds", "tradeoff_curve": "thresholds",
    "Controller": "controller", "PPO": "controller", "PPOSettings": "controller",
    "search": "nas", "SearchSettings": "nas", "SearchResult": "nas",
    "export_stage": "export", "package_dynamic": "export", "LatencyMeter": "latency",
    "LayerwiseExitNet": "layerwise", "layerwise_exits": "layerwise", "build_layerwise": "layerwise",
}


def __getattr__(name):
    if name in _NAMES:
        return getattr(importlib.import_module(f"{__name__}.{_NAMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_NAMES)
