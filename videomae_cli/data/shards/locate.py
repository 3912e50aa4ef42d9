"""Which shards `data.source` names, and their index.

A source is shards when it is a folder holding a shards `index.json` (what `prepare-data --shards` writes in
OUT/shards/), or names tar shards: a brace pattern (`/data/train-{000000..000127}.tar`), `::`-separated lists, or
URLs that webdataset opens (`pipe:COMMAND` whose output is the tar, `http(s)://`). A pattern or URLs need the index:
`data.shard_index` (a path or any such URL), else `index.json` beside the first shard when it is a local file. Each
shard is found in the index by its file name, which gives its sample count and the id of its first sample.
"""

from __future__ import annotations

import json
import re
from pathlib import Path, PurePosixPath

import braceexpand

from videomae_cli.data.shards.index import INDEX_FILE, Shard, ShardIndex, read_index
from videomae_cli.errors import ConfigError

_URL = re.compile(r"^(pipe:|https?://|gs://|s3://|file:)")


def is_shard_source(source: str) -> bool:
    """Whether `data.source` names shards rather than the synthetic videos or a manifest."""
    if source == "synthetic":
        return False
    if _URL.match(source) or "::" in source or (".tar" in source and "{" in source):
        return True
    path = Path(source)
    return path.suffix == ".tar" or (path.is_dir() and _is_index(path / INDEX_FILE))


def locate_shards(
    source: str, split: str, index_ref: str | None = None, field: str = "data.source"
) -> tuple[list[Shard], ShardIndex]:
    """The shards of `split` that `source` names, in order, with their index; ConfigError naming `field` (where
    `source` came from) or data.shard_index."""
    folder = Path(source)
    if _is_folder(source):
        index = _load(folder / INDEX_FILE, field)
        urls = [str(folder / shard.name) for shard in index.splits.get(split, [])]
        return _shards_in(index, split, urls, field), index
    urls = [url for part in source.split("::") for url in braceexpand.braceexpand(part)]
    index = _load(_index_for(urls, index_ref), "data.shard_index" if index_ref else field)
    return _shards_in(index, None, urls, field), index


def shards_in_order(sources: list[str], field: str) -> list[Shard]:
    """Every shard that `sources` name, in the order given (a shards folder: each of its splits, in the index's
    order), each sample's id renumbered to its position in that order: what `predict` and `embed` read."""
    shards: list[Shard] = []
    for source in sources:
        if _is_folder(source):
            index = _load(Path(source) / INDEX_FILE, field)
            splits = [split for split, infos in index.splits.items() if infos]
            shards += [shard for split in splits for shard in locate_shards(source, split, None, field)[0]]
        else:
            shards += locate_shards(source, "", None, field)[0]
    first, renumbered = 0, []
    for shard in shards:
        renumbered.append(Shard(shard.url, shard.samples, first))
        first += shard.samples
    return renumbered


def _is_folder(source: str) -> bool:
    return not _URL.match(source) and Path(source).is_dir()


def _index_for(urls: list[str], index_ref: str | None) -> str | Path:
    if index_ref:
        return index_ref
    first = urls[0]
    if _URL.match(first) and not first.startswith("file:"):
        raise ConfigError(
            f"data.shard_index: {first} is not a local file, so the index cannot be found beside it; give "
            "data.shard_index (the index.json that prepare-data wrote, as a path or URL)"
        )
    return Path(first.removeprefix("file:")).parent / INDEX_FILE


def _shards_in(index: ShardIndex, split: str | None, urls: list[str], field: str) -> list[Shard]:
    """Each URL's shard, with its sample count and first sample id from the index (ids count over the index's
    shards of that split, in the index's order)."""
    known: dict[str, tuple[int, int]] = {}
    for shards in index.splits.values():
        first = 0
        for shard in shards:
            known[shard.name] = (shard.samples, first)
            first += shard.samples
    if split is not None and not urls:
        raise ConfigError(f"{field}: the shards index has no {split!r} split (it has {', '.join(index.splits)})")
    found = []
    for url in urls:
        name = shard_name(url)
        if name not in known:
            raise ConfigError(f"{field}: {url}: no shard named {name} in the index")
        samples, first = known[name]
        found.append(Shard(url, samples, first))
    return found


def shard_name(url: str) -> str:
    """The file name a shard URL ends in: `pipe:aws s3 cp s3://b/train-000001.tar -` → `train-000001.tar`."""
    if url.startswith("pipe:"):
        tars = [token for token in url[5:].split() if ".tar" in token]
        url = tars[-1] if tars else url
    return PurePosixPath(url.split("?")[0]).name


def _load(where: str | Path, field: str) -> ShardIndex:
    if isinstance(where, Path) or not _URL.match(where):
        try:
            return read_index(Path(where))
        except ValueError as e:
            raise ConfigError(f"{field}: {e}") from None
    import webdataset as wds  # loads only for an index read from a URL

    try:
        with wds.gopen(where, "rb") as stream:
            data = json.loads(stream.read())
        return ShardIndex.from_json(data, where)
    except (OSError, ValueError) as e:
        raise ConfigError(f"{field}: cannot read the index {where} ({e})") from None


def _is_index(path: Path) -> bool:
    try:
        read_index(path)
    except ValueError:
        return False
    return True
