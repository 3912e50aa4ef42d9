"""The lean tar reader (data/shards/tar.py) against the standard library's tarfile: the same regular files with the
same names and bytes, in every format tarfile writes (ustar, GNU, pax), long and non-ASCII names, empty members,
compressed tars; and a cut or corrupted tar is an error, never a wrong member."""

from __future__ import annotations

import io
import tarfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from videomae_cli.data.shards.tar import BLOCK, TarError, tar_members

NAME_PART = st.text(st.characters(min_codepoint=48, max_codepoint=0x4FF, exclude_characters="/\\"), min_size=1)
MEMBERS = st.lists(
    st.tuples(st.lists(NAME_PART, min_size=1, max_size=4).map("/".join), st.binary(max_size=1500)),
    max_size=6,
    unique_by=lambda member: member[0],
)


def tar_of(members: list[tuple[str, bytes]], form: int = tarfile.PAX_FORMAT, mode: str = "w", mtime=1.5) -> bytes:
    """A tar holding `members`, a folder entry first, written by tarfile."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode=mode, format=form) as tar:
        folder = tarfile.TarInfo("a-folder")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), mtime
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def read_by_tarfile(data: bytes) -> list[tuple[str, bytes]]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar if m.isreg()]


@settings(max_examples=60, deadline=None)
@given(MEMBERS, st.sampled_from([tarfile.PAX_FORMAT, tarfile.GNU_FORMAT]))
def test_every_regular_file_is_read_as_tarfile_reads_it(members: list[tuple[str, bytes]], form: int) -> None:
    data = tar_of(members, form)
    assert list(tar_members(io.BytesIO(data))) == read_by_tarfile(data) == members


def test_a_ustar_name_with_a_prefix_is_joined() -> None:
    name = "d" * 120 + "/" + "n" * 90 + ".mp4"  # longer than the 100-byte name field: split into prefix and name
    data = tar_of([(name, b"x")], tarfile.USTAR_FORMAT, mtime=1)
    assert list(tar_members(io.BytesIO(data))) == [(name, b"x")]


@pytest.mark.parametrize("mode", ["w:gz", "w:bz2", "w:xz"])
def test_a_compressed_tar_is_read_through_its_decompressor(mode: str) -> None:
    members = [("k1.mp4", b"v" * 700), ("k1.json", b"{}")]
    assert list(tar_members(io.BytesIO(tar_of(members, mode=mode)))) == members


def test_a_stream_handing_out_little_at_a_time_is_read_whole() -> None:
    class Trickle(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self.data = data

        def readable(self) -> bool:
            return True

        def read(self, size: int = -1) -> bytes:
            chunk, self.data = self.data[: min(size, 100)], self.data[min(size, 100) :]
            return chunk

    members = [("k.mp4", bytes(range(256)) * 9)]
    assert list(tar_members(Trickle(tar_of(members)))) == members


def test_webdatasets_meta_members_are_skipped() -> None:
    data = tar_of([("__key__", b"k"), ("k.mp4", b"v")])
    assert list(tar_members(io.BytesIO(data))) == [("k.mp4", b"v")]


def test_a_tar_cut_inside_a_member_is_an_error_after_the_members_before() -> None:
    data = tar_of([("a.mp4", b"a" * 600), ("b.mp4", b"b" * 600)], tarfile.GNU_FORMAT)
    read = []
    with pytest.raises(TarError, match="ends inside the member"):
        for member in tar_members(io.BytesIO(data[: 5 * BLOCK + 100])):
            read.append(member)
    assert read == [("a.mp4", b"a" * 600)]


def test_a_tar_cut_inside_a_header_is_an_error() -> None:
    data = tar_of([("a.mp4", b"a")], tarfile.GNU_FORMAT)
    with pytest.raises(TarError, match="inside a header"):
        list(tar_members(io.BytesIO(data[: BLOCK + 200])))


def test_a_corrupted_header_is_an_error() -> None:
    data = bytearray(tar_of([("a.mp4", b"a"), ("b.mp4", b"b")], tarfile.GNU_FORMAT))
    data[3 * BLOCK + 10] ^= 0xFF  # inside b.mp4's header name
    with pytest.raises(TarError, match="checksum"):
        list(tar_members(io.BytesIO(bytes(data))))


def test_bytes_that_are_no_tar_are_an_error() -> None:
    with pytest.raises(TarError):
        list(tar_members(io.BytesIO(b"\x00\x00\x00\x20ftypisom" + bytes(range(256)) * 4)))
