"""Training toolkit for liveprofile models.

Modules:

* :mod:`.schema` - feature-schema JSON (load, write, hash) and Parquet feature tables;
* :mod:`.model` - Keras blocks whose ONNX graph stays small (in-graph normalisation and
  one-hot encoding);
* :mod:`.metrics` - ROC AUC, log loss, expected calibration error, reliability table;
* :mod:`.baselines` - scikit-learn baselines on the same arrays;
* :mod:`.golden` - golden examples (test rows plus edge cases) with Keras outputs;
* :mod:`.export` - tf2onnx conversion, parity check, atomic publication;
* :mod:`.package` - manifest, publication and verification of model packages;
* :mod:`.data` - repository paths, the real data sets ($LIVEPROFILE_DATASETS), seeded splits.
* :mod:`.segments` - the cross-tag analysis' k-means segments as a distance graph.
"""

__version__ = "0.1.0"
