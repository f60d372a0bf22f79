"""featdistill: feature distillation via channel-wise transformation (CWT) for vision models.

>>> import featdistill as fd
>>> d = fd.Distiller(student, teacher, pairs=[("layer4", "layer4")], method="cwt", alpha=7e-5,
...                  sample_input=torch.randn(2, 3, 224, 224))          # doctest: +SKIP
"""

from .distiller import METHODS, Distiller, DistillOutput, LossBalancer, Method, Pair, register_method
from .taps import FeatureTaps, TapError
from .tasks.registry import register_task
from .transforms import ChannelWiseTransform
from .version import __version__

__all__ = [
    "METHODS",
    "ChannelWiseTransform",
    "DistillOutput",
    "Distiller",
    "FeatureTaps",
    "LossBalancer",
    "Method",
    "Pair",
    "TapError",
    "__version__",
    "register_method",
    "register_task",
]
