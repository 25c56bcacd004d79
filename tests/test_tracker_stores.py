"""Reading tracker stores back: the W&B offline transaction log parser (records split over 32 KiB blocks, torn tails)
and the figure caption that carries a W&B image's round."""

import json
import struct

import pytest

from rlhfsim import tracker_stores as S


def _leveldb_log(payloads, block=32768):
    """A W&B transaction log written by hand: the file header, then records split over 32 KiB blocks."""
    out = bytearray(b":W&B" + struct.pack("<HB", 0xBEE1, 0))
    for p in payloads:
        first = True
        while True:
            left = block - len(out) % block
            if left < 7:
                out += b"\0" * left
                continue
            chunk, p = p[: left - 7], p[left - 7 :]
            kind = (1 if not p else 2) if first else (4 if not p else 3)
            out += struct.pack("<IHB", 0, len(chunk), kind) + chunk
            first = False
            if not p:
                break
    return bytes(out)


def test_wandb_log_reader_reassembles_records_across_blocks(tmp_path):
    payloads = [b"a" * 10, bytes(range(256)) * 300, b"", b"z" * 32761, b"tail"]  # 76.8 KiB spans three blocks
    f = tmp_path / "run-x.wandb"
    f.write_bytes(_leveldb_log(payloads))
    assert list(S._wandb_records(f)) == payloads
    f.write_bytes(_leveldb_log(payloads)[:-2])  # a torn last record is dropped, the rest read
    assert list(S._wandb_records(f)) == payloads[:-1]


def test_wandb_history_rows_rebuild_logged_dicts(tmp_path):
    """An image logs as one history item per leaf (nested_key = its path): read back as the dict it was."""
    pytest.importorskip("wandb")
    from wandb.proto import wandb_internal_pb2 as pb

    rec = pb.Record()
    for path, value in ((["round"], 3), (["fig"], None), (["img", "_type"], "image-file"), (["img", "size", "w"], 720)):
        it = rec.history.item.add()
        if len(path) == 1 and value is not None:
            it.key = path[0]
        else:
            it.nested_key.extend(path)
        it.value_json = json.dumps(value)
    f = tmp_path / "offline-run-1-abc" / "run-abc.wandb"
    f.parent.mkdir()
    f.write_bytes(_leveldb_log([rec.SerializeToString()]))
    assert S.read_wandb(tmp_path, "abc") == [
        {"round": 3, "fig": None, "img": {"_type": "image-file", "size": {"w": 720}}}
    ]


def test_image_caption_carries_the_round():
    assert [S.caption_step(S.image_caption(r)) for r in (0, 3, 120)] == [0, 3, 120]
    assert S.caption_step(None) is None and S.caption_step("no round here") is None
