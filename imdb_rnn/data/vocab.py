"""Token <-> id mapping built from the training split; stored as vocab.json (the id -> token list)."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Iterable, Optional

from imdb_rnn.errors import UserError
from imdb_rnn.files import write_text

PAD = "<PAD>"
UNK = "<UNK>"


class Vocab:
    def __init__(self, itos: list[str]) -> None:
        if itos[:2] != [PAD, UNK]:
            raise ValueError("a vocabulary starts with <PAD>, <UNK>")
        self.itos = list(itos)
        self.stoi = {t: i for i, t in enumerate(self.itos)}
        self.pad_id = 0
        self.unk_id = 1

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, tokens: list[str]) -> list[int]:
        get, unk = self.stoi.get, self.unk_id
        return [get(t, unk) for t in tokens]

    def sha256(self) -> str:
        return hashlib.sha256(json.dumps(self.itos, ensure_ascii=False).encode()).hexdigest()

    def save(self, path: Path) -> None:
        write_text(path, json.dumps(self.itos, ensure_ascii=False))

    @classmethod
    def load(cls, path: Path) -> "Vocab":
        """Raises UserError when the file is missing or not a vocabulary."""
        try:
            itos = json.loads(Path(path).read_text(encoding="utf-8"))
            if not isinstance(itos, list) or not all(isinstance(t, str) for t in itos):
                raise ValueError("not a list of tokens")
            return cls(itos)
        except (OSError, ValueError) as e:  # JSONDecodeError is a ValueError
            raise UserError(f"vocabulary {path} is missing or unreadable ({e}); retrain, or restore the file") from e


def build_vocab(token_lists: Iterable[list[str]], min_freq: int = 1, max_size: Optional[int] = None) -> Vocab:
    """Most frequent first (ties alphabetical, so the result never depends on input order)."""
    counts = Counter()
    for tokens in token_lists:
        counts.update(tokens)
    words = sorted((w for w, c in counts.items() if c >= min_freq), key=lambda w: (-counts[w], w))
    if max_size is not None:
        words = words[: max_size - 2]
    return Vocab([PAD, UNK] + words)
