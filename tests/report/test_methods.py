"""The Methods paragraph (from the runs' resolved configs) and the How-to-reproduce block (issue 30)."""

import pytest

from rlhfsim.report.load import load_study
from rlhfsim.report.methods import methods_paragraph, reproduction
from tests.fixtures.studies import make_study


def test_methods_paragraph_states_the_resolved_config(tmp_path):
    study = load_study([make_study(tmp_path)])
    cfg = study.runs[0].config
    text = methods_paragraph(study)
    assert f"World: {cfg['world']['name']}." in text and "Audits: on." in text
    assert (
        f"a {cfg['policy']['n_layer']}-layer transformer of width {cfg['policy']['n_embd']}" in text
        and "Loop: 3 rounds" in text
    )
    assert "Profile surgery" not in text  # surgery.profile none: no surgery, whatever the dial's default
    assert "KL coefficient 0.2 / 0.01 (by arm)" in text  # the arms differ in kl_coef: both values, marked
    assert "Seeds: 2 (0, 1); 2 arms" in text


def test_reproduction_block_names_the_experiment_commands_and_code(tmp_path):
    root = make_study(tmp_path)
    exp = tmp_path / "study.yaml"
    exp.write_text((root / "experiment.yaml").read_text())
    study = load_study([exp], runs_root=tmp_path / "runs")
    r = reproduction(study, "out/study", runs_root="my_runs")
    assert r["experiment"] == str(exp)
    assert r["commands"] == [
        f"rlhfsim sweep {exp} --jobs 2 --out my_runs",
        f"rlhfsim report {exp} --runs my_runs -o out/study",
    ]
    assert r["runs_code"][0].startswith("code ") and r["report_code"].startswith("code ")
    assert r["links"] == ["summary.csv", "effects.csv"]  # no README.md in out/study


@pytest.mark.slow  # a whole report build
def test_the_page_carries_methods_and_reproduction(tmp_path):
    from rlhfsim.cli import main

    root = make_study(tmp_path)
    out = tmp_path / "rep"
    assert main(["report", str(root), "-o", str(out)]) == 0
    html, md = (out / "report.html").read_text(), (out / "report.md").read_text()
    assert "<h2 id='methods'>Methods</h2>" in html and f"rlhfsim report {root} -o {out}" in html
    assert html.index("id='answer'") < html.index("id='methods'") < html.index("id='runs'")
    assert "## How to reproduce" in md and "[summary.csv](summary.csv)" in md


def test_the_per_seed_table_of_the_primary(tmp_path):
    from rlhfsim.report.answer import seed_section

    root = make_study(tmp_path)
    study = load_study([root])
    sec = seed_section(study)
    s = study.summary.set_index(["variant", "seed"])["gold_gain"]
    assert sec.header == ["run seed", "low_kl (baseline)", "high_kl − baseline"]
    assert sec.rows[1] == ["1", f"{s[('low_kl', 1)]:+.3f}", f"{s[('high_kl', 1)] - s[('low_kl', 1)]:+.3f}"]


@pytest.mark.slow  # a whole report build
def test_the_reproduction_command_regenerates_the_page_byte_identically(tmp_path):
    """The page's date is the runs' (newest metrics.jsonl), not the clock: the same command on the same runs writes
    the same report.md and CSVs, byte for byte (figures aside: their PNG bytes depend on the plotting library)."""
    import time

    from rlhfsim.cli import main

    root = make_study(tmp_path)
    outs = [tmp_path / "a", tmp_path / "b"]
    for out in outs:
        assert main(["report", str(root), "-o", str(out)]) == 0
        time.sleep(1.1)  # a clock-dated page would now differ
    texts = sorted(p.name for p in outs[0].iterdir() if p.suffix in (".md", ".csv"))
    assert "report.md" in texts and "summary.csv" in texts
    for name in texts:
        a = (outs[0] / name).read_bytes()
        b = (outs[1] / name).read_bytes().replace(str(outs[1]).encode(), str(outs[0]).encode())  # -o names the folder
        assert a == b, name
    assert "Runs last written 20" in (outs[0] / "report.md").read_text()


def test_methods_paragraph_names_pretrained_checkpoints(tmp_path):
    # a pretrained policy and proxy: their n_layer/n_embd are unused defaults, so the paragraph names the checkpoints
    study = load_study([make_study(tmp_path)])
    for r in study.runs:
        r.config["policy"].update(checkpoint="real:smollm2-135m-instruct", lora=None)
        r.config["reward"]["checkpoint"] = "real:minilm"
        r.config["world"]["dataset"] = "real:imdb"
    text = methods_paragraph(study)
    assert "Policy: the pretrained checkpoint real:smollm2-135m-instruct, full fine-tune" in text
    assert "the learned reward model is the pretrained checkpoint real:minilm with a score head" in text
    assert "(data real:imdb)" in text and "layer transformer of width" not in text
