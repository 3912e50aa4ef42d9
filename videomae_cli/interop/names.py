"""Rename tables between checkpoint layouts: (source, destination) name pairs, applied per key.

A pair whose source ends in "." renames every key under it; any other pair renames one exact name. Transformer
blocks are matched by prefix with the block index carried across, so one table entry serves every block.
"""

from __future__ import annotations

Pairs = tuple[tuple[str, str], ...]


def split_block_key(key: str, prefixes: Pairs) -> tuple[str, str] | None:
    """A block key → (the other layout's prefix with the block index, the rest of the name); None for other keys."""
    for src, dst in prefixes:
        if key.startswith(src):
            index, _, rest = key[len(src) :].partition(".")
            if index.isdigit():
                return f"{dst}{index}.", rest
    return None


def rename(name: str, pairs: Pairs) -> str | None:
    """Apply the first matching (src, dst) pair: exact names, or prefixes ending in "."; None when none matches."""
    for src, dst in pairs:
        if name == src or (src.endswith(".") and name.startswith(src)):
            return dst + name[len(src) :]
    return None


def swap(pairs: Pairs) -> Pairs:
    """The table for the opposite direction."""
    return tuple((dst, src) for src, dst in pairs)


def count_blocks(state_dict: dict[str, object], prefix: str) -> int:
    """How many consecutive blocks `prefix{i}.` the state dict holds."""
    indices = {key[len(prefix) :].split(".")[0] for key in state_dict if key.startswith(prefix)}
    return len({int(i) for i in indices if i.isdigit()})
