"""Model artifacts: joblib file + model card (JSON and Markdown) with a SHA-256 checksum.

Loading verifies the checksum and the scikit-learn version before unpickling, so a tampered,
truncated or mismatched file is refused with a clear error instead of being executed.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import platform
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import joblib
import numpy as np
import polars as pl
import scipy
import sklearn

from railflow.checksums import sha256_file
from railflow.errors import RailflowError

MODEL_FILE = "model.joblib"
CARD_JSON = "model_card.json"
CARD_MD = "model_card.md"
# What save_model writes in every card and load_model relies on
CARD_KEYS = ("model_name", "model_version", "sha256", "library_versions")
RETRAIN = "retrain with `python -m ml train`"


class ArtifactError(RailflowError):
    """A model artifact is missing, tampered with or built by other library versions."""


def data_fingerprint(df: pl.DataFrame) -> str:
    """Stable fingerprint of a training frame: row count, columns and a hash of the rows."""
    row_hash = int(df.hash_rows(seed=0).sum()) if df.height else 0
    text = f"{df.height}|{','.join(df.columns)}|{row_hash}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def model_version(name: str, training_rows: pl.DataFrame, code: ModuleType) -> str:
    """`<name>-<data fingerprint>-<code fingerprint>`: a new version when the training rows or
    the module that trains the model change (the same data with new code is another model)."""
    source = Path(inspect.getfile(code)).read_bytes()
    return f"{name}-{data_fingerprint(training_rows)}-{hashlib.sha256(source).hexdigest()[:8]}"


def library_versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "polars": pl.__version__,
        "joblib": joblib.__version__,
    }


def _markdown(card: dict[str, Any]) -> str:
    lines = [f"# Model card: {card['model_name']}", "", card.get("description", ""), ""]
    keys = ("model_version", "estimator", "created_at", "training_window", "validation_window",
            "test_window", "rows", "features", "data_fingerprint", "sha256")  # fmt: skip
    for key in keys:
        if key in card:
            lines.append(f"- **{key}**: {card[key]}")
    sections = ("metrics", "baseline", "oracle", "calibration_by_decile",
                "permutation_importance", "shap_importance", "drift_psi", "notes")  # fmt: skip
    for section in sections:
        if card.get(section):
            lines += ["", f"## {section.replace('_', ' ')}", ""]
            value = card[section]
            if isinstance(value, list) and all(isinstance(v, dict) for v in value):
                header = list(value[0])
                lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                lines += ["| " + " | ".join(str(v.get(h)) for h in header) + " |" for v in value]
            elif isinstance(value, dict):
                lines += ["| name | value |", "|---|---|"]
                lines += [f"| {k} | {v} |" for k, v in value.items()]
            else:
                lines.append(str(value))
    lines += ["", "## library versions", ""]
    lines += [f"- {k} {v}" for k, v in card["library_versions"].items()]
    return "\n".join(lines) + "\n"


def save_model(model: Any, folder: Path, card: dict[str, Any]) -> dict[str, Any]:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / MODEL_FILE
    joblib.dump(model, path, compress=3)
    card = {
        **card,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "library_versions": library_versions(),
        "artifact": MODEL_FILE,
        "sha256": sha256_file(path),
    }
    (folder / CARD_JSON).write_text(json.dumps(card, indent=2, default=str))
    (folder / CARD_MD).write_text(_markdown(card))
    return card


def load_card(folder: Path) -> dict[str, Any]:
    path = folder / CARD_JSON
    if not path.exists():
        raise ArtifactError(f"no model card at {path}; train the model with `make run`")
    try:
        card = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:  # truncated or overwritten
        raise ArtifactError(f"model card {path} is not valid JSON ({exc}); {RETRAIN}") from None
    if not isinstance(card, dict):
        raise ArtifactError(f"model card {path} is not a JSON object; {RETRAIN}")
    if missing := [k for k in CARD_KEYS if k not in card]:
        raise ArtifactError(
            f"model card {path} lacks {', '.join(missing)} (not written by `python -m ml "
            f"train`); {RETRAIN}"
        )
    return card


def load_model(folder: Path) -> tuple[Any, dict[str, Any]]:
    """The model saved in `folder` (named for the model), checked before it is unpickled."""
    card = load_card(folder)
    if card["model_name"] != folder.name:  # e.g. one model's folder copied over another's
        raise ArtifactError(
            f"{folder} holds a model card for {card['model_name']!r}, not {folder.name!r}; "
            f"{RETRAIN}"
        )
    path = folder / card.get("artifact", MODEL_FILE)
    if not path.exists():
        raise ArtifactError(f"model file {path} is missing; retrain with `make run`")
    actual = sha256_file(path)
    if actual != card["sha256"]:
        raise ArtifactError(
            f"model file {path} does not match its card (sha256 {actual[:12]}… != "
            f"{card['sha256'][:12]}…); refusing to load a tampered artifact — retrain it"
        )
    trained_with = card["library_versions"]["scikit-learn"]
    if trained_with != sklearn.__version__:
        raise ArtifactError(
            f"model {path} was trained with scikit-learn {trained_with}, this environment has "
            f"{sklearn.__version__}; retrain it (`make run`)"
        )
    return joblib.load(path), card
