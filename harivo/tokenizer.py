"""A real CLIP BPE tokenizer for the shapes world.

`build_tokenizer_files(folder)` writes `vocab.json` + `merges.txt` in exactly the format of OpenAI CLIP /
`openai/clip-vit-large-patch14` (byte-level base alphabet, word-final tokens carrying ``</w>``, the special
tokens ``<|startoftext|>`` and ``<|endoftext|>`` last), so `transformers.CLIPTokenizer.from_pretrained` loads it
with no project code. The merges are learnt by plain BPE training on the world's vocabulary until every world
word is a single token; the 2 x 256 byte-level base symbols stay in the vocabulary, so any other word still
tokenizes (into several character-level tokens) instead of failing. Like Stable Diffusion, sequences are padded
with ``<|endoftext|>`` to ``model_max_length = 77``.
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from functools import lru_cache
from pathlib import Path

from harivo.data.shapes import world_vocabulary
from harivo.fileio import write_json, write_text

BOS = "<|startoftext|>"
EOS = "<|endoftext|>"
MODEL_MAX_LENGTH = 77
# CLIP's pre-tokenizer pattern (letters runs, single digits, punctuation runs), lower-cased input.
_WORD_RE = re.compile(r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[^\W\d_]+|\d|[^\s\w]+|_+""")


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte -> printable unicode character table (256 entries)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def _world_words() -> list[str]:
    """The default vocabulary: the shapes world's words (a leaf module of the data package; no cycle)."""
    return sorted({w.lower() for w in world_vocabulary()})


def _symbols(word: str) -> tuple[str, ...]:
    b2u = bytes_to_unicode()
    chars = [b2u[b] for b in word.encode("utf-8")]
    return tuple(chars[:-1]) + (chars[-1] + "</w>",)


def learn_merges(words: list[str]) -> list[tuple[str, str]]:
    """Plain BPE training (each word weighted once) until every word is a single symbol.

    Ties between equally frequent pairs are broken lexicographically so the result is deterministic.
    """
    segs = {w: list(_symbols(w)) for w in words}
    merges: list[tuple[str, str]] = []
    while True:
        counts: Counter = Counter()
        for s in segs.values():
            for a, b in zip(s, s[1:]):
                counts[(a, b)] += 1
        if not counts:
            return merges
        best = min(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0]
        merges.append(best)
        for w, s in segs.items():
            out, i = [], 0
            while i < len(s):
                if i + 1 < len(s) and (s[i], s[i + 1]) == best:
                    out.append(s[i] + s[i + 1])
                    i += 2
                else:
                    out.append(s[i])
                    i += 1
            segs[w] = out


def build_vocab_and_merges(words: list[str] | None = None) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """CLIP layout: 256 byte symbols, the same + '</w>', one entry per merge, then BOS and EOS."""
    words = _world_words() if words is None else sorted({w.lower() for w in words})
    base = list(bytes_to_unicode().values())
    tokens = base + [c + "</w>" for c in base]
    merges = learn_merges(words)
    seen = set(tokens)
    for a, b in merges:
        if a + b not in seen:
            tokens.append(a + b)
            seen.add(a + b)
    tokens += [BOS, EOS]
    return {t: i for i, t in enumerate(tokens)}, merges


def build_tokenizer_files(folder: str | Path, words: list[str] | None = None) -> Path:
    """Write vocab.json, merges.txt, tokenizer_config.json and special_tokens_map.json into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab, merges = build_vocab_and_merges(words)
    write_text(folder / "vocab.json", json.dumps(vocab, ensure_ascii=False) + "\n")
    write_text(folder / "merges.txt", "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    write_json(folder / "special_tokens_map.json", {"bos_token": BOS, "eos_token": EOS, "pad_token": EOS, "unk_token": EOS})
    write_json(
        folder / "tokenizer_config.json",
        {
            "tokenizer_class": "CLIPTokenizer",
            "model_max_length": MODEL_MAX_LENGTH,
            "bos_token": BOS,
            "eos_token": EOS,
            "pad_token": EOS,
            "unk_token": EOS,
            "do_lower_case": True,
            "clean_up_tokenization_spaces": False,
        },
    )
    return folder


def load_tokenizer(folder: str | Path):
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(str(folder), model_max_length=MODEL_MAX_LENGTH)


def build_tokenizer(folder: str | Path, words: list[str] | None = None):
    """Write the tokenizer files into `folder` and load them as a `transformers.CLIPTokenizer`."""
    return load_tokenizer(build_tokenizer_files(folder, words))


# transformers 5's tokenizers keep padding/truncation as state of the shared Rust backend and set it on every
# call, so two threads tokenizing at once (the app's input check beside a generation) can get each other's
# padding: a 77-token call returned 11 tokens. Every call into a tokenizer goes through this lock.
_TOKENIZER_LOCK = threading.Lock()


def token_ids(tokenizer, texts):
    """(n, M) input ids as the SD / AnimateDiff pipelines make them: padded to the tokenizer's max length,
    truncated, no attention mask. `texts`: one string or a list. Thread-safe."""
    with _TOKENIZER_LOCK:
        return tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                         return_tensors="pt").input_ids


def token_count(tokenizer, text: str) -> int:
    """Number of tokens of `text` with <sot>/<eot>, unpadded and untruncated. Thread-safe."""
    with _TOKENIZER_LOCK:
        return len(tokenizer(text).input_ids)


def token_pieces(tokenizer, text: str) -> list[str]:
    """`tokenizer.tokenize(text)`, thread-safe."""
    with _TOKENIZER_LOCK:
        return tokenizer.tokenize(text)


def split_words(prompt: str) -> list[str]:
    """The prompt's words as CLIP's pre-tokenizer splits them (lower-cased)."""
    return _WORD_RE.findall(re.sub(r"\s+", " ", prompt.lower()))


def unknown_words(prompt: str, vocabulary: list[str] | None = None) -> list[str]:
    """Words of `prompt` that are not in the shapes-world vocabulary, in order, without duplicates."""
    known = set(_world_words() if vocabulary is None else (w.lower() for w in vocabulary))
    out: list[str] = []
    for w in split_words(prompt):
        if not any(c.isalnum() for c in w):
            continue  # punctuation is not a word
        if w not in known and w not in out:
            out.append(w)
    return out
