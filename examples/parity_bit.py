"""Even or odd: a sigmoid network learns that only the last bit of a number's binary code matters.

The inputs are the 8 bits of integers 0..255; the label is 1 for odd numbers. The net has to
discover that seven of its eight inputs are noise. Afterwards the first layer's weights on the
last bit dwarf the others: look at them below.

Run: ``python examples/parity_bit.py``
"""

from __future__ import annotations

import numpy as np

import portnn as pn


def main(epochs: int = 40, seed: int = 0, verbose: bool = True) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    bits, odd = pn.datasets.toy.parity_bits(8)  # row i: the 8 bits of i; label: i is odd
    numbers = rng.permutation(256)
    train, test = numbers[:192], numbers[192:]
    model = pn.Sequential([pn.layers.Linear(8, 4, init="glorot_uniform"), pn.layers.Sigmoid(), pn.layers.Linear(4, 2)], seed=seed)
    model.fit(
        bits[train], odd[train], loss=pn.losses.CrossEntropy(), optimizer=pn.optim.SGD(lr=0.5, momentum=0.9),
        epochs=epochs, batch_size=16, verbose=0,
    )  # fmt: skip
    result = model.evaluate(bits[test], odd[test], return_dict=True)
    weights = np.abs(pn.to_numpy(model.layers[0].weight.data)).mean(axis=0)
    result["last_bit_weight_share"] = float(weights[-1] / weights.sum())
    if verbose:
        print(f"held-out numbers: accuracy {result['accuracy']:.3f}")
        print("mean |weight| per input bit (MSB..LSB):", np.round(weights, 2))
    return result


if __name__ == "__main__":
    main()
