"""Writes seeds/holidays.csv: public and school holidays of every country served, 2020 to 2035.

    python -m scripts.holidays_seed [--first-year 2020] [--last-year 2035]

Public holidays come from the `holidays` package (national holidays, English names). School
holidays are a rule here: the package has them for six of the fifteen countries and only by
region, while the world needs one national window per country. The windows are those the
2026 seed had, kept at the same distance from Easter (spring) or on the same calendar days
(summer). A day that is a public holiday is listed once, as public.

The committed seed is this script's output (tests/python/test_calendar.py checks it), and it
covers every year a world can touch: users sign up up to a year before RAILFLOW_START_DATE and
travel up to 130 days after its last day. The generator refuses a world outside it.
"""

from __future__ import annotations

import argparse
import csv
import io
from collections.abc import Sequence
from datetime import date, timedelta

import holidays
from dateutil.easter import easter

from railflow.errors import cli_entrypoint
from scripts.reference import SEEDS_DIR

SEED = SEEDS_DIR / "holidays.csv"
FIRST_YEAR, LAST_YEAR = 2020, 2035

# (name, first day, last day): an int is a day offset from Easter Sunday, a (month, day) pair a
# calendar day.
SchoolWindow = tuple[str, int | tuple[int, int], int | tuple[int, int]]
SUMMER_JUL_AUG: SchoolWindow = ("Summer school holidays", (7, 1), (8, 31))
SCHOOL_WINDOWS: dict[str, tuple[SchoolWindow, ...]] = {
    "AT": (("Easter school holidays", -8, 0), ("Summer school holidays", (7, 4), (9, 6))),
    "BE": (("Easter school holidays", 1, 12), SUMMER_JUL_AUG),
    "CH": (("Spring school holidays", -1, 14), ("Summer school holidays", (7, 4), (8, 16))),
    "CZ": (SUMMER_JUL_AUG,),
    "DE": (("Easter school holidays", -6, 5), ("Summer school holidays", (7, 9), (8, 19))),
    "DK": (SUMMER_JUL_AUG,),
    "ES": (("Easter school holidays", -6, 1), ("Summer school holidays", (6, 23), (9, 8))),
    "FR": (
        ("Spring school holidays", (4, 18), (5, 3)),
        ("Summer school holidays", (7, 4), (8, 31)),
    ),
    "GB": (("Easter school holidays", -6, 5), ("Summer school holidays", (7, 22), (9, 2))),
    "HU": (SUMMER_JUL_AUG,),
    "IT": (("Easter school holidays", -3, 2), ("Summer school holidays", (6, 10), (9, 13))),
    "LU": (SUMMER_JUL_AUG,),
    "NL": (("May school holidays", (4, 25), (5, 3)), ("Summer school holidays", (7, 18), (8, 30))),
    "PL": (SUMMER_JUL_AUG,),
    "PT": (SUMMER_JUL_AUG,),
}
COUNTRIES = tuple(SCHOOL_WINDOWS)  # the countries served (seeds/stations.csv)
HEADER = ("holiday_date", "country_code", "holiday_name", "holiday_type")


def day_of(year: int, spec: int | tuple[int, int]) -> date:
    if isinstance(spec, int):
        return easter(year) + timedelta(days=spec)
    return date(year, *spec)


def public_holidays(country: str, years: range) -> dict[date, str]:
    """National public holidays, English names (several on one day come joined by "; ")."""
    return dict(holidays.country_holidays(country, years=years, language="en_US").items())


def school_holidays(country: str, years: range) -> dict[date, str]:
    days = {}
    for year in years:
        for name, first, last in SCHOOL_WINDOWS[country]:
            day, end = day_of(year, first), day_of(year, last)
            while day <= end:
                days[day] = name
                day += timedelta(days=1)
    return days


def rows(first_year: int = FIRST_YEAR, last_year: int = LAST_YEAR) -> list[tuple[str, ...]]:
    years = range(first_year, last_year + 1)
    out = []
    for country in COUNTRIES:
        public = public_holidays(country, years)
        school = school_holidays(country, years)
        for day, name in public.items():
            out.append((day.isoformat(), country, name, "public"))
        for day, name in school.items():
            if day not in public:
                out.append((day.isoformat(), country, name, "school"))
    return sorted(out)


def render(first_year: int = FIRST_YEAR, last_year: int = LAST_YEAR) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    writer.writerows(rows(first_year, last_year))
    return out.getvalue()


@cli_entrypoint
def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m scripts.holidays_seed", description=__doc__)
    parser.add_argument("--first-year", type=int, default=FIRST_YEAR)
    parser.add_argument("--last-year", type=int, default=LAST_YEAR)
    args = parser.parse_args(argv)
    SEED.write_text(render(args.first_year, args.last_year))
    print(f"wrote {SEED} ({args.first_year}-{args.last_year})")


if __name__ == "__main__":
    main()
