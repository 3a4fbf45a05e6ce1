"""Objects from the libraries notebooks use most, built small, for the fuzz test of ``test_libraries``.

Run as a script, it prints ``{name: digest hex | "refused: <type>"}`` as
JSON: the test runs it in several processes with different hash seeds and
compares. Each builder is deterministic (seeded, small data), so the
digests may differ only if fingerprinting depends on the process.
"""
from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Callable
from typing import Any

BUILDERS: dict[str, Callable[[], Any]] = {}


def builder(fn: Callable[[], Any]) -> Callable[[], Any]:
    BUILDERS[fn.__name__] = fn
    return fn


def _xy() -> tuple[Any, Any]:
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3))
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int)
    return x, y


# ---- scikit-learn ---------------------------------------------------------


@builder
def sklearn_iris_bunch() -> Any:
    from sklearn.datasets import load_iris

    return load_iris()


@builder
def sklearn_fitted_scaler() -> Any:
    from sklearn.preprocessing import StandardScaler

    return StandardScaler().fit(_xy()[0])


@builder
def sklearn_fitted_pipeline() -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = _xy()
    return make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y)


@builder
def sklearn_fitted_forest() -> Any:
    from sklearn.ensemble import RandomForestClassifier

    x, y = _xy()
    return RandomForestClassifier(n_estimators=3, max_depth=3, random_state=0).fit(x, y)


@builder
def sklearn_fitted_kmeans() -> Any:
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=2, n_init=1, random_state=0).fit(_xy()[0])


@builder
def sklearn_column_transformer() -> Any:
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "c": ["x", "y", "x", "z"]})
    return ColumnTransformer([("num", StandardScaler(), ["a"]), ("cat", OneHotEncoder(), ["c"])]).fit(frame)


# ---- statsmodels ----------------------------------------------------------


@builder
def statsmodels_dataset() -> Any:
    import statsmodels.api as sm

    return sm.datasets.longley.load()


@builder
def statsmodels_dataset_pandas() -> Any:
    import statsmodels.api as sm

    return sm.datasets.stackloss.load_pandas()


@builder
def statsmodels_ols_results() -> Any:
    import statsmodels.api as sm

    data = sm.datasets.longley.load_pandas()
    results = sm.OLS(data.endog, sm.add_constant(data.exog)).fit()
    results.bse  # fills the results' cache: reading it must not change the digest
    return results


@builder
def statsmodels_glm_results() -> Any:
    import statsmodels.api as sm

    x, y = _xy()
    return sm.GLM(y, sm.add_constant(x), family=sm.families.Binomial()).fit()


@builder
def statsmodels_formula_results() -> Any:
    import pandas as pd
    import statsmodels.formula.api as smf

    frame = pd.DataFrame({"y": [1.0, 2.1, 2.9, 4.2, 5.1, 5.8], "x": [1, 2, 3, 4, 5, 6], "g": list("ababab")})
    return smf.ols("y ~ x + C(g)", data=frame).fit()


# ---- scipy ----------------------------------------------------------------


@builder
def scipy_sparse_matrices() -> Any:
    import numpy as np
    from scipy import sparse

    dense = np.array([[0, 1, 0], [2, 0, 3], [0, 0, 4]], dtype=float)
    csr = sparse.csr_matrix(dense)
    csr.has_sorted_indices  # sets a flag on read
    return [csr, sparse.csc_matrix(dense), sparse.coo_matrix(dense), sparse.csr_array(dense), sparse.eye(3, format="dia")]


@builder
def scipy_optimize_result() -> Any:
    from scipy import optimize

    return optimize.minimize(lambda p: (p[0] - 1) ** 2 + (p[1] + 2) ** 2, [0.0, 0.0], method="BFGS")


@builder
def scipy_least_squares_and_interpolator() -> Any:
    import numpy as np
    from scipy import interpolate, optimize

    x = np.linspace(0, 1, 8)
    fit = optimize.least_squares(lambda p: p[0] * x + p[1] - (2 * x + 1), [1.0, 0.0])
    return [fit, interpolate.interp1d(x, x**2), interpolate.CubicSpline(x, np.sin(x))]


@builder
def scipy_frozen_distribution() -> Any:
    from scipy import stats

    return stats.norm(loc=1.0, scale=2.0)


# ---- lmfit ----------------------------------------------------------------


@builder
def lmfit_parameters() -> Any:
    import lmfit

    params = lmfit.Parameters()
    params.add("amp", value=2.0, min=0)
    params.add("cen", value=0.5)
    params.add("wid", expr="amp / 4")
    return params


@builder
def lmfit_model_result() -> Any:
    import lmfit
    import numpy as np

    x = np.linspace(-2, 2, 30)
    y = 3.0 * np.exp(-((x - 0.2) ** 2) / 0.5) + 0.01 * np.cos(7 * x)
    model = lmfit.models.GaussianModel()
    return model.fit(y, model.guess(y, x=x), x=x)


@builder
def lmfit_minimizer_result() -> Any:
    import lmfit
    import numpy as np

    x = np.linspace(0, 1, 12)
    params = lmfit.Parameters()
    params.add("a", value=1.0)
    params.add("b", value=0.0)
    return lmfit.minimize(lambda p: p["a"] * x + p["b"] - (2 * x + 1), params)


# ---- pandas, polars, pyarrow ---------------------------------------------


@builder
def pandas_frames() -> Any:
    import numpy as np
    import pandas as pd

    frame = pd.DataFrame(
        {
            "i": np.arange(5),
            "f": np.linspace(0, 1, 5),
            "s": list("abcde"),
            "c": pd.Categorical(list("xyxyz")),
            "t": pd.date_range("2024-01-01", periods=5, tz="UTC"),
        }
    ).set_index("s")
    frame.index.get_loc("c")  # builds the index's lookup engine: a cache, not a change
    multi = frame.set_index("c", append=True)
    return [frame, multi, frame["f"], frame.groupby("c", observed=True)["f"].sum(), frame.describe()]


@builder
def polars_frames() -> Any:
    import polars as pl

    frame = pl.DataFrame({"a": [1, 2, 3], "b": ["x", "y", None], "c": [0.5, None, 1.5]})
    return [frame, frame["a"], frame.lazy().filter(pl.col("a") > 1)]


@builder
def pyarrow_tables() -> Any:
    import pyarrow as pa

    table = pa.table({"a": [1, 2, 3], "b": ["x", "y", None]})
    return [table, table.column("b"), pa.array([1.5, None]), table.schema, table.to_batches()[0]]


# ---- matplotlib -----------------------------------------------------------


@builder
def matplotlib_figure() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(3, 2))
    axes.plot([1, 2, 3], [2, 1, 3], label="line")
    axes.legend()
    return figure


@builder
def matplotlib_axes() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(3, 2))
    axes.scatter([1, 2], [3, 4])
    return axes


def digests() -> dict[str, str]:
    import numpy as np

    from cellcache.errors import Unfingerprintable
    from cellcache.fingerprint import fingerprint

    # A frozen scipy distribution holds numpy's global generator, whose state
    # is part of its value; unseeded, it differs from process to process.
    np.random.seed(0)

    out: dict[str, str] = {}
    for name, build in BUILDERS.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = build()
        try:
            out[name] = fingerprint(value).hex()
            # Digesting twice in one process: a walk must not change what it walks.
            if fingerprint(value).hex() != out[name]:
                out[name] = "changed by its own fingerprint"
        except Unfingerprintable as exc:
            out[name] = f"refused: {exc.type_name}"
    return out


if __name__ == "__main__":
    json.dump(digests(), sys.stdout, indent=0, sort_keys=True)
