"""scikit-learn baselines on the same schema-ordered arrays as the Keras model.

* ``logistic_regression``: one-hot category indices, log(x + 1) on the chosen heavy-tailed
  columns, standardised numeric columns, L2-regularised logistic regression.
* ``gradient_boosting``: GradientBoostingClassifier on the raw columns (category indices
  used as ordinal values, which trees split well enough).

For several labels each baseline is fitted once per label.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from . import metrics as M
from .schema import FeatureSchema


def logistic_regression(
    schema: FeatureSchema, log_features: Sequence[str] = (), seed: int = 0, C: float = 1.0, max_iter: int = 2000
):
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

    cat = [j for j, f in enumerate(schema.features) if f.is_category]
    logs = [schema.index(n) for n in log_features]
    lin = [j for j, f in enumerate(schema.features) if not f.is_category and j not in logs]
    parts = []
    if cat:
        cats = [np.arange(len(schema.features[j].vocabulary or ()), dtype=np.float32) for j in cat]
        parts.append(("onehot", OneHotEncoder(categories=cats, handle_unknown="ignore"), cat))
    if logs:
        log1p = FunctionTransformer(lambda a: np.log(np.maximum(a, 0) + 1.0))
        parts.append(("log", make_pipeline(log1p, StandardScaler()), logs))
    if lin:
        parts.append(("scale", StandardScaler(), lin))
    return make_pipeline(
        ColumnTransformer(parts),
        LogisticRegression(C=C, max_iter=max_iter, random_state=seed),
    )


def gradient_boosting(seed: int = 0, n_estimators: int = 200):
    from sklearn.ensemble import GradientBoostingClassifier

    return GradientBoostingClassifier(
        n_estimators=n_estimators, learning_rate=0.05, max_depth=3, subsample=0.8, random_state=seed
    )


def fit_and_score(
    schema: FeatureSchema,
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_test: np.ndarray,
    y_test: np.ndarray,
    *,
    log_features: Sequence[str] = (),
    seed: int = 0,
    gbm_estimators: int = 200,
    label_names: Sequence[str] | None = None,
    models: Sequence[str] = ("logistic_regression", "gradient_boosting"),
    C: float = 1.0,
    max_iter: int = 2000,
) -> tuple[dict[str, dict[str, float]], dict[str, np.ndarray]]:
    """Fit the baselines named in ``models``; returns (metrics per baseline, test
    probabilities per baseline). ``C`` and ``max_iter`` go to the logistic regression."""
    Y_train = np.asarray(y_train).reshape(len(X_train), -1)
    Y_test = np.asarray(y_test).reshape(len(X_test), -1)
    known = {
        "logistic_regression": lambda: logistic_regression(schema, log_features, seed, C, max_iter),
        "gradient_boosting": lambda: gradient_boosting(seed, gbm_estimators),
    }
    unknown = [m for m in models if m not in known]
    if unknown:
        raise ValueError(f"unknown baselines {unknown}; known: {sorted(known)}")
    factories = {m: known[m] for m in models}
    reports: dict[str, dict[str, float]] = {}
    probs: dict[str, np.ndarray] = {}
    for name, make in factories.items():
        P = np.zeros(Y_test.shape, dtype=np.float64)
        for k in range(Y_train.shape[1]):
            est = make().fit(X_train, Y_train[:, k])
            P[:, k] = est.predict_proba(X_test)[:, 1]
        probs[name] = P
        if P.shape[1] == 1:
            reports[name] = M.binary_report(Y_test[:, 0], P[:, 0])
        else:
            names = list(label_names or [f"label_{k}" for k in range(P.shape[1])])
            reports[name] = M.multi_label_report(Y_test, P, names)
    return reports, probs


def summary(reports: Mapping[str, Mapping[str, float]]) -> str:
    return M.format_table(reports)
