"""scikit-learn's bundled tabular sets: iris, wine, breast_cancer (classification), diabetes (regression).

They ship inside scikit-learn, so nothing is downloaded. Features are returned in their original units
(diabetes with `scaled=False`, not scikit-learn's default pre-scaled copy): dlrun normalises after splitting.
"""

from __future__ import annotations

import numpy as np

from dlrun.data.sources.registry import Source, register_dataset

# name -> (scikit-learn loader function name, task, description)
SETS: dict[str, tuple[str, str, str]] = {
    "iris": ("load_iris", "classification", "Fisher's iris: 150 flowers, 4 measurements in cm, 3 species"),
    "wine": ("load_wine", "classification", "UCI wine: 178 wines, 13 chemical measurements, 3 cultivars"),
    "breast_cancer": ("load_breast_cancer", "classification",
                      "Wisconsin diagnostic breast cancer: 569 tumours, 30 features, malignant or benign"),
    "diabetes": ("load_diabetes", "regression",
                 "diabetes progression: 442 patients, 10 baseline measurements, disease progression after one year"),
}


@register_dataset(*SETS)
def load_sklearn_set(cfg) -> Source:
    from sklearn import datasets

    function_name, task, description = SETS[cfg.name]
    kwargs = {"scaled": False} if cfg.name == "diabetes" else {}  # original units, not mean-centred copies
    bunch = getattr(datasets, function_name)(**kwargs)
    x = bunch.data.astype(np.float32)  # (N, F)
    if task == "regression":
        return Source(x=x, y=bunch.target.astype(np.float32), task=task, class_names=[], description=description)
    class_names = [str(name) for name in bunch.target_names]
    return Source(x=x, y=bunch.target.astype(np.int64), task=task, class_names=class_names, description=description)
