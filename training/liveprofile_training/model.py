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
    restore_start: bool = False,
):
    """Adam + binary cross-entropy, early stopping on validation loss (best weights kept).

    ``restore_start`` (for warm-started models): the validation loss of the starting
    weights counts as epoch 0; if no epoch beats it, the starting weights are restored
    and ``history.history["best_epoch"]`` is 0 (else the epoch whose weights are kept,
    counted from 1).
    """
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="binary_crossentropy",
        metrics=[keras.metrics.AUC(name="auc")],
    )
    y_val = np.asarray(y_val, dtype=np.float32)
    start_weights = start_loss = None
    if restore_start:
        start_weights = [np.array(w) for w in model.get_weights()]
        start_loss = float(model.evaluate(X_val, y_val, batch_size=max(batch_size, 4096), verbose=0)[0])
    callbacks = []
    if patience and epochs > patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=patience, restore_best_weights=True
            )
        )
    history = model.fit(
        X_train,
        np.asarray(y_train, dtype=np.float32),
        validation_data=(X_val, y_val),
        epochs=epochs,
        batch_size=batch_size,
        shuffle=True,
        callbacks=callbacks,
        verbose=verbose,
    )
    losses = history.history.get("val_loss", [])
    # Weights kept: the best epoch's with early stopping, else the last epoch's.
    best = (int(np.argmin(losses)) + 1 if callbacks else len(losses)) if losses else 0
    if restore_start:
        history.history["start_val_loss"] = start_loss
        if not losses or losses[best - 1] >= start_loss:
            model.set_weights(start_weights)
            best = 0
    history.history["best_epoch"] = best
    return history


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


# ---------------------------------------------------------------------------
# Lean models: few ONNX nodes for fast single-row inference.
#
# Training graph (Keras):
#   features -> [MatMul+Add: repeat the category columns, shifted] -> [Concat]   (LeanInputs)
#            -> Relu -> Add 1 -> Log
#            -> Sub mean -> Mul 1/std                                         (Standardise)
#            -> Dense/ReLU ... -> Dense (logit) [+ wide Dense on the standardised inputs]
#            -> Sigmoid
# Serving graph (exported): the standardisation folded into the first Dense, the wide
# (linear) part carried through the hidden layers as ReLU pairs, Platt calibration folded
# into the last Dense, each MatMul + Add pair fused into one Gemm
# (``export_package(..., fuse_gemm=True)``):
#   features -> [Gemm -> Concat] -> Relu -> Add -> Log -> (Gemm -> Relu) x L -> Gemm -> Sigmoid
#
# Every input column goes through log(1 + relu(x)): counts, minutes and money are heavy
# tailed, and the log is monotone on shares and rates. A category column with K values is
# also copied K times, shifted by 1, 0, -1, ..., 2 - K (a product with a constant 0/1
# matrix plus a constant vector: one Gemm, cheap, and no Gather, which is slow in tract),
# and those copies go through the same log(1 + relu(.)): on the valid indices 0..K-1 the K
# columns log(1 + relu(i - t + 1)) form a lower-triangular matrix with log 2 on its
# diagonal, an invertible linear map of the one-hot encoding, so the first Dense can give
# every value its own weights as with a one-hot block, without Equal/Cast nodes. The
# category column itself (log(1 + index)) gets zero weight, as does every column that is
# constant in the training data (1/std taken as 0).


def lean_plan(schema: FeatureSchema) -> tuple[list[int], list[float], list[str]]:
    """Source column, offset and name of every column after LeanInputs: the n input
    columns in schema order (offset 0), then the shifted copies of the category columns."""
    idx: list[int] = list(range(len(schema)))
    offsets: list[float] = [0.0] * len(schema)
    names: list[str] = list(schema.feature_names)
    for j, f in enumerate(schema.features):
        if f.is_category:
            for t, value in enumerate(f.vocabulary or ()):
                idx.append(j)
                offsets.append(float(1 - t))
                names.append(f"{f.name}>={value}")
    return idx, offsets, names


def lean_ignored(schema: FeatureSchema) -> np.ndarray:
    """Columns after LeanInputs that get no weight: the raw category indices."""
    width = len(lean_plan(schema)[0])
    mask = np.zeros(width, dtype=bool)
    mask[[j for j, f in enumerate(schema.features) if f.is_category]] = True
    return mask


def lean_transform(X: np.ndarray, idx: Sequence[int], offsets: Sequence[float]) -> np.ndarray:
    """NumPy version of LeanInputs (float64), for statistics and checks."""
    v = np.asarray(X, dtype=np.float64)[:, list(idx)] + np.asarray(offsets, dtype=np.float64)
    return np.log(np.maximum(v, 0.0) + 1.0)


def _lean_layers():
    import keras
    from keras import ops

    class LeanInputs(keras.layers.Layer):
        """log(1 + relu([x, x @ S + c])): S copies the category columns, c shifts them."""

        def __init__(self, idx: Sequence[int], offsets: Sequence[float], n_features: int, **kwargs):
            super().__init__(**kwargs)
            self.idx = [int(i) for i in idx]
            self.offsets = [float(v) for v in offsets]
            self.n_features = int(n_features)
            n = self.n_features
            if self.idx[:n] != list(range(n)) or any(self.offsets[:n]):
                raise ValueError("the first n columns must be the inputs themselves, unshifted")

        def call(self, x):
            n = self.n_features
            extra = self.idx[n:]
            v = x
            if extra:
                select = np.zeros((n, len(extra)), dtype=np.float32)
                select[extra, np.arange(len(extra))] = 1.0
                copies = ops.matmul(x, select) + np.array(self.offsets[n:], dtype=np.float32)
                v = ops.concatenate([x, copies], axis=1)
            return ops.log(ops.relu(v) + np.float32(1.0))

        def compute_output_shape(self, input_shape):
            return (input_shape[0], len(self.idx))

        def get_config(self):
            cfg = super().get_config()
            cfg.update(idx=self.idx, offsets=self.offsets, n_features=self.n_features)
            return cfg

    class Standardise(keras.layers.Layer):
        """(x - mean) * scale with constant vectors (training statistics)."""

        def __init__(self, mean: Sequence[float], scale: Sequence[float], **kwargs):
            super().__init__(**kwargs)
            self.mean = [float(v) for v in mean]
            self.scale = [float(v) for v in scale]

        def call(self, x):
            return (x - np.array(self.mean, dtype=np.float32)) * np.array(self.scale, dtype=np.float32)

        def compute_output_shape(self, input_shape):
            return input_shape

        def get_config(self):
            cfg = super().get_config()
            cfg.update(mean=self.mean, scale=self.scale)
            return cfg

    return LeanInputs, Standardise


def build_lean_mlp(
    schema: FeatureSchema,
    X_train: np.ndarray,
    *,
    outputs: int = 1,
    hidden: Sequence[int] = (64, 32),
    dropout: float = 0.0,
    l2: float = 0.0,
    wide: bool = False,
    wide_l2: float = 0.0,
    output_name: str = "probability",
    name: str = "lean_mlp",
):
    """Training model of the lean family (see the comment above); fold it for export
    with :func:`fold_for_serving`. ``wide`` adds a linear path from the standardised
    inputs to the logits (wide and deep)."""
    import keras

    X_train = np.asarray(X_train, dtype=np.float32)
    if X_train.ndim != 2 or X_train.shape[1] != len(schema):
        raise ValueError(f"X_train has shape {X_train.shape}, schema has {len(schema)} features")
    if not hidden:
        raise ValueError("at least one hidden layer")
    LeanInputs, Standardise = _lean_layers()
    idx, offsets, _ = lean_plan(schema)
    L = lean_transform(X_train, idx, offsets)
    mean = L.mean(axis=0)
    std = L.std(axis=0)
    varies = (std > 1e-9) & ~lean_ignored(schema)
    scale = np.where(varies, 1.0 / np.where(varies, std, 1.0), 0.0)
    mean = np.where(varies, mean, 0.0)

    inputs = keras.Input(shape=(len(schema),), dtype="float32", name="features")
    z = LeanInputs(idx, offsets, len(schema), name="lean_inputs")(inputs)
    z = Standardise(mean, scale, name="standardise")(z)
    reg = keras.regularizers.L2(l2) if l2 else None
    h = z
    for i, units in enumerate(hidden):
        h = keras.layers.Dense(units, activation="relu", kernel_regularizer=reg, name=f"dense_{i}")(h)
        if dropout:
            h = keras.layers.Dropout(dropout, name=f"dropout_{i}")(h)
    logit = keras.layers.Dense(outputs, name="deep_logit" if wide else "logit")(h)
    if wide:
        wreg = keras.regularizers.L2(wide_l2) if wide_l2 else None
        linear = keras.layers.Dense(outputs, kernel_regularizer=wreg, name="wide_logit")(z)
        logit = keras.layers.Add(name="logit")([logit, linear])
    out = keras.layers.Activation("sigmoid", name=output_name)(logit)
    return keras.Model(inputs, out, name=name)


def logit_model(model):
    """The sub-model from ``features`` to the logits (before the sigmoid)."""
    import keras

    return keras.Model(model.inputs, model.get_layer("logit").output, name=f"{model.name}_logit")


def predict_logits(model, X: np.ndarray, batch_size: int = 8192) -> np.ndarray:
    return predict(logit_model(model), X, batch_size)


def fold_for_serving(
    model,
    calibration: tuple[Sequence[float], Sequence[float]] | None = None,
    *,
    output_name: str | None = None,
    name: str | None = None,
):
    """The serving model of a :func:`build_lean_mlp` training model.

    Same outputs as ``sigmoid(a * logit + b)`` of the training model (``calibration`` =
    (a, b), one value per output, default (1, 0)), with fewer ops: the standardisation is
    folded into the first Dense, a wide path rides through the hidden layers as ReLU
    pairs (relu(w) - relu(-w) = w), and the calibration is folded into the last Dense.
    """
    import keras

    LeanInputs, _ = _lean_layers()
    lean = model.get_layer("lean_inputs")
    std = model.get_layer("standardise")
    mean = np.asarray(std.mean, dtype=np.float64)
    scale = np.asarray(std.scale, dtype=np.float64)
    hidden = []
    i = 0
    while True:
        try:
            layer = model.get_layer(f"dense_{i}")
        except ValueError:
            break
        W, b = (np.asarray(w, dtype=np.float64) for w in layer.get_weights())
        hidden.append((W, b))
        i += 1
    names = {layer.name for layer in model.layers}
    wide = "wide_logit" in names
    Wo, bo = (np.asarray(w, dtype=np.float64) for w in model.get_layer("deep_logit" if wide else "logit").get_weights())
    k = Wo.shape[1]

    def fold(W, b):  # standardisation into a Dense that reads z
        return scale[:, None] * W, b - (mean * scale) @ W

    W0, b0 = fold(*hidden[0])
    layers = [(W0, b0)] + hidden[1:]
    if wide:
        Wl, bl = fold(*(np.asarray(w, dtype=np.float64) for w in model.get_layer("wide_logit").get_weights()))
        eye = np.eye(k)
        W0, b0 = layers[0]
        layers[0] = (np.hstack([W0, Wl, -Wl]), np.concatenate([b0, bl, -bl]))
        for j in range(1, len(layers)):
            W, b = layers[j]
            n_in, n_out = W.shape
            big = np.zeros((n_in + 2 * k, n_out + 2 * k))
            big[:n_in, :n_out] = W
            big[n_in:, n_out:] = np.eye(2 * k)
            layers[j] = (big, np.concatenate([b, np.zeros(2 * k)]))
        Wo = np.vstack([Wo, eye, -eye])
    if calibration is not None:
        a, c = (np.broadcast_to(np.asarray(v, dtype=np.float64).reshape(-1), (k,)) for v in calibration)
        Wo, bo = Wo * a[None, :], bo * a + c

    out_name = output_name or model.layers[-1].name
    inputs = keras.Input(shape=(lean.n_features,), dtype="float32", name="features")
    h = LeanInputs(lean.idx, lean.offsets, lean.n_features, name="lean_inputs")(inputs)
    dense = []
    for j, (W, _) in enumerate(layers):
        layer = keras.layers.Dense(W.shape[1], activation="relu", name=f"dense_{j}")
        h = layer(h)
        dense.append(layer)
    final = keras.layers.Dense(k, activation="sigmoid", name=out_name)
    out = final(h)
    serving = keras.Model(inputs, out, name=name or model.name)
    for layer, (W, b) in zip(dense, layers):
        layer.set_weights([W.astype(np.float32), b.astype(np.float32)])
    final.set_weights([Wo.astype(np.float32), bo.astype(np.float32)])
    return serving


def sigmoid(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    return np.where(z >= 0, 1.0 / (1.0 + np.exp(-np.abs(z))), np.exp(-np.abs(z)) / (1.0 + np.exp(-np.abs(z))))


def standardised_inputs(model, X: np.ndarray, batch_size: int = 8192) -> np.ndarray:
    """What the first layers of a :func:`build_lean_mlp` model see: the standardised
    log-transformed inputs, float32 [rows, width]."""
    import keras

    sub = keras.Model(model.inputs, model.get_layer("standardise").output, name=f"{model.name}_inputs")
    return predict(sub, X, batch_size)


def warm_start_wide(
    model,
    X: np.ndarray,
    Y: np.ndarray,
    *,
    C: float | None = 1.0,
    Cs: Sequence[float] = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0),
    cv: int = 5,
    seed: int = 0,
    max_iter: int = 2000,
) -> list[float]:
    """Start a wide-and-deep model from logistic regression.

    Fits one L2 logistic regression per output on the standardised inputs the wide path
    sees, copies its coefficients and intercept into ``wide_logit`` and zeroes the deep
    path's output layer, so that before training the model equals the logistic
    regression and training fits what the linear model misses. ``C=None`` picks the
    inverse regularisation strength from ``Cs`` by ``cv``-fold cross-validated log loss
    on these rows (seeded). Returns the C used per output.
    """
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
    from sklearn.model_selection import StratifiedKFold

    Z = standardised_inputs(model, X).astype(np.float64)
    Y = np.asarray(Y).reshape(len(Z), -1)
    wide = model.get_layer("wide_logit")
    deep = model.get_layer("deep_logit")
    if Y.shape[1] != wide.units:
        raise ValueError(f"{Y.shape[1]} label columns for {wide.units} outputs")
    coef = np.zeros((Z.shape[1], Y.shape[1]))
    intercept = np.zeros(Y.shape[1])
    chosen = []
    for k in range(Y.shape[1]):
        if C is None:
            folds = StratifiedKFold(n_splits=cv, shuffle=True, random_state=seed)
            lr = LogisticRegressionCV(
                Cs=list(Cs), cv=folds, scoring="neg_log_loss", max_iter=max_iter,
                l1_ratios=(0.0,), use_legacy_attributes=False,
            )
            lr.fit(Z, Y[:, k])
            chosen.append(float(np.ravel(lr.C_)[0]))
        else:
            lr = LogisticRegression(C=C, max_iter=max_iter).fit(Z, Y[:, k])
            chosen.append(float(C))
        coef[:, k] = lr.coef_[0]
        intercept[k] = lr.intercept_[0]
    wide.set_weights([coef.astype(np.float32), intercept.astype(np.float32)])
    W, b = deep.get_weights()
    deep.set_weights([np.zeros_like(W), np.zeros_like(b)])
    return chosen
