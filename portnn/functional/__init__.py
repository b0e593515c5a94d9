"""Pure forward/backward math, written once against the array API standard.

Every function takes arrays, infers their namespace, and returns ``(output, backward)``:
``backward`` is a closure that keeps only the arrays it needs, takes the gradient of the
output and returns the gradients of the inputs. Layers in :mod:`portnn.layers` own
parameters and call these.
"""

from .activations import erf, gelu, leaky_relu, relu, sigmoid, silu, softmax, tanh
from .augment import translate
from .conv import conv1d, conv2d
from .dense import linear
from .dropout import dropout
from .losses import binary_cross_entropy, binary_cross_entropy_with_logits, cross_entropy, log_softmax, mse
from .normalization import batch_moments, batch_norm, layer_norm
from .pooling import avg_pool2d, global_avg_pool2d, max_pool2d
from .recurrent import gru, lstm

__all__ = [
    "avg_pool2d",
    "batch_moments",
    "batch_norm",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "conv1d",
    "conv2d",
    "cross_entropy",
    "dropout",
    "erf",
    "gelu",
    "global_avg_pool2d",
    "gru",
    "layer_norm",
    "leaky_relu",
    "linear",
    "log_softmax",
    "lstm",
    "max_pool2d",
    "mse",
    "relu",
    "sigmoid",
    "silu",
    "softmax",
    "tanh",
    "translate",
]
