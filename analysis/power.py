"""Plan an experiment: users per arm for a baseline and minimum detectable effect.

python -m analysis.power --baseline 0.05 --mde 0.10 --alpha 0.05 --power 0.8
python -m analysis.power --baseline 0.05 --users-per-arm 20000   # MDE for a sample
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence

from analysis.stats import minimum_detectable_effect, sample_size_per_arm
from railflow.errors import SettingsError, cli_entrypoint


@cli_entrypoint
def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m analysis.power",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,  # the examples, a line each
    )
    parser.add_argument("--baseline", type=float, required=True, help="control conversion rate")
    parser.add_argument("--mde", type=float, help="minimum detectable relative lift, e.g. 0.10")
    parser.add_argument("--users-per-arm", type=int, help="compute the MDE for this sample")
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--power", type=float, default=0.8)
    args = parser.parse_args(argv)
    if not 0 < args.baseline < 1:
        raise SettingsError("--baseline must be strictly between 0 and 1, e.g. 0.05")
    if not (0 < args.alpha < args.power < 1):
        raise SettingsError(
            "--alpha and --power must lie between 0 and 1, with --power above --alpha "
            "(a test already rejects at rate alpha when there is no effect), e.g. 0.05 and 0.8"
        )
    if args.mde == 0:
        raise SettingsError("--mde 0: a lift of 0 cannot be detected; give e.g. --mde 0.10")
    if (args.mde is None) == (args.users_per_arm is None):
        raise SettingsError("give exactly one of --mde or --users-per-arm")
    if args.users_per_arm is not None and args.users_per_arm < 1:
        raise SettingsError(
            f"--users-per-arm {args.users_per_arm}: an arm needs at least 1 user, e.g. 20000"
        )
    if args.mde is not None:
        try:
            n = sample_size_per_arm(args.baseline, args.mde, args.alpha, args.power)
        except ValueError as exc:
            raise SettingsError(f"--mde {args.mde}: {exc}") from None
        print(f"users per arm: {math.ceil(n):,} (total {2 * math.ceil(n):,})")
    else:
        mde = minimum_detectable_effect(args.baseline, args.users_per_arm, args.alpha, args.power)
        if mde is None:  # even a conversion rate of 100% would be missed too often
            print(
                f"minimum detectable relative lift: none: with {args.users_per_arm:,} users per "
                f"arm no lift reaches power {args.power}; add users"
            )
        else:
            print(f"minimum detectable relative lift: {mde:.2%}")


if __name__ == "__main__":
    main(sys.argv[1:])
