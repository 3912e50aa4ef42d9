"""A Hugging Face Hub cache laid out as huggingface_hub lays it, written by the tests (never the network):

HF_HUB_CACHE/models--ORG--NAME/
    blobs/<sha256>                          the file contents, once each
    snapshots/<commit>/<path> -> ../../blobs/<sha256>
    refs/<revision>                         the commit the branch or tag pointed at
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def add_to_hub_cache(cache: Path, repo_id: str, files: dict[str, Path], revision: str = "main") -> str:
    """Put `files` ({path in the repository: local file}) in `cache` as one commit of `repo_id`, `revision` pointing
    at it; the commit hash (40 hex digits, derived from the contents)."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    digest = hashlib.sha1(repo_id.encode())
    for name, source in sorted(files.items()):
        digest.update(name.encode() + source.read_bytes())
    commit = digest.hexdigest()
    for name, source in files.items():
        data = source.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = repo / "snapshots" / commit / name
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink():  # the same commit again under another ref
            link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / revision).write_text(commit)
    return commit


def hub_files(folder: Path) -> dict[str, Path]:
    """Every file of a model folder (a `save_pretrained` directory, say), by its path in the repository."""
    return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()}
