"""Keras building blocks whose exported ONNX graph stays small and tract-friendly.

The model takes ONE float32 tensor ``features`` [batch, n_features] in schema order.
Everything else happens inside the graph with plain ops:

* numeric and bool columns: ``Gather`` -> optional ``Log(Relu(x) + 1)`` -> ``Sub`` mean ->
  ``Mul`` by 1/std (statistics from the training split);
* category columns (vocabulary indices as floats): one ``Gather`` that repeats each column
  once per vocabulary entry, ``Equal`` against the constant vector of indices, ``Cast`` to
  float. An index outside the vocabulary becomes an all-zero block.
* ``Concat`` and Dense layers (``MatMul``/``Add``/``Relu``), ending in ``Sigmoid``.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from .schema import FeatureSchema


def configure_tensorflow(seed: int, threads: int = 2) -> None:
    """Fixed seeds, deterministic ops and a small thread pool (call before building models)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass  # already initialised in this process; the first setting stays
    tf.keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def _layer_class():
    import keras
    from keras import ops

    class SchemaInputs(keras.layers.Layer):
        """Turns raw schema-ordered features into the network's input vector."""

        def __init__(
            self,
            linear_idx: Sequence[int],
            log_idx: Sequence[int],
            mean: Sequence[float],
            inv_std: Sequence[float],
            category_idx: Sequence[int],
            category_codes: Sequence[float],
            **kwargs,
        ):
            super().__init__(**kwargs)
            self.linear_idx = [int(i) for i in linear_idx]
            self.log_idx = [int(i) for i in log_idx]
            self.mean = [float(v) for v in mean]
            self.inv_std = [float(v) for v in inv_std]
            self.category_idx = [int(i) for i in category_idx]
            self.category_codes = [float(v) for v in category_codes]

        def call(self, x):
            parts = []
            numeric = []
            if self.linear_idx:
                numeric.append(ops.take(x, np.array(self.linear_idx, dtype=np.int32), axis=1))
            if self.log_idx:
                raw = ops.take(x, np.array(self.log_idx, dtype=np.int32), axis=1)
                numeric.append(ops.log(ops.relu(raw) + np.float32(1.0)))
            if numeric:
                num = numeric[0] if len(numeric) == 1 else ops.concatenate(numeric, axis=1)
                num = (num - np.array(self.mean, dtype=np.float32)) * np.array(
                    self.inv_std, dtype=np.float32
                )
                parts.append(num)
            if self.category_idx:
                repeated = ops.take(x, np.array(self.category_idx, dtype=np.int32), axis=1)
                hot = ops.equal(repeated, np.array(self.category_codes, dtype=np.float32))
                parts.append(ops.cast(hot, "float32"))
            return parts[0] if len(parts) == 1 else ops.concatenate(parts, axis=1)

        def compute_output_shape(self, input_shape):
            width = len(self.linear_idx) + len(self.log_idx) + len(self.category_idx)
            return (input_shape[0], width)

        def get_config(self):
            cfg = super().get_config()
            cfg.update(
                linear_idx=self.linear_idx,
                log_idx=self.log_idx,
                mean=self.mean,
                inv_std=self.inv_std,
                category_idx=self.category_idx,
                category_codes=self.category_codes,
            )
            return cfg

    return SchemaInputs


def schema_inputs_layer(
    schema: FeatureSchema,
    X_train: np.ndarray,
    log_features: Sequence[str] = (),
    name: str = "schema_inputs",
):
    """Build the input layer with normalisation statistics from ``X_train``."""
    X_train = np.asarray(X_train, dtype=np.float32)
    if X_train.ndim != 2 or X_train.shape[1] != len(schema):
        raise ValueError(f"X_train has shape {X_train.shape}, schema has {len(schema)} features")
    unknown = [n for n in log_features if n not in schema.feature_names]
    if unknown:
        raise ValueError(f"log_features not in schema: {unknown}")
    for n in log_features:
        if schema.feature(n).dtype != "float32":
            raise ValueError(f"log transform only applies to float32 features, not {n!r}")
    log_set = set(log_features)
    linear_idx, log_idx, category_idx, codes = [], [], [], []
    for j, f in enumerate(schema.features):
        if f.is_category:
            size = len(f.vocabulary or ())
            category_idx += [j] * size
            codes += list(range(size))
        elif f.name in log_set:
            log_idx.append(j)
        else:
            linear_idx.append(j)
    cols = []
    if linear_idx:
        cols.append(X_train[:, linear_idx].astype(np.float64))
    if log_idx:
        cols.append(np.log(np.maximum(X_train[:, log_idx].astype(np.float64), 0.0) + 1.0))
    if cols:
        stacked = np.concatenate(cols, axis=1)
        mean = stacked.mean(axis=0)
        std = stacked.std(axis=0)
    else:
        mean = std = np.zeros(0)
    inv_std = np.where(std > 1e-12, 1.0 / np.where(std > 1e-12, std, 1.0), 1.0)
    return _layer_class()(
        linear_idx=linear_idx,
        log_idx=log_idx,
        mean=mean.astype(np.float32),
        inv_std=inv_std.astype(np.float32),
        category_idx=category_idx,
        category_codes=codes,
        name=name,
    )


def build_mlp(
    schema: FeatureSchema,
    X_train: np.ndarray,
    *,
    outputs: int = 1,
    hidden: Sequence[int] = (64, 32),
    dropout: float = 0.0,
    l2: float = 0.0,
    log_features: Sequence[str] = (),
    output_name: str = "probability",
    name: str = "mlp",
):
    """Schema inputs -> Dense/ReLU stack -> Dense/sigmoid with ``outputs`` units."""
    import keras

    inputs = keras.Input(shape=(len(schema),), dtype="float32", name="features")
    h = schema_inputs_layer(schema, X_train, log_features)(inputs)
    reg = keras.regularizers.L2(l2) if l2 else None
    for i, units in enumerate(hidden):
        h = keras.layers.Dense(units, activation="relu", kernel_regularizer=reg, name=f"dense_{i}")(h)
        if dropout:
            h = keras.layers.Dropout(dropout, name=f"dropout_{i}")(h)
    out = keras.layers.Dense(outputs, activation="sigmoid", name=output_name)(h)
    return keras.Model(inputs, out, name=name)


def fit(
    model,
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_val: np.ndarray,
    y_val: np.ndarray,
    *,
    epochs: int,
    batch_size: int = 256,
    learning_rate: float = 1e-3,
    patience: int = 8,
    verbose: int = 0,
):
    """Adam + binary cross-entropy, early stopping on validation loss (best weights kept)."""
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="binary_crossentropy",
        metrics=[keras.metrics.AUC(name="auc")],
    )
    callbacks = []
    if patience and epochs > patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=patience, restore_best_weights=True
            )
        )
    return model.fit(
        X_train,
        np.asarray(y_train, dtype=np.float32),
        validation_data=(X_val, np.asarray(y_val, dtype=np.float32)),
        epochs=epochs,
        batch_size=batch_size,
        shuffle=True,
        callbacks=callbacks,
        verbose=verbose,
    )


def predict(model, X: np.ndarray, batch_size: int = 4096) -> np.ndarray:
    """Keras outputs as float32 [rows, k] (inference mode)."""
    X = np.asarray(X, dtype=np.float32)
    chunks = [
        np.asarray(model(X[i : i + batch_size], training=False), dtype=np.float32)
        for i in range(0, X.shape[0], batch_size)
    ]
    if not chunks:
        return np.zeros((0, model.output_shape[-1]), dtype=np.float32)
    return np.concatenate(chunks, axis=0)
