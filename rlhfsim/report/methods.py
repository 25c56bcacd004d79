"""What a reader needs to reproduce and to read a page: the reproduction block and a methods paragraph written from
the runs' resolved configs (issue 30), instead of the ~150 config keys of "Settings common to all variants".

    reproduction(study, out_dir, runs_root)   {experiment, commands, code, links}
    methods_paragraph(study)                  one paragraph: world, model sizes, reward source, optimiser, rounds, seeds
"""

from __future__ import annotations

from pathlib import Path

from rlhfsim.version import code_version, source_hash


def _get(cfg: dict, key: str):
    node = cfg
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _values(study, key: str) -> list:
    """The distinct values of a dotted config key over the runs, in first-seen order."""
    out = []
    for r in study.runs:
        if r.config is not None:
            v = _get(r.config, key)
            if v not in out:
                out.append(v)
    return out


def _one(study, key: str, fmt=str) -> str:
    vals = _values(study, key)
    if not vals:
        return "?"
    return fmt(vals[0]) if len(vals) == 1 else " / ".join(fmt(v) for v in vals) + " (by arm)"


def _model(study, section: str) -> str:
    """A policy's or reward model's description: the named checkpoint (a pretrained model: n_layer/n_embd are then
    unused config defaults, not its size) or the from-scratch transformer's size."""
    ckpts = _values(study, f"{section}.checkpoint")
    if any(ckpts):
        lora = [v for v in _values(study, f"{section}.lora") if v]
        how = f", LoRA r = {' / '.join(str(v.get('r', '?')) for v in lora)}" if lora else ", full fine-tune"
        return f"the pretrained checkpoint {' / '.join(map(str, ckpts))}" + (how if section == "policy" else "")
    return (
        f"a {_one(study, f'{section}.n_layer')}-layer transformer of width {_one(study, f'{section}.n_embd')} "
        f"({_one(study, f'{section}.n_head')} heads)"
    )


def methods_paragraph(study) -> str:
    """World, policy and reward-model sizes, the reward sources, optimisers, rounds, prompts, evaluation and seeds."""
    if not any(r.config is not None for r in study.runs):
        return "No run config was found: the methods cannot be stated."
    seeds = sorted({r.seed for r in study.runs if r.seed is not None})
    sources = _values(study, "loop.reward_source")
    backbones = _values(study, "reward.backbone")
    offline = _values(study, "reward.offline.comparisons")
    parts = [
        f"World: {_one(study, 'world.name')}"
        + (f" (data {_one(study, 'world.dataset')})" if any(_values(study, "world.dataset")) else "")
        + ".",
        f"Policy: {_model(study, 'policy')}, responses up to {_one(study, 'policy.response_len')} tokens.",
        f"Reward: source {' / '.join(map(str, sources))}"
        + (
            f"; the learned reward model is {_model(study, 'reward')} with a score head "
            f"(backbone {' / '.join(map(str, backbones))}, {' / '.join(map(str, offline))} offline comparisons)"
            if any(s in (None, "learned") for s in sources)
            else ""
        )
        + ".",
        f"Optimiser: {_one(study, 'optimizer.name')}, KL coefficient {_one(study, 'optimizer.kl_coef')}, "
        f"{_one(study, 'optimizer.iterations')} iterations a round of {_one(study, 'optimizer.batch_size')} completions "
        f"(groups of {_one(study, 'optimizer.group_size')}).",
        f"Loop: {_one(study, 'loop.rounds')} rounds of {_one(study, 'loop.prompts_per_round')} prompts x "
        f"{_one(study, 'loop.completions_per_prompt')} completions ranked by the simulated annotator; evaluation on "
        f"{_one(study, 'loop.eval_prompts')} held-out prompts x {_one(study, 'loop.eval_completions')} samples every round.",
    ]
    dials, profiles = _values(study, "surgery.dial"), _values(study, "surgery.profile")
    if any(d not in (None, 0, 0.0) for d in dials) and any(pr not in (None, "none") for pr in profiles):
        parts.append(
            f"Profile surgery: {_one(study, 'surgery.profile')} profile at dial {_one(study, 'surgery.dial')}."
        )
    audits = _values(study, "audit.enabled")
    parts.append(f"Audits: {'on' if audits == [True] else 'off' if audits == [False] else 'on in some arms'}.")
    parts.append(
        f"Seeds: {len(seeds)} ({', '.join(map(str, seeds))}); {len(study.variants)} arms; "
        "arms of a seed share the SFT policy, the world and the held-out prompts."
    )
    return " ".join(parts)


def reproduction(study, out_dir, runs_root: str | None = None) -> dict:
    """The experiment file, the sweep and report commands (paths as the report was given them; a borrowed arm's lender
    sweeps first), which arms are borrowed from which file, the code that wrote the runs and the code that wrote the
    page, and the page's files."""
    out = Path(out_dir)
    exp = next((s for s in study.sources if str(s).endswith((".yaml", ".yml"))), None)
    runs = f" --runs {runs_root}" if runs_root and runs_root != "runs" and exp else ""
    commands = [f"rlhfsim sweep {exp} --jobs 2" + (f" --out {runs_root}" if runs else "")] if exp else []
    lenders = list(dict.fromkeys(b["sweep"] for b in study.borrowed.values()))
    commands = lenders + commands  # a lender's sweep first: the report refuses a borrowed arm with unfinished runs
    commands.append(f"rlhfsim report {' '.join(map(str, study.sources))}{runs} -o {out_dir}")
    borrowed = [
        f"Arm {arm} is borrowed: its runs are {b['file']}'s arm {b['variant']} ({b['runs']}/), run by that file's sweep"
        for arm, b in study.borrowed.items()
    ]
    code = sorted(study.versions())
    links = [f for f in ("summary.csv", "effects.csv", "README.md") if (out / f).exists() or f != "README.md"]
    return {
        "experiment": exp or "(no experiment file: run directories given)",
        "commands": commands,
        "runs_code": code or ["(no run has a summary.json)"],
        "report_code": f"code {source_hash()} (git {code_version()})",
        "links": links,
        "borrowed": borrowed,
    }


# ----------------------------------------------------------------------------- the page's Methods and How-to-reproduce blocks


def _esc(x) -> str:
    import html

    return html.escape(str(x))


def md_methods(ctx) -> list[str]:
    if "methods" not in ctx:
        return []
    r = ctx["repro"]
    return (
        [
            "## Methods",
            "",
            ctx["methods"],
            "",
            "## How to reproduce",
            "",
            f"Experiment file: `{r['experiment']}`",
            "",
            *[f"{line}." for line in r.get("borrowed", [])],
            *([""] if r.get("borrowed") else []),
            "```bash",
        ]
        + r["commands"]
        + [
            "```",
            "",
            "Runs written by: " + "; ".join(r["runs_code"]) + f". Page written by {r['report_code']}.",
            "",
            "Files: " + ", ".join(f"[{f}]({f})" for f in r["links"]),
            "",
        ]
    )


def html_methods(ctx) -> str:
    if "methods" not in ctx:
        return ""
    r = ctx["repro"]
    return (
        f"<h2 id='methods'>Methods</h2><p>{_esc(ctx['methods'])}</p><h2 id='reproduce'>How to reproduce</h2>"
        f"<p>Experiment file: <code>{_esc(r['experiment'])}</code></p>"
        + "".join(f"<p>{_esc(line)}.</p>" for line in r.get("borrowed", []))
        + f"<pre>{_esc(chr(10).join(r['commands']))}</pre>"
        f"<p class='note'>Runs written by: {_esc('; '.join(r['runs_code']))}. Page written by {_esc(r['report_code'])}.</p>"
        "<p>Files: " + ", ".join(f"<a href='{_esc(f)}'>{_esc(f)}</a>" for f in r["links"]) + "</p>"
    )
