"""Model zoo and training recipes (installed as `sdk.models`; needs PyTorch)."""
from .flops import count_flops
from .fold_aspp import FoldASPP, FoldConv2d
from .lenet import LeNet5
from .mobilenetv2 import MobileNetV2
from .resnet import ResNet
# The `train` function stays in `sdk.models.train` so that name keeps meaning the module.
from .train import (TrainConfig, TrainResult, cache_dir, default_config, evaluate, get_or_train,
                    load_checkpoint, save_checkpoint)
from .vgg import VGGBN
from .zoo import MODEL_NAMES, build_model

__all__ = [
    "MODEL_NAMES", "build_model", "count_flops",
    "LeNet5", "ResNet", "VGGBN", "MobileNetV2",
    "TrainConfig", "TrainResult", "default_config", "evaluate",
    "save_checkpoint", "load_checkpoint", "cache_dir", "get_or_train",
]
