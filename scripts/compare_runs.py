"""Whether two run directories hold the same results, value for value (issue 34's identity check for speed changes).

    python scripts/compare_runs.py RUN_A RUN_B

Compares metrics.jsonl and the steps file (policy_steps.jsonl, or ppo_steps.jsonl in older run directories; time/*
keys aside), every rewards/*.parquet, every samples/* file and
summary.json (wall time, code stamp and sft_cached aside); reports figure bytes that differ. Exit code 1 if any value
differs.
"""

import json
import math
import pathlib
import sys

import pandas as pd

from rlhfsim.run_files import steps_path


def rows(p: pathlib.Path):
    return (
        [{k: v for k, v in json.loads(line).items() if not k.startswith("time/")} for line in open(p)]
        if p.exists()
        else None
    )


def same(x, y) -> bool:
    return x == y or (isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y))


def main(a: pathlib.Path, b: pathlib.Path) -> int:
    nd = nv = 0
    for name in ("metrics.jsonl", "steps"):
        pa, pb = (steps_path(d) if name == "steps" else d / name for d in (a, b))
        ra, rb = rows(pa), rows(pb)
        if ra is None and rb is None:
            continue
        if ra is None or rb is None or len(ra) != len(rb):
            print("DIFF", name, "rows", None if ra is None else len(ra), None if rb is None else len(rb))
            nd += 1
            continue
        for x, y in zip(ra, rb):
            if set(x) != set(y):
                print("DIFF keys", name, sorted(set(x) ^ set(y)))
                nd += 1
            for k in x:
                nv += 1
                if not same(x[k], y.get(k)):
                    nd += 1
                    print("DIFF", name, x.get("round"), k, x[k], y.get(k))
    for pa in sorted((a / "rewards").glob("*.parquet")):
        da, db = pd.read_parquet(pa), pd.read_parquet(b / "rewards" / pa.name)
        nv += da.size
        if not da.equals(db):
            nd += 1
            print("DIFF parquet", pa.name)
    for pa in sorted((a / "samples").glob("*")):
        if pa.read_bytes() != (b / "samples" / pa.name).read_bytes():
            nd += 1
            print("DIFF samples", pa.name)
    for pa in sorted((a / "figures").glob("*.png")):
        if pa.read_bytes() != (b / "figures" / pa.name).read_bytes():
            print("(figure bytes differ)", pa.name)
    sa, sb = json.loads((a / "summary.json").read_text()), json.loads((b / "summary.json").read_text())
    for k in sa.keys() - {"wall_time_s", "code_version", "code_hash", "sft_cached"}:
        nv += 1
        if not same(sa[k], sb.get(k)):
            nd += 1
            print("DIFF summary", k, sa[k], sb.get(k))
    print(f"{a} vs {b}: {nv} values compared, {nd} differ")
    return 1 if nd else 0


if __name__ == "__main__":
    sys.exit(main(pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])))
