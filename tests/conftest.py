import os

import pytest
import torch

# Two cores: one intra-op thread per test process keeps timings sane under pytest-xdist.
torch.set_num_threads(max(1, min(2, (os.cpu_count() or 2) // 2)))


@pytest.fixture(scope="session")
def sft_cache(tmp_path_factory):
    """One SFT cache for the whole session, so tiny runs share their warm start."""
    return str(tmp_path_factory.mktemp("sft_cache"))


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory):
    """Tiny random checkpoints (GPT-2, Llama-style with a chat template, DeBERTa-v2 classifier, a Llama-style gold
    classifier; three different tokenizers) and prompts.jsonl, saved with save_pretrained once per session."""
    from rlhfsim.models.tiny import build_all

    return build_all(tmp_path_factory.mktemp("tiny_checkpoints"))


# ----------------------------------------------------------------------------- fabricated studies (tests/fixtures)


@pytest.fixture
def study_root(tmp_path):
    """A fresh fabricated A/B study (tests/fixtures/studies.make_study) a test may edit."""
    from tests.fixtures.studies import make_study

    return make_study(tmp_path)


@pytest.fixture(scope="session")
def ab_report(tmp_path_factory):
    """(study root, report dir) of make_study's study, reported once per session; tests only read it."""
    from tests.fixtures.studies import built_report, make_study

    return built_report(tmp_path_factory, "ab", make_study)
