"""What reading conventions from the pixels costs, and how sure it is, by stack size.

Synthetic stacks (tests/conventions_fixtures.py: Gaussian hills and a ridge, made with
lsd.gee.s1's formulas under each flattening sign and flag polarity) are written as event folders
without any record, then `lsd.conventions_detect.detect_stack` reads them (at most the middle
1024 x 1024 pixels), with the pass given and without. Prints, per side, the seconds per
detection (best of `--rounds`) and how many of the 8 stacks (2 signs x 2 polarities x 2 passes)
were told right, wrong or unknown; writes JSON (benchmarks/results/conventions.json).

    python -m benchmarks.bench_conventions
    python -m benchmarks.bench_conventions --sides 128,512 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from lsd.conventions_detect import detect_stack
from tests.conventions_fixtures import radar_stack, write_radar_event

REPO = Path(__file__).resolve().parents[1]

CASES = [
    (sign, polarity, orbit)
    for sign in ("vollrath", "gee_s1_ard")
    for polarity in ("1=distorted", "1=valid")
    for orbit in ("DESCENDING", "ASCENDING")
]


def run(sides: list[int], rounds: int) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for side in sides:
            counts = {"pass given": [0, 0, 0], "no pass": [0, 0, 0]}  # right, wrong, unknown
            best = float("inf")
            for i, (sign, polarity, orbit) in enumerate(CASES):
                folder = write_radar_event(
                    Path(tmp) / f"{side}-{i}",
                    radar_stack(sign, polarity, orbit, size=side, seed=i),
                    label=False,
                )
                for key, passes in (("pass given", [orbit]), ("no pass", None)):
                    for _ in range(rounds):
                        t0 = time.perf_counter()
                        found = detect_stack(folder / "stack.tif", passes)
                        best = min(best, time.perf_counter() - t0)
                    for name, want in (("flattening", sign), ("distortion_flags", polarity)):
                        value = found[name]["value"]
                        slot = 2 if value == "unknown" else (0 if value == want else 1)
                        counts[key][slot] += 1
            rows.append({"side": side, "seconds_best": round(best, 3), "calls": counts})
            print(
                f"{side:>5} px  {best:6.2f} s  "
                + "  ".join(
                    f"{k}: {r} right, {w} wrong, {u} unknown" for k, (r, w, u) in counts.items()
                )  # fmt: skip
            )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sides", default="128,256,512,1024")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    sides = [int(s) for s in args.sides.split(",")]
    print("side     best s/detection  (of 16 answers: flattening and flags of 8 stacks)")
    rows = run(sides, args.rounds)
    out = REPO / "benchmarks" / "results" / "conventions.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": rows, "rounds": args.rounds}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
