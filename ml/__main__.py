"""`python -m ml train|score|card`: the ML sidecar from the command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from ml.artifacts import load_card
from ml.pipeline import score_all, stage
from railflow.errors import cli_entrypoint
from railflow.settings import get_settings

MODELS = ("booking_propensity", "rfm_segmentation", "churn", "ltv", "anomaly_detector")


@cli_entrypoint
def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ml", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("train", help="train, evaluate, save artifacts and score (the ml stage)")
    sub.add_parser("score", help="score with the saved artifacts (checksums verified)")
    card = sub.add_parser("card", help="print a model card")
    card.add_argument("model", choices=MODELS)
    args = parser.parse_args(argv)
    settings = get_settings()
    if args.command == "train":
        result = stage(settings)
        for key, value in result.metrics.items():
            print(f"{key}: {value}")
    elif args.command == "score":
        for table, rows in score_all(settings).items():
            print(f"{table}: {rows:,} rows")
    else:
        print(json.dumps(load_card(settings.artifacts_dir / args.model), indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
