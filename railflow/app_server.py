"""`railflow app`: Streamlit serving app/app.py, with the model stack imported first.

Streamlit runs the app's scripts in its own process, so modules imported here before the server
starts are already loaded when the first visitor's session imports them: the ~4 s of importing
scikit-learn, SHAP and the scoring code is paid at start-up, not by the first page view.
Run from the repository root, where Streamlit reads `.streamlit/config.toml`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from railflow.settings import REPO_ROOT

APP = REPO_ROOT / "app" / "app.py"
OPTIONS = ["--server.address", "127.0.0.1", "--server.headless", "true",
           "--browser.gatherUsageStats", "false"]  # fmt: skip


def warm_up() -> None:
    """Score one search with the shared scoring code, then drop it: loads the model's libraries,
    SHAP's explainer and the reference data once, so the first visitor's session does not.
    Without a built world there is nothing to warm: the app then says which command to run."""
    from datetime import UTC, datetime, timedelta

    from ml import propensity, scoring
    from railflow.settings import get_settings

    try:
        scorer = scoring.Scorer(get_settings().artifacts_dir / propensity.MODEL_NAME)
        origin, destination = next(iter(scorer.book.base_fare))
        now = datetime.now(UTC)
        search = scoring.Search(origin, destination, now, (now + timedelta(days=2)).date(), 1,
                                "standard", False, "web", 3, 1, 60)  # fmt: skip
        scorer.score(scoring.search_features([search], scorer.book))
    except Exception as exc:  # no model yet, or a broken one: the app reports it on its pages
        print(f"railflow app: no warm-up ({type(exc).__name__}: {exc})", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> None:
    from streamlit.web import cli as streamlit_cli

    import ml.scoring  # noqa: F401 - preloaded for the first session (see the module docstring)

    warm_up()
    sys.argv = ["streamlit", "run", str(APP), *OPTIONS, *(sys.argv[1:] if argv is None else argv)]
    sys.exit(streamlit_cli.main())


if __name__ == "__main__":
    main()
