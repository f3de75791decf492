"""How many mart columns are described: computed, then written into docs/column_docs.md.

    python -m scripts.column_docs [--check]

Reads dbt's manifest (the descriptions, after doc blocks are rendered) from the settings' dbt
target path, and the columns each mart really has from the warehouse (`select * ... limit 0`
on the relation dbt built), so a column added in SQL but not in YAML counts as undescribed.
Marts are the models under models/marts/. `--check` fails when the page on disk differs from
the figures computed now (CI keeps the page honest) or when coverage is under the target.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from railflow.errors import RailflowError, WarehouseError, cli_entrypoint
from railflow.settings import REPO_ROOT, Settings, get_settings
from railflow.warehouse import connect

PAGE = REPO_ROOT / "docs" / "column_docs.md"
TARGET = 0.95  # issue 18: at least 95% of mart columns described


@dataclass(frozen=True)
class MartColumns:
    folder: str
    name: str
    columns: tuple[str, ...]
    described: frozenset[str]

    @property
    def undescribed(self) -> list[str]:
        return [c for c in self.columns if c not in self.described]


def mart_columns(settings: Settings) -> list[MartColumns]:
    """Every built mart with its real columns and the ones its YAML describes."""
    manifest_path = settings.dbt_target_path / "manifest.json"
    if not manifest_path.is_file():
        raise RailflowError(f"{manifest_path} is missing: build the warehouse first (`make run`)")
    nodes = json.loads(manifest_path.read_text())["nodes"].values()
    marts = [
        n
        for n in nodes
        if n["resource_type"] == "model" and n["original_file_path"].startswith("models/marts/")
    ]
    found = []
    with connect(settings) as wh:
        for node in sorted(marts, key=lambda n: n["original_file_path"]):
            try:
                columns = wh.query(f"select * from {node['relation_name']} limit 0").columns
            except WarehouseError as exc:
                raise RailflowError(
                    f"mart {node['name']} is not in the warehouse ({exc}): run the whole "
                    "pipeline first (`make run`)"
                ) from None
            described = frozenset(
                name.lower()
                for name, column in node["columns"].items()
                if column.get("description", "").strip()
            )
            folder = Path(node["original_file_path"]).parent.name
            found.append(MartColumns(folder, node["name"], tuple(columns), described))
    return found


def render(marts: Sequence[MartColumns]) -> str:
    total = sum(len(m.columns) for m in marts)
    described = total - sum(len(m.undescribed) for m in marts)
    lines = [
        "# Mart column documentation",
        "",
        "Written by `python -m scripts.column_docs` from dbt's manifest and the columns the",
        "warehouse holds; do not edit by hand (`tests/python/test_semantic_layer.py` checks it).",
        "",
        f"**{described} of {total} mart columns described ({described / total:.1%}); the "
        f"target is {TARGET:.0%}.**",
        "",
        "| folder | mart | columns | described | undescribed |",
        "|---|---|---:|---:|---|",
    ]
    for m in marts:
        missing = ", ".join(f"`{c}`" for c in m.undescribed) or "-"
        n = len(m.columns)
        lines.append(f"| {m.folder} | `{m.name}` | {n} | {n - len(m.undescribed)} | {missing} |")
    return "\n".join(lines) + "\n"


def coverage(marts: Sequence[MartColumns]) -> float:
    total = sum(len(m.columns) for m in marts)
    return (total - sum(len(m.undescribed) for m in marts)) / total if total else 0.0


@cli_entrypoint
def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m scripts.column_docs", description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the page is out of date")
    args = parser.parse_args(argv)
    marts = mart_columns(get_settings())
    page = render(marts)
    if args.check:
        if not PAGE.is_file() or PAGE.read_text() != page:
            raise RailflowError(f"{PAGE} is out of date: run `python -m scripts.column_docs`")
    else:
        PAGE.write_text(page)
    share = coverage(marts)
    print(f"{share:.1%} of mart columns described")
    if share < TARGET:
        raise RailflowError(
            f"only {share:.1%} of mart columns are described (target {TARGET:.0%}): describe the "
            f"columns listed in {PAGE.relative_to(REPO_ROOT)}"
        )


if __name__ == "__main__":
    main()
