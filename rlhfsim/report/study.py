"""A Study: the runs of one report as tidy pandas tables, plus the config differences between variants.

study.metrics          # one row per (run, round): experiment, variant, seed, run, round, <metric columns>
study.summary          # one row per run: summary.json fields + final metrics + status
study.rewards([1, 8])  # per-completion rewards of the given rounds (rewards/round_XXX.parquet)
study.missing          # what could not be read, in words (the report's "Missing data" section)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from rlhfsim.report.rundir import RunData
from rlhfsim.version import METRIC_SCHEMA_VERSION, source_hash

# config keys that name a run rather than describe what it does
CONFIG_IDENTITY_KEYS = ("seed", "output.experiment", "output.variant", "output.dir")


@dataclass
class Study:
    name: str
    question: str | None
    baseline: str
    variants: list[str]
    runs: list[RunData]
    missing: list[str]
    sources: list[str]
    expected_seeds: list[int] | None = None
    variant_overrides: dict[str, dict] = field(default_factory=dict)
    primary: dict | None = None  # {"endpoint": column, "better": "higher" | "lower"} from the experiment file
    secondary: list[dict] = field(default_factory=list)
    headline: list[str] = field(default_factory=list)
    factors: dict[str, str | dict] = field(default_factory=dict)  # name -> config key, or a label factor {levels, keys}
    kind: str | None = None  # the experiment's design kind (`design:`); None: inferred (report/kinds.py)
    borrowed: dict[str, dict] = field(default_factory=dict)  # arm -> {file, variant, runs, sweep} (report/borrowed.py)

    # ------------------------------------------------------------------ code versions

    def versions(self) -> dict[str, list[str]]:
        """Which code wrote each run's summary.json: "code <hash> (git <describe>, metric schema N)" -> run labels.
        Runs are told apart by the source hash and schema; git describe only names them (a commit of report code
        alone changes it, not the numbers)."""
        groups: dict[tuple, list] = {}
        for r in self.runs:
            if r.summary is None:
                continue
            w = r.written_by or {}
            groups.setdefault((w.get("code_hash"), w.get("metric_schema")) if w else None, []).append(r)
        out: dict[str, list[str]] = {}
        for key, rs in groups.items():
            if key is None:
                name = "unstamped (older code, before summary.json recorded its version)"
            else:
                described = sorted({str((r.written_by or {}).get("code_version", "?")) for r in rs})
                name = f"code {key[0]} (git {', '.join(described)}; metric schema {key[1]})"
            out[name] = [r.label for r in rs]
        return out

    def version_note(self) -> str | None:
        """A warning when runs come from more than one code version or from code other than the current one."""
        vs = self.versions()
        stale = [k for k in vs if not k.startswith(f"code {source_hash()} ")]
        changed = {r.label: r.recomputed for r in self.runs if r.recomputed}
        if len(vs) <= 1 and not stale and not changed:
            return None
        parts = "; ".join(f"{k}: {len(v)} run(s)" for k, v in vs.items())
        msg = (
            f"runs written by {'different code versions' if len(vs) > 1 else 'other code than this report'} ({parts}). "
            f"Summaries are recomputed from metrics.jsonl with the current code (metric schema {METRIC_SCHEMA_VERSION}), but the "
            "per-round metrics themselves are as each run measured them"
        )
        if changed:
            ex = "; ".join(
                f"{k}: {', '.join(v[:4])}{' ...' if len(v) > 4 else ''}" for k, v in list(changed.items())[:4]
            )
            msg += f". Recomputed fields that differ from summary.json: {ex}"
        return msg

    # ------------------------------------------------------------------ tables

    @property
    def metrics(self) -> pd.DataFrame:
        """Long over runs, wide over metrics: one row per run and round."""
        frames = []
        for r in self.runs:
            if r.metrics is None:
                continue
            df = r.metrics.copy()
            df.insert(0, "run", str(r.path))
            df.insert(0, "seed", r.seed)
            df.insert(0, "variant", r.variant)
            df.insert(0, "experiment", r.experiment)
            frames.append(df)
        if not frames:
            return pd.DataFrame(columns=["experiment", "variant", "seed", "run", "round"])
        out = pd.concat(frames, ignore_index=True, sort=False)
        if "eval/sqrt_kl" not in out and "eval/kl" in out:
            out["eval/sqrt_kl"] = np.sqrt(out["eval/kl"].astype(float).clip(lower=0))
        return out

    @property
    def summary(self) -> pd.DataFrame:
        """One row per run: identity, status, summary.json fields, then final metrics (prefixed final/)."""
        rows = []
        for r in self.runs:
            row: dict[str, Any] = {
                "experiment": r.experiment,
                "variant": r.variant,
                "seed": r.seed,
                "status": r.status,
                "rounds_configured": r.configured_rounds,
                "rounds_logged": r.rounds_logged,
                "run": str(r.path),
            }
            for k, v in (r.summary or {}).items():
                if isinstance(v, (int, float, str, bool)) or v is None:
                    row[k] = v
            if r.metrics is not None and not r.metrics.empty:
                last = r.metrics.iloc[-1]
                for k, v in last.items():
                    if (
                        k != "round"
                        and not str(k).startswith("time/")
                        and isinstance(v, (int, float, np.number))
                        and not isinstance(v, bool)
                    ):
                        row[f"final/{k}"] = v
            rows.append(row)
        return pd.DataFrame(rows)

    def rewards(self, rounds: list[int]) -> pd.DataFrame:
        """Per-completion rewards of the given rounds for every run that has them (unreadable files are noted)."""
        frames = []
        for r in self.runs:
            for rd in rounds:
                if rd not in r.reward_rounds:
                    continue
                f = r.path / "rewards" / f"round_{rd:03d}.parquet"
                try:
                    df = pd.read_parquet(f)
                except Exception as e:  # noqa: BLE001 - any unreadable file is a missing-data note
                    self.note(f"{r.label} ({r.path}): rewards/{f.name} unreadable ({type(e).__name__})")
                    continue
                df = df.copy()
                df["round"] = rd
                df.insert(0, "seed", r.seed)
                df.insert(0, "variant", r.variant)
                df.insert(0, "run", str(r.path))
                frames.append(df)
        if not frames:
            return pd.DataFrame()
        return pd.concat(frames, ignore_index=True, sort=False)

    def note(self, msg: str) -> None:
        if msg not in self.missing:
            self.missing.append(msg)

    def config_diff(self) -> tuple[pd.DataFrame, dict]:
        """(settings x variants table of what differs between variants, {setting: value} common to all).

        Compared section by section: where a setting is a section in one config and a value (e.g. null)
        in another, the whole setting is one row. Seeds and run names are left out.
        """
        per_variant: dict[str, list[dict]] = {}
        for r in self.runs:
            if r.config is not None:
                cfg = json.loads(json.dumps(r.config, default=str))
                for k in CONFIG_IDENTITY_KEYS:
                    node, *path = k.split(".")
                    if not path:
                        cfg.pop(node, None)
                    elif isinstance(cfg.get(node), dict):
                        cfg[node].pop(path[0], None)
                per_variant.setdefault(r.variant, []).append(cfg)
        variants = [v for v in self.variants if v in per_variant]
        rows: list[dict] = []
        common: dict[str, str] = {}
        absent = object()

        def walk(nodes: dict[str, list], prefix: str) -> None:
            flat = [x for xs in nodes.values() for x in xs]
            if all(isinstance(x, dict) and x for x in flat):
                keys = sorted({k for x in flat for k in x})
                for k in keys:
                    walk(
                        {v: [x.get(k, absent) for x in xs] for v, xs in nodes.items()}, f"{prefix}.{k}" if prefix else k
                    )
                return
            cells = {}
            for v, xs in nodes.items():
                shown = sorted({"(absent)" if x is absent else _show(x) for x in xs})
                cells[v] = shown[0] if len(shown) == 1 else "mixed: " + " / ".join(shown)
            if len(set(cells.values())) > 1 or any(c.startswith("mixed: ") for c in cells.values()):
                rows.append({"setting": prefix, **cells})
            elif cells:
                common[prefix] = next(iter(cells.values()))

        if variants:
            walk({v: per_variant[v] for v in variants}, "")
        return pd.DataFrame(rows, columns=["setting", *variants]), common


def _show(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (dict, list)):
        return json.dumps(v, sort_keys=False)
    return "null" if v is None else str(v)
