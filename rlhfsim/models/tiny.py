"""Tiny random checkpoints and a small prompt dataset, written locally with `save_pretrained`.

Tests (and offline smoke runs) load them through the same `from_pretrained` code as real hub checkpoints, with
three different tokenizers: byte-level BPE (GPT-2), BPE with BOS and a chat template (Llama-style) and
WordPiece with [CLS]/[SEP] pair encoding (DeBERTa-v2).

    python -m rlhfsim.models.tiny OUT_DIR      # OUT_DIR/{gpt2,llama,deberta,gold}/ and OUT_DIR/prompts.jsonl
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

TOPICS = ["ocean", "forest", "city", "music", "space", "bread", "rain", "chess"]
CLOSED = [
    ("What is two plus two?", "four"),
    ("What color is the sky?", "blue"),
    ("How many legs has a cat?", "four"),
    ("What is the capital of France?", "Paris"),
    ("Who wrote Hamlet?", "Shakespeare"),
    ("What is frozen water?", "ice"),
]
CHAT_TEMPLATE = "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"


def prompt_rows(n_open: int = 24) -> list[dict]:
    """Open prompts ('Write about X.') with long answers, closed questions with one-word answers."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n_open):
        t = TOPICS[i % len(TOPICS)]
        words = [t] + [str(w) for w in rng.choice(TOPICS, size=int(rng.integers(3, 9)))]
        rows.append({"prompt": f"Write a few words about {t}, take {i}.", "type": "open", "answer": " ".join(words)})
    rows += [{"prompt": q, "type": "closed", "answer": a} for q, a in CLOSED]
    return rows


def corpus() -> list[str]:
    return [f"{r['prompt']} {r['answer']}" for r in prompt_rows()] * 4


def bpe_tokenizer(
    specials: list[str], vocab_size: int, bos: str | None, eos: str, pad: str | None, chat_template: str | None = None
):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.train_from_iterator(
        corpus(),
        trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    if bos is not None:  # Llama-style: the tokenizer puts BOS in front of every encoded text
        core.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, core.token_to_id(bos))]
        )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token=bos, eos_token=eos, pad_token=pad, clean_up_tokenization_spaces=False
    )
    if chat_template:
        tok.chat_template = chat_template
    return tok


def wordpiece_tokenizer():
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    core = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    core.normalizer = normalizers.BertNormalizer(lowercase=True)
    core.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    core.train_from_iterator(
        corpus(), trainers.WordPieceTrainer(vocab_size=200, special_tokens=specials, show_progress=False)
    )
    cls, sep = core.token_to_id("[CLS]"), core.token_to_id("[SEP]")
    core.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        clean_up_tokenization_spaces=False,
    )


def build_all(out: str | Path, width: int = 32) -> dict[str, str]:
    """Write gpt2 (causal LM), llama (causal LM, chat template), deberta (sequence classifier), gold (Llama-style
    sequence classifier on the GPT-2 tokenizer) and prompts.jsonl under `out`; returns name -> path."""
    from transformers import (
        DebertaV2Config,
        DebertaV2ForSequenceClassification,
        GPT2Config,
        GPT2LMHeadModel,
        LlamaConfig,
        LlamaForCausalLM,
        LlamaForSequenceClassification,
    )
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    out = Path(out)
    paths = {k: out / k for k in ("gpt2", "llama", "deberta", "gold")}
    gpt_tok = bpe_tokenizer(["<|endoftext|>"], 300, None, "<|endoftext|>", None)
    llama_tok = bpe_tokenizer(
        ["<unk>", "<s>", "</s>", "<|user|>", "<|assistant|>"], 280, "<s>", "</s>", "<unk>", CHAT_TEMPLATE
    )
    deb_tok = wordpiece_tokenizer()
    head = dict(num_hidden_layers=1, num_attention_heads=2, hidden_size=width, intermediate_size=2 * width)
    torch.manual_seed(0)
    models = {
        "gpt2": (
            GPT2LMHeadModel(
                GPT2Config(
                    vocab_size=len(gpt_tok),
                    n_positions=256,
                    n_embd=width,
                    n_layer=1,
                    n_head=2,
                    bos_token_id=gpt_tok.eos_token_id,
                    eos_token_id=gpt_tok.eos_token_id,
                )
            ),
            gpt_tok,
        ),
        "llama": (
            LlamaForCausalLM(
                LlamaConfig(
                    vocab_size=len(llama_tok),
                    max_position_embeddings=256,
                    num_key_value_heads=1,
                    bos_token_id=llama_tok.bos_token_id,
                    eos_token_id=llama_tok.eos_token_id,
                    pad_token_id=llama_tok.pad_token_id,
                    **head,
                )
            ),
            llama_tok,
        ),
        "deberta": (
            DebertaV2ForSequenceClassification(
                DebertaV2Config(
                    vocab_size=len(deb_tok),
                    max_position_embeddings=256,
                    num_labels=1,
                    pad_token_id=deb_tok.pad_token_id,
                    **head,
                )
            ),
            deb_tok,
        ),
        "gold": (
            LlamaForSequenceClassification(
                LlamaConfig(
                    vocab_size=len(gpt_tok),
                    max_position_embeddings=256,
                    num_key_value_heads=1,
                    num_labels=1,
                    pad_token_id=gpt_tok.eos_token_id,
                    **head,
                )
            ),
            gpt_tok,
        ),
    }
    for name, (model, tok) in models.items():
        model.save_pretrained(paths[name])
        tok.save_pretrained(paths[name])
    with open(out / "prompts.jsonl", "w") as f:
        for row in prompt_rows():
            f.write(json.dumps(row) + "\n")
    return {**{k: str(v) for k, v in paths.items()}, "prompts": str(out / "prompts.jsonl")}


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m rlhfsim.models.tiny OUT_DIR")
    for k, v in build_all(sys.argv[1]).items():
        print(f"{k}: {v}")
