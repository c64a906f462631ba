"""Measured stage latency: a wall-clock cost for the reward, next to the paper's FLOPs.

On small inputs, a thin stage's time is mostly per-operator and per-tensor overhead, not MACs: a
stage with a sixteenth of the MACs can take half the static model's time, and a stage that reads
many cached features pays for every one. The paper's FLOPs proxy cannot see this. Here each
stage graph runs on ONNX Runtime (1 thread, batch 1, the deployment setting) with the static
model's graph in the same interleaved rounds, and the cost of exiting at stage ``j`` is the median
time of stages ``0..j`` relative to the static model's median (so machine load cancels).
"""
from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from ..export import export_onnx
from .export import INPUT, export_stage
from .stages import MultiStageNet


def _session(data: bytes):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])


class LatencyMeter:
    """Times stage graphs against the static model's graph (exported once)."""

    def __init__(self, model: nn.Module, x: torch.Tensor, runs: int = 200):
        self.x = x[:1]
        self.runs = runs
        self.static = _session(export_onnx(model, self.x).onnx_bytes)

    @torch.no_grad()
    def relative_stage_cost(self, net: MultiStageNet) -> list[float]:
        """Cumulative median latency of exiting at each stage, over the static model's median."""
        was_training = net.training
        net.eval()
        try:
            sessions, feeds, cache = [], [], {}
            for j, stage in enumerate(net.stages):
                data = export_stage(net, j, self.x).onnx_bytes
                inputs = {INPUT: self.x.numpy(), **{n: cache[n].numpy() for n in stage.reuses}}
                stage(self.x, cache)
                sessions.append(_session(data))
                feeds.append(inputs)
        finally:
            net.train(was_training)
        static_feed = {INPUT: self.x.numpy()}
        runners = [(self.static, static_feed)] + list(zip(sessions, feeds))
        times = np.empty((self.runs, len(runners)))
        clock = time.perf_counter
        for s, f in runners:  # warm-up
            for _ in range(5):
                s.run(None, f)
        for r in range(self.runs):  # interleaved, so load on the machine hits all alike
            for k, (s, f) in enumerate(runners):
                t0 = clock()
                s.run(None, f)
                times[r, k] = clock() - t0
        med = np.median(times, axis=0)
        return (np.cumsum(med[1:]) / med[0]).tolist()
