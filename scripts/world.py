"""The simulated RailFlow world: users, sessions, searches, bookings and their events.

Everything is vectorised with numpy/polars over one chunk of users at a time (users are
independent, so chunks stream with bounded memory and the same seed gives the same world).
Every planted parameter lives in `PARAMS` and is written to data/truth/params.json; docs/world.md
explains them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np
import polars as pl

from railflow import fares
from railflow.experiment_registry import load_registry
from scripts.pii_pool import POOL_SIZE, PiiPool, PoolProcess
from scripts.reference import Reference

PERSONAS = ("commuter", "business", "leisure", "student", "family")

# Days after the last simulated day that travel (and so the calendar) can reach.
TRAVEL_HORIZON_DAYS = 130

PARAMS: dict[str, object] = {
    "persona_share": [0.25, 0.20, 0.30, 0.15, 0.10],
    # expected sessions per active day, before weekday/season/holiday factors
    "session_rate": [0.45, 0.27, 0.09, 0.13, 0.08],
    "weekday_factor": [  # Monday..Sunday, per persona
        [1.3, 1.3, 1.3, 1.3, 1.2, 0.3, 0.3],
        [1.2, 1.3, 1.3, 1.2, 1.0, 0.4, 0.5],
        [0.8, 0.8, 0.9, 1.0, 1.2, 1.3, 1.1],
        [1.0, 1.0, 1.0, 1.0, 1.2, 1.0, 1.1],
        [0.8, 0.8, 0.8, 0.9, 1.1, 1.4, 1.3],
    ],
    "holiday_session_factor": [0.5, 0.6, 1.4, 1.2, 1.5],
    "annual_amplitude": 0.15,  # sessions peak in July
    "mean_lifetime_days": [240, 160, 100, 130, 110],
    "reactivation_share": 0.2,
    # a reactivation starts this long (exponential mean) after churn and lasts this long
    "reactivation_gap_mean_days": 30,
    "reactivation_mean_days": 40,
    "lead_time_lognormal": [[0.4, 0.8], [1.6, 0.7], [3.2, 0.7], [2.3, 0.8], [3.5, 0.6]],
    "favourite_route_share": [0.85, 0.5, 0.3, 0.4, 0.3],
    "first_class_share": [0.08, 0.35, 0.05, 0.02, 0.05],
    "round_trip_share": [0.6, 0.6, 0.5, 0.3, 0.55],
    # booking probability: logit = intercept + lead_weight * exp(-lead_days / lead_scale)
    #   + persona_effect + price_weight * log(price markup) + holiday_weight * holiday travel
    #   + user_effect (N(0, user_effect_sd))
    "booking_logit": {
        "intercept": -3.3,
        "lead_weight": 2.4,
        "lead_scale_days": 10.0,
        "persona_effect": [0.35, 0.45, -0.25, -0.15, -0.05],
        "price_weight": -1.0,
        "holiday_weight": 0.3,
        "user_effect_sd": 0.35,
    },
    "price": {  # the fare rule's home is railflow/fares.py; recorded here for the truth
        "first_class_multiplier": fares.FIRST_CLASS_MULTIPLIER,
        "round_trip_multiplier": fares.ROUND_TRIP_MULTIPLIER,
        "near_departure_markup": fares.NEAR_DEPARTURE_MARKUP,
        "near_departure_scale_days": fares.NEAR_DEPARTURE_SCALE_DAYS,
        "weekend_travel_markup": fares.WEEKEND_TRAVEL_MARKUP,
        "holiday_travel_markup": fares.HOLIDAY_TRAVEL_MARKUP,
        "noise_sd": fares.PRICE_NOISE_SD,
    },
    # The designs (split, start day, trigger, metrics) are in the experiment registry,
    # seeds/experiment_registry.csv; here only what the world plants: the effects.
    "experiments": {
        # outcomes count within this many days after a user's first exposure
        "outcome_window_days": 14,
        # the `medium_intent_search` trigger fires on searches whose true control booking
        # probability lies in this band
        "medium_intent_band": [0.3, 0.7],
        "medium_intent_discount": {"discount_rate": 0.05, "logit_uplift": 0.6},
        "srm_checkout_redesign": {
            "treatment_exposure_logged_share": 0.7,  # planted sample-ratio mismatch
        },
    },
    "cancellation_rate": 0.08,
    "refund_share_range": [0.8, 1.0],
    "consent_initial_share": 0.6,
    "consent_change_share": 0.06,
    "loyalty_initial_share": [0.5, 0.45, 0.1, 0.15, 0.2],
    "loyalty_gain_share": 0.04,
    "pathologies": {
        "duplicate_rate": 0.02,
        "late_rate": 0.03,
        "late_hours_share": 0.8,  # of late events: 1-12 hours; the rest 1-7 days
        "max_lateness_days": 7,
        "bot_user_share": 0.005,
        "bot_searches_per_session": 35,
        "internal_user_share": 0.005,
    },
    # Incidents (see plan_incidents and docs/world.md): planted on four distinct days, each at
    # least `min_gap_days` apart and none before `first_day` (a detector needs history). Off
    # with RAILFLOW_INCIDENTS=off (a clean world, for false-alarm grading).
    "incidents": {
        "first_day": 21,
        "min_gap_days": 5,
        # one platform's ticket_purchased events are not logged (the bookings happen)
        # (a release that breaks tracking until the next morning's fix)
        "tracking_outage": {"start_hour_utc": [4, 8], "hours": [14, 20]},
        # one route's quoted fares are multiplied by this for one UTC day (a hub-to-hub route)
        "pricing_bug": {"fare_factor": 0.5},
        # every search returns no results (results_count 0, so nothing is bought)
        "results_outage": {"start_hour_utc": [7, 13], "hours": [3, 6]},
        # accounts of the first chunk turned bots for a few hours on one platform, each staying
        # under the warehouse's daily bot threshold (the wave a rule-based filter misses)
        "bot_wave": {
            "start_hour_utc": [8, 13],
            "hours": [3, 6],
            "user_share": 0.005,
            "min_users": 10,
            "sessions_per_user": 3,
            "searches_per_session": [4, 8],
        },
    },
}

PLATFORMS = ("web", "ios", "android")
AGE_BANDS = ("18-24", "25-34", "35-44", "45-54", "55-64", "65+")
AGE_BY_PERSONA = np.array(
    [
        [0.10, 0.35, 0.30, 0.15, 0.08, 0.02],
        [0.02, 0.25, 0.35, 0.25, 0.12, 0.01],
        [0.10, 0.20, 0.20, 0.20, 0.18, 0.12],
        [0.85, 0.15, 0.00, 0.00, 0.00, 0.00],
        [0.00, 0.25, 0.45, 0.25, 0.05, 0.00],
    ]
)
CHANNELS = ("organic", "paid_search", "social", "referral", "partner", "email")
CHANNEL_SHARE = [0.35, 0.25, 0.15, 0.1, 0.08, 0.07]
HOUR_PROFILE = np.array(  # local hour-of-day weights per persona
    [
        [0, 0, 0, 0, 0, 1, 4, 8, 6, 2, 1, 1, 2, 1, 1, 2, 4, 7, 6, 3, 2, 1, 1, 0],
        [0, 0, 0, 0, 0, 0, 1, 3, 5, 6, 6, 5, 4, 5, 5, 5, 4, 3, 2, 2, 2, 1, 0, 0],
        [0, 0, 0, 0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 2, 2, 2, 3, 4, 5, 7, 8, 7, 4, 1],
        [1, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 3, 3, 3, 3, 3, 3, 4, 4, 5, 6, 7, 6, 3],
        [0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 3, 2, 2, 3, 3, 2, 2, 3, 4, 6, 7, 5, 2, 0],
    ],
    dtype=float,
)
EMAIL_DOMAINS = ("gmail.com", "outlook.com", "yahoo.com", "proton.me", "gmx.net", "icloud.com")
INTERNAL_DOMAIN = "railflow.test"
CHUNK_USERS = 25_000  # users per chunk: bounds memory at any scale
US = 1_000_000  # microseconds per second


def padded_id(prefix: str, number: pl.Expr, digits: int) -> pl.Expr:
    """prefix + number zero-padded to `digits` (numbers are below 10**digits within a chunk):
    the digits of 10**digits + number after its leading 1, cheaper than str.zfill."""
    padded = (number.cast(pl.Int64) + 10**digits).cast(pl.Utf8).str.slice(1)
    return pl.concat_str(pl.lit(prefix), padded)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def bucket(experiment_id: str, user_ids: list[str]) -> np.ndarray:
    """Deterministic hash bucketing: sha256(experiment:user) -> [0, 1)."""
    out = np.empty(len(user_ids))
    for i, uid in enumerate(user_ids):  # per user, not per event
        digest = hashlib.sha256(f"{experiment_id}:{uid}".encode()).digest()
        out[i] = int.from_bytes(digest[:8], "big") / 2**64
    return out


Ready = Callable[[str, str, pl.DataFrame], None]  # (kind: "raw" | "truth", table, frame)


@dataclass
class Chunk:
    """One chunk of the world: its truth tables (the raw ones go out through `ready`)."""

    truth: dict[str, pl.DataFrame]
    clear_pii: pl.DataFrame  # user_id, email, first_name, last_name, phone (never written)


class World:
    def __init__(
        self,
        reference: Reference,
        users: int,
        days: int,
        start: date,
        seed: int,
        salt: str,
        incidents: bool = True,
    ) -> None:
        self.ref = reference
        self.experiments = load_registry()  # designs; the effects they plant are in PARAMS
        self.n_users = users
        self.days = days
        self.start = start
        self.seed = seed
        self.salt = salt
        self.start_us = (
            int(datetime(start.year, start.month, start.day, tzinfo=UTC).timestamp()) * US
        )
        self.end_us = self.start_us + days * 86_400 * US
        st = reference.stations
        self.station_ids = st["station_id"].to_list()
        self.station_country = st["country_code"].to_numpy()
        self.countries = sorted(set(self.station_country.tolist()))
        routes = reference.routes.sort(["origin_station_id", "destination_station_id"])
        self.routes = routes
        idx = {s: i for i, s in enumerate(self.station_ids)}
        self.route_origin = np.array([idx[s] for s in routes["origin_station_id"]])
        self.route_dest = np.array([idx[s] for s in routes["destination_station_id"]])
        self.route_fare = routes["base_fare_eur"].to_numpy()
        counts = np.bincount(self.route_origin, minlength=len(self.station_ids))
        self.route_offset = np.concatenate([[0], np.cumsum(counts)[:-1]])
        self.route_count = counts
        self.hub_weight = np.where(st["is_hub"].to_numpy(), 3.0, 1.0)
        self.day_dates = [start + timedelta(days=d) for d in range(days + TRAVEL_HORIZON_DAYS)]
        self.dow = np.array([d.weekday() for d in self.day_dates])
        # holiday[country, day]: public or school holiday in that country
        self.holiday = np.zeros((len(self.countries), len(self.day_dates)), dtype=bool)
        cidx = {c: i for i, c in enumerate(self.countries)}
        for hdate, country in reference.holidays.select("holiday_date", "country_code").iter_rows():
            d = (hdate - start).days
            if country in cidx and 0 <= d < len(self.day_dates):
                self.holiday[cidx[country], d] = True
        self.station_cidx = np.array([cidx[c] for c in self.station_country])
        # Faker (import and pool) is pure Python and only needed once the user table is built:
        # a child process builds it while the first chunk's sessions and events are simulated.
        self._pool = PoolProcess(seed, self.countries)
        self.n_chunks = max(1, -(-users // CHUNK_USERS))
        self._incidents = plan_incidents(start, days, seed) if incidents else empty_incidents()
        self.effects = IncidentEffects.of(self._incidents, routes, self.start_us)

    @property
    def incidents(self) -> pl.DataFrame:
        """The planted incidents (complete once the first chunk is simulated: it picks the
        pricing bug's route)."""
        bug = pl.col("kind") == "pricing_bug"
        route = pl.lit(self.effects.bug_route_id, dtype=pl.Utf8)
        return self._incidents.with_columns(
            route_id=pl.when(bug).then(route).otherwise(pl.col("route_id")),
            description=pl.when(bug)
            .then(pl.concat_str(pl.col("description"), pl.lit(" "), route))
            .otherwise(pl.col("description")),
        )

    @property
    def pool(self) -> PiiPool:
        return self._pool.result()

    # ------------------------------------------------------------------------------------
    def chunk(self, k: int, ready: Ready | None = None) -> Chunk:
        """Simulate chunk k. `ready(kind, name, frame)`, if given, is called as soon as a raw
        ("raw") or truth ("truth") table of the chunk is final, so the caller can write it while
        the rest of the chunk is simulated; the truth tables are also in the returned Chunk."""
        ready = ready or (lambda kind, name, frame: None)
        rng = np.random.default_rng([self.seed, k])
        lo = k * CHUNK_USERS
        hi = min(self.n_users, lo + CHUNK_USERS)
        users = self._users(rng, lo, hi)
        sessions = self._sessions(rng, users)
        searches = self._searches(rng, users, sessions)
        exposures = self._exposures(rng, users, sessions, searches)
        searches = self._outcomes(rng, users, searches, exposures)
        events, truth_extra = self._events(rng, k, users, sessions, searches, exposures)
        truth_extra["activity"] = self._activity_truth(users)
        for name, frame in truth_extra.items():
            ready("truth", name, frame)
        raw_users, clear = self._user_table(rng, users, sessions, events)
        ready("truth", "users", users["truth"])
        events["users"] = raw_users
        deliveries = self._deliver(rng, k, events, ready)
        ready("truth", "deliveries", deliveries)
        truth = {
            "users": users["truth"],
            "deliveries": deliveries,
            **truth_extra,
        }
        return Chunk(truth=truth, clear_pii=clear)

    # ------------------------------------------------------------------------------------
    def _users(self, rng: np.random.Generator, lo: int, hi: int) -> dict:
        n = hi - lo
        p = PARAMS
        user_ids = [f"usr_{i:07d}" for i in range(lo, hi)]
        persona = rng.choice(len(PERSONAS), size=n, p=p["persona_share"])
        home = rng.choice(len(self.station_ids), size=n, p=self.hub_weight / self.hub_weight.sum())
        # 30% signed up before the period (up to a year), the rest during it (growth)
        before = rng.random(n) < 0.3
        signup_day = np.where(
            before, -rng.integers(1, 365, size=n), rng.integers(0, self.days, size=n)
        )
        signup_us = (
            self.start_us
            + signup_day.astype(np.int64) * 86_400 * US
            + rng.integers(0, 86_400, size=n).astype(np.int64) * US
        )
        lifetime = rng.exponential(np.array(p["mean_lifetime_days"])[persona])
        churn_day = signup_day + lifetime
        react = rng.random(n) < p["reactivation_share"]
        react_start = np.where(
            react, churn_day + rng.exponential(p["reactivation_gap_mean_days"], size=n), np.inf
        )
        react_end = react_start + rng.exponential(p["reactivation_mean_days"], size=n)
        pat = p["pathologies"]
        is_bot = rng.random(n) < pat["bot_user_share"]
        is_internal = (~is_bot) & (rng.random(n) < pat["internal_user_share"])
        platform = rng.choice(3, size=n, p=[0.45, 0.3, 0.25])
        is_wave_bot = self.effects.wave_users(lo, n, signup_day, is_bot | is_internal)
        activity = rng.lognormal(0.0, 0.5, size=n)
        user_effect = rng.normal(0.0, p["booking_logit"]["user_effect_sd"], size=n)
        # favourite route from the home station
        fav_route = self.route_offset[home] + (rng.random(n) * self.route_count[home]).astype(int)
        truth = pl.DataFrame(
            {
                "user_id": user_ids,
                "persona": np.array(PERSONAS)[persona],
                "signup_at": pl.Series(signup_us).cast(pl.Datetime("us", "UTC")),
                "churn_at": pl.Series(
                    self.start_us + (churn_day * 86_400 * US).astype(np.int64)
                ).cast(pl.Datetime("us", "UTC")),
                "reactivated_at": pl.Series(
                    self.start_us + (np.where(react, react_start, 0) * 86_400 * US).astype(np.int64)
                )
                .cast(pl.Datetime("us", "UTC"))
                .zip_with(pl.Series(react), pl.Series([None] * n, dtype=pl.Datetime("us", "UTC"))),
                # the reactivation is active from reactivated_at until this (exclusive)
                "reactivation_ended_at": pl.Series(
                    self.start_us + (np.where(react, react_end, 0) * 86_400 * US).astype(np.int64)
                )
                .cast(pl.Datetime("us", "UTC"))
                .zip_with(pl.Series(react), pl.Series([None] * n, dtype=pl.Datetime("us", "UTC"))),
                "activity_multiplier": activity,
                "is_bot": is_bot,
                "is_internal": is_internal,
                "is_wave_bot": is_wave_bot,
                "user_effect": user_effect,
            }
        )
        return {
            "ids": user_ids,
            "n": n,
            "persona": persona,
            "home": home,
            "signup_day": signup_day,
            "signup_us": signup_us,
            "churn_day": churn_day,
            "react_start": react_start,
            "react_end": react_end,
            "is_bot": is_bot,
            "is_internal": is_internal,
            "is_wave_bot": is_wave_bot,
            "platform": platform,
            "activity": activity,
            "user_effect": user_effect,
            "fav_route": fav_route,
            "truth": truth,
        }

    def _sessions(self, rng: np.random.Generator, u: dict) -> pl.DataFrame:
        p = PARAMS
        days = self.days
        d = np.arange(days)
        active = (d[None, :] >= u["signup_day"][:, None]) & (
            (d[None, :] < u["churn_day"][:, None])
            | ((d[None, :] >= u["react_start"][:, None]) & (d[None, :] < u["react_end"][:, None]))
        )
        persona = u["persona"]
        season = 1 + p["annual_amplitude"] * np.sin(
            2
            * np.pi
            * (np.array([x.timetuple().tm_yday for x in self.day_dates[:days]]) - 100)
            / 365
        )
        # rate = session_rate * activity * weekday * season * holiday factor * active, built in
        # place on one users x days array (a factor of 1 is skipped: x * 1.0 == x exactly)
        rate = np.array(p["weekday_factor"])[:, self.dow[:days]][persona]
        rate *= (np.array(p["session_rate"])[persona] * u["activity"])[:, None]
        rate *= season[None, :]
        hol = self.holiday[:, :days][self.station_cidx[u["home"]]]
        hol_factor = np.array(p["holiday_session_factor"])[persona][:, None]
        np.multiply(rate, hol_factor, out=rate, where=hol)
        u["session_rate"], u["active"] = rate.copy(), active  # for the activity truth
        rate *= active
        # bots: 1-3 sessions a day for 5-20 consecutive days
        bots = np.flatnonzero(u["is_bot"])
        for b in bots:  # a handful of users per chunk
            first = rng.integers(0, max(1, days - 5))
            length = rng.integers(5, 21)
            rate[b, :] = 0
            rate[b, first : first + length] = 1.0
        counts = rng.poisson(rate)
        self.effects.wave_sessions(counts, u["is_wave_bot"])
        u["sessions"] = counts
        uu, dd = np.nonzero(counts)
        reps = counts[uu, dd]
        s_user = np.repeat(uu, reps)
        s_day = np.repeat(dd, reps)
        m = s_user.size
        cdf = np.cumsum(HOUR_PROFILE, axis=1)
        cdf /= cdf[:, -1:]
        # inverse-CDF draw: hour = how many of the persona's cumulative weights lie below r
        r = rng.random(m)
        s_persona = persona[s_user]
        hour = np.empty(m, dtype=np.int64)
        for i in range(len(PERSONAS)):
            rows = s_persona == i
            hour[rows] = np.searchsorted(cdf[i], r[rows], side="left")
        # local hours -> UTC (the simulated markets are mostly UTC+1/+2 in this season)
        start_us = (
            self.start_us
            + s_day.astype(np.int64) * 86_400 * US
            + (hour.astype(np.int64) - 2) * 3_600 * US
            + rng.integers(0, 3_600 * US, size=m)
        )
        start_us = np.maximum(start_us, u["signup_us"][s_user])
        platform = np.where(rng.random(m) < 0.8, u["platform"][s_user], rng.integers(0, 3, size=m))
        start_us, platform = self.effects.wave_timing(start_us, platform, u["is_wave_bot"][s_user])
        return (
            pl.DataFrame({"u": s_user, "day": s_day, "start_us": start_us, "platform": platform})
            .sort("u", "start_us")
            .with_row_index("s")
            .with_columns(pl.col("s").cast(pl.Int64))
        )

    def _searches(self, rng: np.random.Generator, u: dict, s: pl.DataFrame) -> pl.DataFrame:
        p = PARAMS
        s_user = s["u"].to_numpy()
        is_bot = u["is_bot"][s_user]
        n_search = np.where(
            is_bot,
            rng.poisson(p["pathologies"]["bot_searches_per_session"], size=s.height) + 1,
            1 + np.minimum(rng.poisson(0.6, size=s.height), 3),
        )
        is_wave = u["is_wave_bot"][s_user]
        n_search = self.effects.wave_searches(n_search, is_wave)
        is_bot = is_bot | is_wave
        q_sess = np.repeat(np.arange(s.height), n_search)
        q_user = s_user[q_sess]
        persona = u["persona"][q_user]
        k = q_sess.size
        # position within session -> seconds after session start
        pos = np.arange(k) - np.repeat(np.cumsum(n_search) - n_search, n_search)
        offset_s = pos * rng.integers(20, 300, size=k) + rng.integers(5, 60, size=k)
        searched_us = s["start_us"].to_numpy()[q_sess] + offset_s.astype(np.int64) * US
        # route: favourite, else a random route from home (70%) or from any hub
        fav = rng.random(k) < np.array(p["favourite_route_share"])[persona]
        home = u["home"][q_user]
        origin = np.where(
            rng.random(k) < 0.7,
            home,
            rng.choice(len(self.station_ids), size=k, p=self.hub_weight / self.hub_weight.sum()),
        )
        random_route = self.route_offset[origin] + (
            rng.random(k) * self.route_count[origin]
        ).astype(int)
        route = np.where(fav, u["fav_route"][q_user], random_route)
        mu_sd = np.array(p["lead_time_lognormal"])[persona]
        lead = np.clip(np.floor(rng.lognormal(mu_sd[:, 0], mu_sd[:, 1])), 0, 120).astype(np.int64)
        search_day = (searched_us - self.start_us) // (86_400 * US)
        travel_day = search_day + lead
        passengers = np.where(
            persona == 4,
            2 + np.minimum(rng.poisson(1.2, size=k), 4),
            1 + (rng.random(k) < np.where(persona == 2, 0.4, 0.08)),
        )
        first = rng.random(k) < np.array(p["first_class_share"])[persona]
        round_trip = rng.random(k) < np.array(p["round_trip_share"])[persona]
        pr = p["price"]
        travel_c = self.station_cidx[self.route_origin[route]]
        tday = np.clip(travel_day, 0, len(self.day_dates) - 1)
        holiday_travel = self.holiday[travel_c, tday]
        weekend_travel = self.dow[tday] >= 5
        list_price = fares.list_price(self.route_fare[route], passengers, first, round_trip)
        markup = fares.yield_markup(lead, weekend_travel, holiday_travel) * rng.lognormal(
            0, pr["noise_sd"], size=k
        )
        markup *= self.effects.fare_factor(route, search_day, ~is_bot[q_sess])
        price = np.round(list_price * markup, 2)
        bl = p["booking_logit"]
        logit = (
            bl["intercept"]
            + bl["lead_weight"] * np.exp(-lead / bl["lead_scale_days"])
            + np.array(bl["persona_effect"])[persona]
            + bl["price_weight"] * np.log(markup)
            + bl["holiday_weight"] * holiday_travel
            + u["user_effect"][q_user]
        )
        p_control = np.where(is_bot[q_sess], 0.0, sigmoid(logit))
        return pl.DataFrame(
            {
                "q": np.arange(k),
                "s": q_sess,
                "u": q_user,
                "searched_us": searched_us,
                "route": route,
                "lead_time_days": lead,
                "travel_day": travel_day,
                "passengers": passengers.astype(np.int64),
                "is_first": first,
                "is_round_trip": round_trip,
                "price_eur": price,
                "logit": logit,
                "true_probability_control": p_control,
            }
        )

    def _exposures(
        self, rng: np.random.Generator, u: dict, s: pl.DataFrame, q: pl.DataFrame
    ) -> pl.DataFrame:
        """First exposure per user and experiment of the registry, in its order (the draws of
        the generator follow it). A triggered experiment (`medium_intent_search`) exposes a
        user at their first medium-intent search from its start day on (the only place the
        discount can show); the others at the first session from their start day on."""
        frames = []
        planted = PARAMS["experiments"]
        for exp_id, design in self.experiments.items():
            cfg = planted.get(exp_id, {})
            triggered = design.exposure_trigger == "medium_intent_search"
            if triggered:
                lo, hi = planted["medium_intent_band"]
                first = (
                    q.filter(
                        pl.col("true_probability_control").is_between(lo, hi)
                        & (pl.col("searched_us") >= self.start_us + design.start_day * 86_400 * US)
                    )
                    .group_by("u")
                    .agg(
                        (pl.col("searched_us").min() - 1).alias("start_us"),
                        pl.col("s").sort_by("searched_us").first(),
                    )
                )
            else:
                first = (
                    s.filter(pl.col("day") >= design.start_day)
                    .group_by("u")
                    .agg(pl.col("start_us").min(), pl.col("s").sort_by("start_us").first())
                )
            first = first.sort("u")
            exposed = first["u"].to_numpy()
            b = bucket(exp_id, [u["ids"][i] for i in exposed])  # only the exposed users
            variant = np.where(b < design.treatment_share, "treatment", "control")
            logged_share = cfg.get("treatment_exposure_logged_share", 1.0)
            logged = (variant == "control") | (rng.random(first.height) < logged_share)
            frames.append(
                first.with_columns(
                    experiment_id=pl.lit(exp_id),
                    variant=pl.Series(variant),
                    exposed_us=pl.col("start_us") + (0 if triggered else US),
                    is_logged=pl.Series(logged),
                )
            )
        return pl.concat(frames).select(
            "u", "s", "experiment_id", "variant", "exposed_us", "is_logged"
        )

    def _outcomes(
        self, rng: np.random.Generator, u: dict, q: pl.DataFrame, e: pl.DataFrame
    ) -> pl.DataFrame:
        cfg = PARAMS["experiments"]["medium_intent_discount"]
        lo, hi = PARAMS["experiments"]["medium_intent_band"]
        mid = e.filter(pl.col("experiment_id") == "medium_intent_discount").select(
            "u",
            pl.col("variant").alias("mid_variant"),
            pl.col("exposed_us").alias("mid_exposed_us"),
        )
        q = q.join(mid, on="u", how="left")
        pc = q["true_probability_control"].to_numpy()
        medium = (pc >= lo) & (pc <= hi)
        p_treat = np.where(medium, sigmoid(q["logit"].to_numpy() + cfg["logit_uplift"]), pc)
        p_treat = np.where(pc == 0, 0.0, p_treat)
        after = q["searched_us"].to_numpy() >= q["mid_exposed_us"].fill_null(2**62).to_numpy()
        treated = medium & after & (q["mid_variant"] == "treatment").fill_null(False).to_numpy()
        p_applied = np.where(treated, p_treat, pc)
        # a search that returned no results cannot be booked
        p_applied = np.where(self.effects.no_results(q["searched_us"].to_numpy()), 0.0, p_applied)
        booked = rng.random(q.height) < p_applied
        return q.with_columns(
            true_probability_treatment=pl.Series(p_treat),
            true_probability=pl.Series(p_applied),
            is_medium_intent=pl.Series(medium),
            is_treated=pl.Series(treated),
            is_booked=pl.Series(booked),
        )

    def _activity_truth(self, u: dict) -> pl.DataFrame:
        """One row per user and simulated day from their signup on: whether the user is active
        (signed up, and before churn_at or inside the reactivation window), the planted session
        rate they have that day when active (persona rate x activity multiplier x weekday,
        season and holiday factors: the Poisson mean of their sessions; bots keep the rate of
        their persona, their sessions follow their own schedule) and the sessions drawn (by
        planted day; a session in the first local hours lands on the previous UTC day)."""
        rate, active, sessions = u.pop("session_rate"), u.pop("active"), u.pop("sessions")
        uu, dd = np.nonzero(np.arange(self.days)[None, :] >= u["signup_day"][:, None])
        return pl.DataFrame(
            {
                "user_id": pl.Series(u["ids"]).gather(uu),
                "activity_date": np.datetime64(self.start, "D") + dd.astype("timedelta64[D]"),
                "is_active": active[uu, dd],
                "session_rate": rate[uu, dd],
                "sessions": sessions[uu, dd].astype(np.int32),
            }
        )

    # ------------------------------------------------------------------------------------
    def _events(
        self,
        rng: np.random.Generator,
        k: int,
        u: dict,
        s: pl.DataFrame,
        q: pl.DataFrame,
        e: pl.DataFrame,
    ) -> tuple[dict[str, pl.DataFrame], dict[str, pl.DataFrame]]:
        p = PARAMS
        tag = f"{k:03d}"
        uid = pl.Series(u["ids"])
        ts = pl.Datetime("us", "UTC")
        stations = pl.Series(self.station_ids)
        session_id = padded_id(f"ss_{tag}_", pl.col("s"), 8)
        common_s = s.with_columns(
            user_id=uid.gather(s["u"].to_numpy()),
            session_id=session_id,
            platform_name=pl.Series(PLATFORMS).gather(s["platform"]),
        )
        # sessions are numbered 0..n-1 in row order, so a session's columns are a gather by "s"
        sess_cols = common_s.select("user_id", "session_id", "platform_name")
        events: dict[str, pl.DataFrame] = {}

        def emit(name: str, df: pl.DataFrame, occurred_us: pl.Expr, extra: list[pl.Expr]) -> None:
            if "session_id" not in df.columns:
                df = pl.concat([df, sess_cols[df["s"]]], how="horizontal")
            events[name] = df.select(
                pl.lit(name).alias("event_name"),
                pl.col("user_id"),
                pl.col("session_id"),
                pl.col("platform_name").alias("platform"),
                occurred_us.cast(ts).alias("occurred_at"),
                *extra,
            )

        utm = np.array(
            [None, None, None, "google", "newsletter", "facebook", "partner"], dtype=object
        )
        emit(
            "session_started",
            common_s,
            pl.col("start_us"),
            [
                pl.Series(
                    "utm_source",
                    utm[rng.integers(0, len(utm), size=s.height)].tolist(),
                    dtype=pl.Utf8,
                )
            ],
        )
        q = q.with_columns(
            search_id=padded_id(f"sr_{tag}_", pl.col("q"), 9),
            origin_station_id=stations.gather(self.route_origin[q["route"].to_numpy()]),
            destination_station_id=stations.gather(self.route_dest[q["route"].to_numpy()]),
            travel_date=(pl.lit(self.start) + pl.duration(days=pl.col("travel_day"))).cast(pl.Date),
            fare_class=pl.when(pl.col("is_first"))
            .then(pl.lit("first"))
            .otherwise(pl.lit("standard")),
            discount_eur=pl.when(pl.col("is_treated"))
            .then(
                (
                    pl.col("price_eur")
                    * p["experiments"]["medium_intent_discount"]["discount_rate"]
                ).round(2)
            )
            .otherwise(0.0),
        )
        n = q.height
        emit(
            "search_route",
            q,
            pl.col("searched_us"),
            [
                pl.col("search_id"), pl.col("origin_station_id"), pl.col("destination_station_id"),
                pl.col("travel_date"), pl.col("passengers"), pl.col("fare_class"),
                pl.col("is_round_trip"),
            ],
        )  # fmt: skip
        # funnel: results always; fare/checkout always before a purchase, sometimes without
        t_res = q["searched_us"].to_numpy() + rng.integers(2, 6, size=n) * US
        booked = q["is_booked"].to_numpy()
        no_results = self.effects.no_results(q["searched_us"].to_numpy())
        fare = booked | ((rng.random(n) < 0.45) & ~no_results)
        checkout = booked | (fare & (rng.random(n) < 0.4))
        t_fare = t_res + rng.integers(30, 120, size=n) * US
        t_checkout = t_fare + rng.integers(60, 300, size=n) * US
        t_buy = t_checkout + rng.integers(60, 600, size=n) * US
        q = q.with_columns(
            t_res=pl.Series(t_res), t_fare=pl.Series(t_fare), t_checkout=pl.Series(t_checkout),
            t_buy=pl.Series(t_buy),
        )  # fmt: skip
        emit(
            "results_viewed",
            q,
            pl.col("t_res"),
            [
                pl.col("search_id"),
                pl.when(pl.Series(no_results))
                .then(0)
                .otherwise(5 + pl.col("q") % 11)
                .cast(pl.Int64)
                .alias("results_count"),
                pl.col("price_eur"),
                pl.col("discount_eur"),
            ],
        )
        emit(
            "fare_selected",
            q.filter(pl.Series(fare)),
            pl.col("t_fare"),
            [pl.col("search_id"), pl.col("price_eur")],
        )
        emit(
            "checkout_begun",
            q.filter(pl.Series(checkout)),
            pl.col("t_checkout"),
            [pl.col("search_id"), pl.col("price_eur")],
        )
        bookings = q.filter(pl.col("is_booked")).with_columns(
            booking_id=padded_id(f"bk_{tag}_", pl.col("q"), 9)
        )
        # a tracking outage: the purchase happened, its event (and so its cancellation) never
        # reaches the warehouse
        bookings = bookings.with_columns(
            is_logged=pl.Series(
                self.effects.purchase_logged(
                    bookings["t_buy"].to_numpy(), s["platform"].to_numpy()[bookings["s"].to_numpy()]
                )
            )
        )
        emit(
            "ticket_purchased",
            bookings.filter(pl.col("is_logged")),
            pl.col("t_buy"),
            [
                pl.col("booking_id"), pl.col("origin_station_id"), pl.col("destination_station_id"),
                pl.col("travel_date"), pl.col("passengers"), pl.col("fare_class"),
                pl.col("is_round_trip"), pl.col("price_eur"), pl.col("discount_eur"),
            ],
        )  # fmt: skip
        # cancellations between purchase and travel; refunds 1-3 days later
        b = bookings.height
        cancelled = rng.random(b) < p["cancellation_rate"]
        travel_us = self.start_us + bookings["travel_day"].to_numpy() * 86_400 * US
        t_cancel = bookings["t_buy"].to_numpy() + (
            rng.random(b) * np.maximum(travel_us - bookings["t_buy"].to_numpy(), 3_600 * US)
        ).astype(np.int64)
        t_refund = t_cancel + rng.integers(1, 4, size=b) * 86_400 * US
        lo, hi = p["refund_share_range"]
        paid = bookings["price_eur"].to_numpy() - bookings["discount_eur"].to_numpy()
        refund = np.round(paid * rng.uniform(lo, hi, size=b), 2)
        bookings = bookings.with_columns(
            t_cancel=pl.Series(t_cancel), t_refund=pl.Series(t_refund),
            refund_eur=pl.Series(refund),
            cancel_reason=pl.Series(
                np.array(["change_of_plans", "found_cheaper", "schedule_change", "other"])[
                    rng.integers(0, 4, size=b)
                ]
            ),
        )  # fmt: skip
        cancels = bookings.filter(
            pl.Series(cancelled) & (pl.col("t_cancel") < self.end_us) & pl.col("is_logged")
        )
        emit(
            "booking_cancelled",
            cancels,
            pl.col("t_cancel"),
            [pl.col("booking_id"), pl.col("cancel_reason")],
        )
        refunds = cancels.filter(pl.col("t_refund") < self.end_us)
        emit(
            "booking_refunded",
            refunds,
            pl.col("t_refund"),
            [pl.col("booking_id"), pl.col("refund_eur")],
        )
        exp_logged = e.filter(pl.col("is_logged"))
        emit(
            "experiment_exposure",
            exp_logged,
            pl.col("exposed_us"),
            [pl.col("experiment_id"), pl.col("variant")],
        )
        # consent changes and loyalty gains happen during a random session of the user
        per_user = s.group_by("u").agg(pl.col("s").sample(1, seed=int(rng.integers(2**31))).first())
        pick = rng.random(per_user.height)
        consent = per_user.filter(pl.Series(pick < p["consent_change_share"]))
        initial_consent = rng.random(u["n"]) < p["consent_initial_share"]
        consent = consent.join(s.select("s", "start_us"), on="s")
        consent = consent.with_columns(
            marketing_consent=pl.Series(~initial_consent[consent["u"].to_numpy()])
        )
        emit(
            "consent_updated",
            consent,
            pl.col("start_us") + 30 * US,
            [pl.col("marketing_consent")],
        )
        loyalty = per_user.filter(pl.Series(pick > 1 - p["loyalty_gain_share"])).join(
            s.select("s", "start_us"), on="s"
        )
        u["initial_consent"] = initial_consent
        u["consent_changes"] = consent.select("u", pl.col("start_us") + 30 * US)
        u["loyalty_gains"] = loyalty.select("u", pl.col("start_us") + 60 * US)
        # event ids (stable: per table, in generation order) are added by _deliver
        truth_extra = {
            "searches": q.join(bookings.select("q", "booking_id"), on="q", how="left").select(
                "search_id",
                user_id=uid.gather(q["u"].to_numpy()),
                searched_at=pl.col("searched_us").cast(ts),
                lead_time_days=pl.col("lead_time_days"),
                price_eur=pl.col("price_eur"),
                true_probability=pl.col("true_probability"),
                true_probability_control=pl.col("true_probability_control"),
                true_probability_treatment=pl.col("true_probability_treatment"),
                is_medium_intent=pl.col("is_medium_intent"),
                is_treated=pl.col("is_treated"),
                is_booked=pl.col("is_booked"),
                booking_id=pl.col("booking_id"),
            ),
            "bookings": bookings.select(
                "booking_id", "search_id",
                user_id=uid.gather(bookings["u"].to_numpy()),
                cancelled=pl.Series(cancelled),
                is_logged=pl.col("is_logged"),
            ),
            "exposures": e.with_columns(
                user_id=uid.gather(e["u"].to_numpy()), exposed_at=pl.col("exposed_us").cast(ts)
            ).select("user_id", "experiment_id", "variant", "exposed_at", "is_logged"),
        }  # fmt: skip
        return events, truth_extra

    def _user_table(
        self, rng: np.random.Generator, u: dict, s: pl.DataFrame, events: dict
    ) -> tuple[pl.DataFrame, pl.DataFrame]:
        from scripts.privacy import email_domain, hash_emails

        n = u["n"]
        country = self.station_country[u["home"]]
        idx_first = rng.integers(0, POOL_SIZE, size=n)
        idx_last = rng.integers(0, POOL_SIZE, size=n)
        idx_phone = rng.integers(0, POOL_SIZE, size=n)
        pool = self.pool  # waits for the pool process once
        first = [pool.first[c][i] for c, i in zip(country, idx_first, strict=True)]
        last = [pool.last[c][i] for c, i in zip(country, idx_last, strict=True)]
        phone = [pool.phone[c][i] for c, i in zip(country, idx_phone, strict=True)]
        first_slug = [pool.first_slug[c][i] for c, i in zip(country, idx_first, strict=True)]
        last_slug = [pool.last_slug[c][i] for c, i in zip(country, idx_last, strict=True)]
        domains = np.where(
            u["is_internal"], INTERNAL_DOMAIN, np.array(EMAIL_DOMAINS)[rng.integers(0, 6, size=n)]
        )
        emails = [
            f"{f}.{la}{uid[4:]}@{d}"
            for f, la, uid, d in zip(first_slug, last_slug, u["ids"], domains, strict=True)
        ]
        # messy input on purpose: case and whitespace the privacy layer must normalise
        messy = rng.random(n) < 0.1
        emails = [f"  {e.title()} " if m else e for e, m in zip(emails, messy, strict=True)]
        email_s = pl.Series(emails)
        consent_final = u["initial_consent"].copy()
        changes = u["consent_changes"]
        consent_final[changes["u"].to_numpy()] = ~consent_final[changes["u"].to_numpy()]
        loyalty = rng.random(n) < np.array(PARAMS["loyalty_initial_share"])[u["persona"]]
        gains = u["loyalty_gains"]
        loyalty[gains["u"].to_numpy()] = True
        updated = u["signup_us"].copy()
        for frame in (changes, gains):
            idx = frame["u"].to_numpy()
            np.maximum.at(updated, idx, frame[frame.columns[1]].to_numpy())
        ts = pl.Datetime("us", "UTC")
        raw_users = pl.DataFrame(
            {
                "user_id": u["ids"],
                "email_sha256": hash_emails(emails, self.salt),
                "email_domain": email_domain(email_s),
                "signup_at": pl.Series(u["signup_us"]).cast(ts),
                "country_code": country,
                "home_station_id": pl.Series(self.station_ids).gather(u["home"]),
                "age_band": np.array(AGE_BANDS)[
                    (rng.random(n)[:, None] > np.cumsum(AGE_BY_PERSONA[u["persona"]], axis=1))
                    .sum(1)
                    .clip(0, 5)
                ],
                "acquisition_channel": rng.choice(np.array(CHANNELS), size=n, p=CHANNEL_SHARE),
                "signup_platform": np.array(PLATFORMS)[u["platform"]],
                "has_loyalty_card": loyalty,
                "marketing_consent": consent_final,
                "updated_at": pl.Series(updated).cast(ts),
            }
        )
        clear = pl.DataFrame(
            {
                "user_id": u["ids"],
                "email": emails,
                "first_name": first,
                "last_name": last,
                "phone": phone,
            }
        )
        u["truth"] = u["truth"].with_columns(
            initial_marketing_consent=pl.Series(u["initial_consent"]),
            final_marketing_consent=pl.Series(consent_final),
        )
        return raw_users, clear

    def _deliver(
        self, rng: np.random.Generator, k: int, events: dict[str, pl.DataFrame], ready: Ready
    ) -> pl.DataFrame:
        """Add event ids, received_at, late arrivals and duplicate deliveries (events only),
        hand each raw table to `ready`, and return the deliveries truth.

        The random draws are made here, table by table in a fixed order; the rest of each table
        (ids, delivery order, the truth of its pathologies: native code off the GIL) runs on two
        threads meanwhile."""
        pat = PARAMS["pathologies"]
        delivering: dict[str, Future[tuple[pl.DataFrame, pl.DataFrame]]] = {}
        with ThreadPoolExecutor(2, thread_name_prefix="deliver") as threads:
            for name, df in events.items():
                if name == "users":
                    continue
                n = df.height
                lag_us = (rng.exponential(3.0, size=n) * US).astype(np.int64)
                late = rng.random(n) < pat["late_rate"]
                hours = rng.random(n) < pat["late_hours_share"]
                late_us = np.where(
                    hours,
                    rng.uniform(1, 12, size=n) * 3_600 * US,
                    rng.uniform(1, pat["max_lateness_days"], size=n) * 86_400 * US,
                ).astype(np.int64)
                lag_us = np.where(late, late_us, lag_us)
                dup = rng.random(n) < pat["duplicate_rate"]
                extra_us = rng.integers(1, 600, size=int(dup.sum())) * US
                delivering[name] = threads.submit(
                    deliveries_of, df, f"ev_{k:03d}_{name[:3]}_", name, lag_us, late, dup, extra_us
                )
            marks = []
            for name, df in events.items():
                if name == "users":
                    table = df
                else:
                    table, truth = delivering[name].result()
                    marks.append(truth)
                ready("raw", name, table)
        return pl.concat(marks)


def deliveries_of(
    df: pl.DataFrame,
    id_prefix: str,
    name: str,
    lag_us: np.ndarray,
    late: np.ndarray,
    dup: np.ndarray,
    extra_us: np.ndarray,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """One event table's deliveries and their truth.

    Events get their ids (id_prefix + row number, in generation order). Every event is
    delivered at occurred_at + lag; each `dup` event a second time, extra_us later. Deliveries
    are ordered by (received_at, event_id): each is first a row of df, a duplicate right after
    its original, so the rows are in event_id order and a stable sort on received_at gives that
    order without comparing strings; then one gather. The truth has one row per event."""
    df = df.select(padded_id(id_prefix, pl.int_range(pl.len()), 9).alias("event_id"), pl.all())
    row = np.repeat(np.arange(df.height), np.where(dup, 2, 1))
    received = df["occurred_at"].dt.epoch("us").to_numpy()[row] + lag_us[row]
    received[np.flatnonzero(np.diff(row, prepend=-1) == 0)] += extra_us
    order = np.argsort(received, kind="stable")
    delivered = df[row[order]].with_columns(
        received_at=pl.Series(received[order]).cast(pl.Datetime("us", "UTC"))
    )
    truth = pl.DataFrame(
        {
            "event_id": df["event_id"],
            "event_name": name,
            "is_late": late,
            "lateness_seconds": lag_us / US,
            "duplicate_deliveries": dup.astype(np.int64),
        }
    )
    return delivered, truth


# ----------------------------------------------------------------------------------------
# Incidents: planted on purpose so anomaly detection can be graded (ml/anomalies.py). Each is
# a row of data/truth/incidents.parquet: kind, start and end (UTC, end exclusive), scope (a
# route, a platform, or neither for all traffic). Drawn from their own random stream, so the
# plan depends on the seed and the period only.
INCIDENT_KINDS = ("tracking_outage", "pricing_bug", "results_outage", "bot_wave")
INCIDENT_SCHEMA = {
    "incident_id": pl.Utf8,
    "kind": pl.Utf8,
    "started_at": pl.Datetime("us", "UTC"),
    "ended_at": pl.Datetime("us", "UTC"),
    "route_id": pl.Utf8,
    "platform": pl.Utf8,
    "description": pl.Utf8,
}


def empty_incidents() -> pl.DataFrame:
    return pl.DataFrame(schema=INCIDENT_SCHEMA)


def plan_incidents(start: date, days: int, seed: int) -> pl.DataFrame:
    """One incident of each kind, on distinct days at least `min_gap_days` apart, from
    `first_day` on (fewer when the period is too short to hold them)."""
    cfg = PARAMS["incidents"]
    rng = np.random.default_rng([seed, 24, 0])
    first, gap = int(cfg["first_day"]), int(cfg["min_gap_days"])
    chosen: list[int] = []
    for day in rng.permutation(np.arange(first, max(first, days - 2))):
        if all(abs(int(day) - c) >= gap for c in chosen):
            chosen.append(int(day))
        if len(chosen) == len(INCIDENT_KINDS):
            break
    rows = []
    midnight = datetime(start.year, start.month, start.day, tzinfo=UTC)
    for kind, day in zip(INCIDENT_KINDS, chosen, strict=False):
        platform = None
        if kind == "pricing_bug":
            # the route is chosen by the simulation (IncidentEffects.fare_factor)
            hour, hours = 0, 24
            what = f"fares x {cfg['pricing_bug']['fare_factor']} on"
        else:
            c = cfg[kind]
            hour = int(rng.integers(c["start_hour_utc"][0], c["start_hour_utc"][1] + 1))
            hours = int(rng.integers(c["hours"][0], c["hours"][1] + 1))
            if kind != "results_outage":
                platform = PLATFORMS[int(rng.integers(len(PLATFORMS)))]
            what = {
                "tracking_outage": f"{platform} ticket_purchased events not logged",
                "results_outage": "searches return no results",
                "bot_wave": f"bot sessions on {platform}, no purchases",
            }[kind]
        began = midnight + timedelta(days=day, hours=hour)
        rows.append(
            {
                "incident_id": "",
                "kind": kind,
                "started_at": began,
                "ended_at": began + timedelta(hours=hours),
                "route_id": None,
                "platform": platform,
                "description": what,
            }
        )
    return (
        pl.DataFrame(rows, schema=INCIDENT_SCHEMA)
        .sort("started_at")
        .with_columns(incident_id=padded_id("inc_", pl.int_range(1, pl.len() + 1), 2))
    )


@dataclass
class IncidentEffects:
    """How the planned incidents change the simulation (each method is a no-op without them)."""

    start_us: int
    windows: dict[str, tuple[int, int, str | None]]  # kind -> (start_us, end_us, platform)
    route_ids: list[str] | None = None
    bug_route: int = -1
    bug_day: int = -1

    @property
    def bug_route_id(self) -> str | None:
        return self.route_ids[self.bug_route] if self.route_ids and self.bug_route >= 0 else None

    @classmethod
    def of(cls, incidents: pl.DataFrame, routes: pl.DataFrame, start_us: int) -> IncidentEffects:
        windows: dict[str, tuple[int, int, str | None]] = {}
        route_ids = (
            routes.select(pl.concat_str("origin_station_id", pl.lit("-"), "destination_station_id"))
            .to_series()
            .to_list()
        )
        out = cls(start_us, windows, route_ids)
        for row in incidents.iter_rows(named=True):
            lo = int(row["started_at"].timestamp()) * US
            hi = int(row["ended_at"].timestamp()) * US
            windows[row["kind"]] = (lo, hi, row["platform"])
            if row["kind"] == "pricing_bug":
                out.bug_day = (lo - start_us) // (86_400 * US)
        return out

    def _window(self, kind: str) -> tuple[int, int, str | None] | None:
        return self.windows.get(kind)

    def wave_users(
        self, lo: int, n: int, signup_day: np.ndarray, excluded: np.ndarray
    ) -> np.ndarray:
        """The bot wave's accounts: in the first chunk, users signed up before the wave who are
        neither a background bot nor internal."""
        wave = np.zeros(n, dtype=bool)
        w = self._window("bot_wave")
        if w is None or lo != 0:
            return wave
        cfg = PARAMS["incidents"]["bot_wave"]
        day = (w[0] - self.start_us) // (86_400 * US)
        eligible = np.flatnonzero((signup_day < day) & ~excluded)
        size = min(eligible.size, max(int(cfg["min_users"]), round(cfg["user_share"] * n)))
        rng = np.random.default_rng([int(w[0]), 1])
        wave[rng.choice(eligible, size=size, replace=False)] = True
        return wave

    def wave_sessions(self, counts: np.ndarray, is_wave: np.ndarray) -> None:
        """Wave accounts are active on the wave's day only (in place on users x days)."""
        w = self._window("bot_wave")
        if w is None or not is_wave.any():
            return
        day = (w[0] - self.start_us) // (86_400 * US)
        counts[is_wave, :] = 0
        counts[is_wave, day] = PARAMS["incidents"]["bot_wave"]["sessions_per_user"]

    def wave_timing(
        self, start_us: np.ndarray, platform: np.ndarray, is_wave: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Wave sessions start inside the wave's hours, on its platform."""
        w = self._window("bot_wave")
        if w is None or not is_wave.any():
            return start_us, platform
        rng = np.random.default_rng([int(w[0]), 2])
        k = int(is_wave.sum())
        start_us = start_us.copy()
        platform = platform.copy()
        # the last search of a session starts at most ~25 minutes after it: stay in the window
        span = max(w[1] - w[0] - 1_800 * US, US)
        start_us[is_wave] = w[0] + np.sort(rng.integers(0, span, size=k))
        platform[is_wave] = PLATFORMS.index(w[2])
        return start_us, platform

    def wave_searches(self, n_search: np.ndarray, is_wave: np.ndarray) -> np.ndarray:
        if not is_wave.any():
            return n_search
        lo, hi = PARAMS["incidents"]["bot_wave"]["searches_per_session"]
        rng = np.random.default_rng([self.start_us, 3, int(is_wave.sum())])
        return np.where(is_wave, rng.integers(lo, hi + 1, size=n_search.size), n_search)

    def fare_factor(
        self, route: np.ndarray, search_day: np.ndarray, human: np.ndarray
    ) -> np.ndarray:
        """The pricing bug: the quote of the bug route's searches on its day, multiplied. The
        first chunk picks the route: its busiest on the bug's day in human searches (a bug on a
        route nobody searches, or only a bot, would go unseen)."""
        if self.bug_day >= 0 and self.bug_route < 0:
            day = (search_day == self.bug_day) & human
            self.bug_route = int(np.bincount(route[day], minlength=1).argmax())
        hit = (route == self.bug_route) & (search_day == self.bug_day)
        return np.where(hit, PARAMS["incidents"]["pricing_bug"]["fare_factor"], 1.0)

    def no_results(self, searched_us: np.ndarray) -> np.ndarray:
        w = self._window("results_outage")
        if w is None:
            return np.zeros(searched_us.size, dtype=bool)
        return (searched_us >= w[0]) & (searched_us < w[1])

    def purchase_logged(self, bought_us: np.ndarray, platform: np.ndarray) -> np.ndarray:
        """False for a purchase made on the outage's platform during a tracking outage."""
        w = self._window("tracking_outage")
        if w is None:
            return np.ones(bought_us.size, dtype=bool)
        lost = (bought_us >= w[0]) & (bought_us < w[1]) & (platform == PLATFORMS.index(w[2]))
        return ~lost
