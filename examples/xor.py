"""XOR: the smallest problem a linear model cannot solve and one hidden layer can.

Run: ``python examples/xor.py``
"""

from __future__ import annotations

import numpy as np

import portnn as pn


def main(epochs: int = 300, seed: int = 0, verbose: bool = True) -> dict[str, float]:
    x, labels = pn.datasets.toy.parity_bits(2, rule="xor")  # 00, 01, 10, 11 -> 0, 1, 1, 0
    y = labels[:, None].astype(np.float32)  # one logit per example for binary cross-entropy
    model = pn.Sequential([pn.layers.Linear(2, 8, init="glorot_uniform"), pn.layers.Tanh(), pn.layers.Linear(8, 1)], seed=seed)
    history = model.fit(
        x, y, loss=pn.losses.BinaryCrossEntropy(from_logits=True), optimizer=pn.optim.SGD(lr=0.5, momentum=0.9),
        epochs=epochs, batch_size=4, verbose=0,
    )  # fmt: skip
    probabilities = 1 / (1 + np.exp(-pn.to_numpy(model.predict(x))))
    result = {"loss": history["loss"][-1], "accuracy": model.evaluate(x, y)["accuracy"]}
    if verbose:
        for xi, p in zip(x, probabilities[:, 0]):
            print(f"{int(xi[0])} xor {int(xi[1])} -> {p:.3f}")
        print(f"loss {result['loss']:.4f}, accuracy {result['accuracy']:.2f}")
    return result


if __name__ == "__main__":
    main()
