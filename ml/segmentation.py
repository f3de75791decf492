"""RFM segmentation: K-Means on log-transformed, standardised recency, frequency, monetary.

k is chosen by the best silhouette over K_RANGE; clusters are named from their centroids
(recent and frequent = Champions, ...) so marketers read names, not numbers. Stability is the
adjusted Rand index between two fits with different random seeds.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, silhouette_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from ml.features import require_columns, to_pandas

MODEL_NAME = "rfm_segmentation"
FEATURES = ["recency_days", "frequency", "monetary_eur"]
K_RANGE = range(3, 7)
SEED = 0
SILHOUETTE_SAMPLE = 5000


def _log_features(x: Any) -> Any:
    return np.log1p(np.clip(np.asarray(x, dtype=float), 0, None))


def pipeline(k: int, seed: int = SEED) -> Pipeline:
    return Pipeline(
        [
            ("log", FunctionTransformer(_log_features, feature_names_out="one-to-one")),
            ("scale", StandardScaler()),
            ("kmeans", KMeans(n_clusters=k, n_init=10, random_state=seed)),
        ]
    )


def name_clusters(centroids: pl.DataFrame) -> dict[int, str]:
    """Names from centroid positions relative to the median centroid."""
    r_mid = centroids["recency_days"].median()
    f_mid = centroids["frequency"].median()
    names: dict[int, str] = {}
    for row in centroids.sort("monetary_eur", descending=True).iter_rows(named=True):
        recent = row["recency_days"] <= r_mid
        frequent = row["frequency"] >= f_mid
        base = {
            (True, True): "Champions",
            (False, True): "At risk",
            (True, False): "Promising",
            (False, False): "Hibernating",
        }[(recent, frequent)]
        name, n = base, 2
        while name in names.values():  # two clusters in one quadrant: rank by value
            name = f"{base} {n}"
            n += 1
        names[int(row["cluster"])] = name
    return names


def fit(rfm: pl.DataFrame) -> tuple[Pipeline, dict[str, Any]]:
    require_columns(rfm, FEATURES, "rfm segmentation")
    x = to_pandas(rfm, FEATURES)
    scores = {}
    rng_rows = np.random.default_rng(SEED).permutation(len(x))[:SILHOUETTE_SAMPLE]
    for k in K_RANGE:
        if k >= len(x):
            break
        labels = pipeline(k).fit_predict(x)
        sample = pipeline(k)[:-1].fit_transform(x)[rng_rows]
        scores[k] = float(silhouette_score(sample, labels[rng_rows]))
    best_k = max(scores, key=lambda k: scores[k])
    model = pipeline(best_k).fit(x)
    labels = model.predict(x)
    other = pipeline(best_k, seed=SEED + 1).fit(x).predict(x)
    centroids = (
        rfm.select(FEATURES)
        .with_columns(cluster=pl.Series(labels))
        .group_by("cluster")
        .agg(*[pl.col(c).mean() for c in FEATURES], pl.len().alias("users"))
    )
    names = name_clusters(centroids)
    info = {
        "k": best_k,
        "silhouette_by_k": {str(k): round(v, 4) for k, v in scores.items()},
        "stability_ari_across_seeds": round(float(adjusted_rand_score(labels, other)), 4),
        "cluster_names": {str(k): v for k, v in names.items()},
        "centroids": centroids.sort("cluster").to_dicts(),
    }
    return model, info


def assign(model: Pipeline, names: dict[str, str], rfm: pl.DataFrame) -> pl.DataFrame:
    require_columns(rfm, ["user_id", *FEATURES], "rfm scoring")
    labels = model.predict(to_pandas(rfm, FEATURES))
    return rfm.select("user_id").with_columns(
        rfm_cluster=pl.Series(labels.astype(np.int64)),
        segment_name=pl.Series([names[str(int(c))] for c in labels]),
    )
