"""A tiny Keras fit (torch backend) on synthetic data with XpCallback; `--csv` also
writes Keras's own CSVLogger file instead (for the zero-line harvesting)."""

import argparse
import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras
import numpy as np

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--log-freq", default="epoch")
parser.add_argument("--csv", default="")
args = parser.parse_args()

keras.utils.set_random_seed(0)
x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
y = x.sum(axis=1, keepdims=True)
model = keras.Sequential(
    [keras.Input((4,)), keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(1)]
)
model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.02), loss="mse", metrics=["mae"])
if args.csv:
    callbacks = [keras.callbacks.CSVLogger(args.csv)]
else:
    from xpkit.integrations.keras import XpCallback

    freq = int(args.log_freq) if args.log_freq.isdigit() else args.log_freq
    callbacks = [XpCallback(log_freq=freq)]
model.fit(
    x, y, batch_size=16, epochs=args.epochs, validation_split=0.25, verbose=0, callbacks=callbacks
)
