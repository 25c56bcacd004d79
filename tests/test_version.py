"""The code stamp a run records in summary.json."""

from rlhfsim import version


def test_stamp_fields_and_hash_ignores_report_code(tmp_path, monkeypatch):
    s = version.stamp()
    assert set(s) == {"code_version", "code_hash", "metric_schema"} and len(s["code_hash"]) == 12
    # a copied tree: the hash follows run code, not the report package
    pkg = tmp_path / "rlhfsim"
    (pkg / "report").mkdir(parents=True)
    (pkg / "loop.py").write_text("x = 1\n")
    (pkg / "report" / "render.py").write_text("y = 1\n")
    monkeypatch.setattr(version, "PACKAGE_DIR", pkg)
    h0 = version.source_hash.__wrapped__()
    (pkg / "report" / "render.py").write_text("y = 2\n")
    assert version.source_hash.__wrapped__() == h0
    (pkg / "loop.py").write_text("x = 2\n")
    assert version.source_hash.__wrapped__() != h0


def test_code_version_is_dirty_only_when_run_code_differs_from_the_commit(tmp_path, monkeypatch):
    import subprocess

    pkg = tmp_path / "rlhfsim"
    (pkg / "report").mkdir(parents=True)
    (pkg / "loop.py").write_text("x = 1\n")
    (pkg / "report" / "render.py").write_text("y = 1\n")
    (tmp_path / "README.md").write_text("z\n")
    git = lambda *a: subprocess.run(
        ["git", "-c", "user.email=t@t", "-c", "user.name=t", *a],
        cwd=tmp_path,
        check=True,  # noqa: E731
        capture_output=True,
    )
    git("init", "-q"), git("add", "-A"), git("commit", "-qm", "c")
    monkeypatch.setattr(version, "PACKAGE_DIR", pkg)
    clean = version.code_version.__wrapped__()
    assert not clean.endswith("-dirty")
    (pkg / "report" / "render.py").write_text("y = 2\n")  # report code and docs do not make a run's code dirty
    (tmp_path / "README.md").write_text("zz\n")
    assert version.code_version.__wrapped__() == clean
    (pkg / "loop.py").write_text("x = 2\n")
    assert version.code_version.__wrapped__() == clean + "-dirty"
