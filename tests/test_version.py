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
