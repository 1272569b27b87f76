"""The shapes-world CLIP tokenizer: a real transformers.CLIPTokenizer built from the world vocabulary."""

import json
import threading

import pytest

from harivo.data.shapes import ShapeSpec, world_vocabulary
from harivo.tokenizer import BOS, EOS, build_tokenizer, token_count, token_ids, token_pieces, unknown_words


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return build_tokenizer(tmp_path_factory.mktemp("tok"))


def test_files_are_clip_format(tok, tmp_path_factory):
    folder = build_tokenizer(tmp_path_factory.mktemp("tok2")).name_or_path
    from pathlib import Path

    vocab = json.loads((Path(folder) / "vocab.json").read_text())
    merges = (Path(folder) / "merges.txt").read_text().splitlines()
    assert merges[0].startswith("#version")
    assert all(len(m.split(" ")) == 2 for m in merges[1:])
    assert "a</w>" in vocab and "circle</w>" in vocab and "z" in vocab and "z</w>" in vocab
    assert list(vocab)[-2:] == [BOS, EOS]
    assert len(vocab) >= 512 + 2


def test_every_world_word_is_one_token(tok):
    for w in world_vocabulary():
        ids = tok(w, add_special_tokens=False).input_ids
        assert len(ids) == 1, (w, tok.convert_ids_to_tokens(ids))
        assert tok.convert_ids_to_tokens(ids)[0] == w + "</w>"


def test_caption_padding_and_round_trip(tok):
    cap = ShapeSpec("orange", "star", "moving left to right", "blue").caption
    enc = tok(cap, padding="max_length", max_length=tok.model_max_length, truncation=True)
    ids = enc.input_ids
    assert tok.model_max_length == 77 and len(ids) == 77
    n_words = len(cap.split())
    assert ids[0] == tok.bos_token_id and ids[n_words + 1] == tok.eos_token_id
    assert all(i == tok.eos_token_id for i in ids[n_words + 1:])  # padded with <|endoftext|> like SD
    assert tok.pad_token == EOS
    assert tok.decode(ids, skip_special_tokens=True) == cap
    assert tok.decode(tok("A  RED circle").input_ids, skip_special_tokens=True) == "a red circle"  # lower-cased


def test_unknown_word_becomes_several_character_tokens(tok):
    ids = tok("zebra", add_special_tokens=False).input_ids
    assert len(ids) > 1
    assert tok.unk_token_id not in ids  # every byte is in the vocabulary: nothing maps to <unk>
    assert tok.decode(ids) == "zebra"
    assert unknown_words("A zebra is moving, left to the Moon!") == ["zebra", "the", "moon"]
    assert unknown_words("a red circle is spinning on a gray background") == []


def test_loads_with_stock_transformers(tok, tmp_path):
    from transformers import CLIPTokenizer

    tok.save_pretrained(tmp_path)
    again = CLIPTokenizer.from_pretrained(tmp_path)
    cap = "a white triangle is getting closer on a black background"
    assert again(cap).input_ids == tok(cap).input_ids


def test_tokenizing_from_threads_keeps_each_calls_padding(tok):
    """The app checks a prompt's length (unpadded) while another request encodes its prompt (padded to 77).
    transformers' tokenizers hold padding as shared backend state; unguarded, 10 of 600 padded calls here came
    back 11 tokens long (CI: a generation failed on a 77-vs-12 concat)."""
    prompt, short = "a red circle moving left on a gray background", "a blue square"
    shapes, counts, pieces = [], [], []

    def padded():
        for _ in range(300):
            shapes.append(tuple(token_ids(tok, prompt).shape))

    def unpadded():
        for _ in range(300):
            counts.append(token_count(tok, short))
            pieces.append(len(token_pieces(tok, short)))

    threads = [threading.Thread(target=f) for f in (padded, unpadded, padded, unpadded)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(shapes) == {(1, 77)}
    assert set(counts) == {3 + 2} and set(pieces) == {3}
