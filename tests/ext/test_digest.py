"""MultiDigest / crc / combine: published check values, twins agree, buffer handling."""

from __future__ import annotations

import array
import hashlib
import itertools
import mmap
import os
import random
import threading
import zlib
from types import ModuleType

import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers.twins import load_twin

pytestmark = pytest.mark.twins
"""Each twin is loaded by name, whatever twin the environment selected: run once, in the
first pass of ``make pytest`` (see the README, "The compiled extension and its twins")."""

CRCS = ("crc32", "crc32c", "crc64xz", "crc64nvme")
HASHES = ("sha1", "sha256", "xxh3_128")
EVERYTHING = CRCS + HASHES
WIDTH = {"crc32": 32, "crc32c": 32, "crc64xz": 64, "crc64nvme": 64}

# Published check values (CRC catalogue: CRC of b"123456789").
CHECK = {
    "crc32": 0xCBF43926,
    "crc32c": 0xE3069283,
    "crc64xz": 0x995DC9BBDF1939FA,
    "crc64nvme": 0xAE8B14860A799888,
}

# RFC 3720 (iSCSI) B.4 CRC-32C examples.
ISCSI = [
    (bytes(32), 0x8A9136AA),
    (b"\xff" * 32, 0x62A8AB43),
    (bytes(range(32)), 0x46DD794E),
    (bytes(range(31, -1, -1)), 0x113FDB5C),
]

SMALL = settings(max_examples=40, deadline=None)


@pytest.fixture
def mod(twin_kind: str) -> ModuleType:
    return load_twin("digest", twin_kind)


@pytest.fixture(scope="module")
def py() -> ModuleType:
    return load_twin("digest", "py")


@pytest.fixture(scope="module")
def c() -> ModuleType:
    return load_twin("digest", "c")


def reference(data: bytes) -> dict[str, int | bytes]:
    """Independent values for everything but the three non-zlib CRCs."""
    return {
        "crc32": zlib.crc32(data),
        "sha1": hashlib.sha1(data).digest(),
        "sha256": hashlib.sha256(data).digest(),
        "xxh3_128": xxhash.xxh3_128(data).digest(),
    }


# --- check values and references -------------------------------------------------------


@pytest.mark.parametrize("name", CRCS)
def test_published_check_values(mod: ModuleType, name: str) -> None:
    assert mod.crc(name, b"123456789") == CHECK[name]
    digest = mod.MultiDigest([name])
    digest.update(b"123456789")
    assert digest.digest() == {name: CHECK[name]}
    assert digest.hexdigest() == {name: format(CHECK[name], f"0{WIDTH[name] // 4}x")}


@pytest.mark.parametrize(("data", "expected"), ISCSI)
def test_iscsi_crc32c_examples(mod: ModuleType, data: bytes, expected: int) -> None:
    assert mod.crc("crc32c", data) == expected


def test_empty_input_is_zero_for_every_crc(mod: ModuleType) -> None:
    assert mod.multi_digest(b"", CRCS) == dict.fromkeys(CRCS, 0)


def test_hashes_and_crc32_match_reference_libraries(mod: ModuleType) -> None:
    data = random.Random(7).randbytes(70_001)
    got = mod.multi_digest(data, EVERYTHING)
    assert list(got) == list(EVERYTHING)
    for name, value in reference(data).items():
        assert got[name] == value, name
    hexes = mod.MultiDigest(EVERYTHING)
    hexes.update(data)
    assert hexes.hexdigest()["sha256"] == hashlib.sha256(data).hexdigest()
    assert hexes.hexdigest()["xxh3_128"] == xxhash.xxh3_128(data).hexdigest()
    assert hexes.hexdigest()["crc32"] == format(zlib.crc32(data), "08x")


def test_exports_and_metadata(mod: ModuleType) -> None:
    assert tuple(mod.ALGORITHMS) == EVERYTHING
    assert tuple(mod.CRC_ALGORITHMS) == CRCS
    assert mod.IMPLEMENTATION in mod.CRC_IMPLEMENTATIONS
    assert mod.MultiDigest(["sha1", "crc32", "sha1"]).algorithms == ("sha1", "crc32")
    assert mod.MultiDigest("crc64xz").algorithms == ("crc64xz",)


# --- the two twins agree ---------------------------------------------------------------


@SMALL
@given(data=st.binary(max_size=1500), cuts=st.lists(st.integers(0, 1500), max_size=4))
def test_twins_agree_incremental_equals_one_shot(
    py: ModuleType, c: ModuleType, data: bytes, cuts: list[int]
) -> None:
    bounds = [0, *sorted(min(cut, len(data)) for cut in cuts), len(data)]
    expected = py.multi_digest(data, EVERYTHING)
    for module in (py, c):
        digest = module.MultiDigest(EVERYTHING)
        for start, stop in itertools.pairwise(bounds):
            digest.update(data[start:stop])
        assert digest.length == len(data)
        assert digest.digest() == expected
        for name in CRCS:
            assert module.crc(name, data) == expected[name]
            head = module.crc(name, data[: bounds[1]])
            assert module.crc(name, data[bounds[1] :], head) == expected[name]


def test_every_kernel_matches_the_spec_around_fold_thresholds(
    py: ModuleType, c: ModuleType
) -> None:
    """Lengths 0..600 (16/64/128/256/512-byte fold boundaries) at unaligned offsets."""
    rng = random.Random(600)
    data = rng.randbytes(603)
    assert "table" in c.CRC_IMPLEMENTATIONS
    for name in CRCS:
        for offset in (0, 1, 3):
            # the Python twin's CRC of every prefix, one byte at a time
            prefixes = [0]
            for i in range(offset, len(data)):
                prefixes.append(py.crc(name, data[i : i + 1], prefixes[-1]))
            view = memoryview(data)[offset:]
            for length in range(601 - offset):
                chunk = view[:length]
                assert c.crc(name, chunk) == prefixes[length], (name, offset, length)
                for impl in c.CRC_IMPLEMENTATIONS:
                    assert c._crc_with(impl, name, chunk) == prefixes[length], (impl, length)


@pytest.mark.parametrize("size", [1023, 1024, 1025, 4096 + 255, 3 * 2**20 + 77])
def test_every_kernel_agrees_on_large_inputs(c: ModuleType, size: int) -> None:
    data = random.Random(size).randbytes(size)
    assert c.crc("crc32", data) == zlib.crc32(data)
    for name in CRCS:
        expected = c._crc_with("table", name, data)
        for impl in c.CRC_IMPLEMENTATIONS:
            assert c._crc_with(impl, name, data, 0) == expected, (name, impl)
        # split at an odd point and resumed: the fold paths carry the register in
        assert c.crc(name, data[size // 3 :], c.crc(name, data[: size // 3])) == expected


def test_large_input_against_the_spec_via_combine(py: ModuleType, c: ModuleType) -> None:
    """A few MiB: C CRCs equal the Python twin's on sampled pieces stitched by combine."""
    rng = random.Random(3)
    pieces = [rng.randbytes(rng.randrange(1, 3000)) for _ in range(8)]
    filler = rng.randbytes(2**20 + 13)
    data = b"".join(piece + filler for piece in pieces)
    for name in ("crc32c", "crc64xz", "crc64nvme"):
        filler_crc = c.crc(name, filler)
        value = 0
        for piece in pieces:
            value = py.combine(name, value, py.crc(name, piece), len(piece))
            value = py.combine(name, value, filler_crc, len(filler))
        assert c.crc(name, data) == value, name
        digest = c.MultiDigest([name, "sha1", "sha256"])
        digest.update(data)
        assert digest.digest()[name] == value


# --- MultiDigest behaviour -------------------------------------------------------------


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("extra_chunks", [3, 20])
def test_threaded_and_chunked_updates_match(
    mod: ModuleType, threads: int, extra_chunks: int
) -> None:
    names = ["crc32", "sha1", "sha256", "xxh3_128"]
    chunk = mod.CHUNK_SIZE
    size = max(mod.THREAD_MIN_BYTES, chunk * (mod.THREAD_LAG + extra_chunks)) + chunk // 2 + 5
    data = random.Random(threads).randbytes(size)
    digest = mod.MultiDigest(names, threads=threads)
    assert digest.threads == threads
    digest.update(data[:chunk])
    digest.update(data[chunk : chunk + 1])
    digest.update(data[chunk + 1 :])
    digest.update(b"")
    assert digest.length == size
    got = digest.digest()
    for name, value in reference(data).items():
        assert got[name] == value, name
    one_call = mod.multi_digest(data, names, threads=threads)
    assert one_call == got
    if threads == 2:  # the split really ran on the worker pool
        assert any(t.name.startswith("slipstream-digest") for t in threading.enumerate())


def test_buffer_types_are_read_without_conversion(mod: ModuleType, tmp_path: object) -> None:
    data = random.Random(11).randbytes(40_000)
    expected = mod.multi_digest(data, EVERYTHING)
    words = array.array("I")
    words.frombytes(data)
    for buffer in (
        bytearray(data),
        memoryview(data),
        memoryview(b"xx" + data + b"yy")[2:-2],
        words,
    ):
        assert mod.multi_digest(buffer, EVERYTHING) == expected
        for name in CRCS:
            assert mod.crc(name, buffer) == expected[name]
    with mmap.mmap(-1, len(data)) as mapped:
        mapped.write(data)
        assert mod.multi_digest(mapped, EVERYTHING) == expected
        assert mod.crc("crc64xz", mapped) == expected["crc64xz"]
        digest = mod.MultiDigest(EVERYTHING)
        digest.update(mapped)
    assert digest.digest() == expected  # the map closed: no buffer export was kept


def test_non_contiguous_and_non_buffers_are_rejected(mod: ModuleType) -> None:
    strided = memoryview(bytes(range(100)))[::2]
    digest = mod.MultiDigest(EVERYTHING)
    with pytest.raises(TypeError):
        digest.update(strided)
    with pytest.raises(TypeError):
        digest.update("text")
    with pytest.raises(TypeError):
        mod.crc("crc32c", strided)
    assert digest.length == 0
    assert digest.digest() == mod.multi_digest(b"", EVERYTHING)


def test_copy_forks_the_state(mod: ModuleType) -> None:
    first = mod.MultiDigest(EVERYTHING)
    first.update(b"hello ")
    second = first.copy()
    first.update(b"world")
    second.update(b"there")
    assert first.length == second.length == 11
    assert first.digest() == mod.multi_digest(b"hello world", EVERYTHING)
    assert second.digest() == mod.multi_digest(b"hello there", EVERYTHING)
    assert second.algorithms == first.algorithms and second.threads == first.threads


def test_bad_arguments_raise_value_error(mod: ModuleType) -> None:
    with pytest.raises(ValueError):
        mod.MultiDigest(["crc32", "md5"])
    with pytest.raises(ValueError):
        mod.MultiDigest([])
    with pytest.raises(ValueError):
        mod.MultiDigest(["crc32"], threads=3)
    with pytest.raises(ValueError):
        mod.crc("crc16", b"x")
    with pytest.raises(ValueError):
        mod.crc("sha1", b"x")
    with pytest.raises(ValueError):
        mod.crc("crc32", b"x", 1 << 32)
    with pytest.raises(ValueError):
        mod.combine("adler32", 0, 0, 1)
    with pytest.raises(ValueError):
        mod.combine("crc32", -1, 0, 1)
    with pytest.raises(ValueError):
        mod.combine("crc64xz", 0, 1 << 64, 1)
    with pytest.raises(ValueError):
        mod.combine("crc32c", 0, 0, -1)
    with pytest.raises(ValueError):
        mod.combine("crc32c", 0, 0, 1 << 64)


# --- combine ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["py", "c"])  # not twin_kind: hypothesis wants no function fixture
@SMALL
@given(
    name=st.sampled_from(CRCS),
    a=st.binary(max_size=300),
    b=st.binary(max_size=300),
    d=st.binary(max_size=300),
)
def test_combine_laws(kind: str, name: str, a: bytes, b: bytes, d: bytes) -> None:
    mod = load_twin("digest", kind)
    crc_a, crc_b, crc_d = (mod.crc(name, part) for part in (a, b, d))
    assert mod.combine(name, crc_a, crc_b, len(b)) == mod.crc(name, a + b)
    assert mod.combine(name, crc_a, mod.crc(name, b""), 0) == crc_a
    assert mod.combine(name, 0, crc_b, len(b)) == crc_b
    left = mod.combine(name, mod.combine(name, crc_a, crc_b, len(b)), crc_d, len(d))
    right = mod.combine(name, crc_a, mod.combine(name, crc_b, crc_d, len(d)), len(b) + len(d))
    assert left == right == mod.crc(name, a + b + d)


@pytest.mark.parametrize("name", CRCS)
def test_combine_with_long_zero_runs_and_huge_lengths(
    py: ModuleType, c: ModuleType, name: str
) -> None:
    zeros = bytes(3 * 2**20 + 1)
    head = c.crc(name, b"head")
    for module in (py, c):
        assert module.combine(name, head, c.crc(name, zeros), len(zeros)) == c.crc(
            name, b"head" + zeros
        )
    rng = random.Random(name)
    for len_b in [2**32, 2**40 + 5, 2**63, 2**64 - 1, *(rng.randrange(2**64) for _ in range(20))]:
        crc_a = rng.randrange(2 ** WIDTH[name])
        crc_b = rng.randrange(2 ** WIDTH[name])
        expected = py.combine(name, crc_a, crc_b, len_b)
        assert c.combine(name, crc_a, crc_b, len_b) == expected
        # a long B splits into two halves: combine is associative for any lengths
        half = len_b // 2
        crc_b1, crc_b2 = rng.randrange(2 ** WIDTH[name]), rng.randrange(2 ** WIDTH[name])
        joined = c.combine(name, crc_b1, crc_b2, len_b - half)
        assert c.combine(name, c.combine(name, crc_a, crc_b1, half), crc_b2, len_b - half) == (
            c.combine(name, crc_a, joined, len_b)
        )


def test_compiled_twin_uses_a_folding_kernel_where_the_cpu_has_pclmul(c: ModuleType) -> None:
    with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
        flags = cpuinfo.read()
    if " pclmulqdq" in flags and " sse4_1" in flags:
        assert c.IMPLEMENTATION in ("pclmul", "vpclmul256", "vpclmul512")
        assert "pclmul" in c.CRC_IMPLEMENTATIONS
    else:
        assert c.IMPLEMENTATION == "table"


# --- update_from_fd: reading a file while hashing it -------------------------------------


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(
    ("names", "sizes"),
    [
        (EVERYTHING, (0, 1, 300_001)),
        (("crc32", "sha1", "sha256", "xxh3_128"), (2 * 1024 * 1024 + 128 * 1024 + 3,)),
        (("crc32", "sha256", "xxh3_128"), (2 * 1024 * 1024 + 1,)),
        (("sha1",), (3 * 1024 * 1024,)),
    ],
)
def test_update_from_fd_feeds_the_range(
    mod: ModuleType, tmp_path: object, threads: int, names: tuple[str, ...], sizes: tuple[int]
) -> None:
    for size in sizes:
        data = random.Random(size).randbytes(size)
        path = f"{tmp_path}/f{size}.bin"
        with open(path, "wb") as handle:
            handle.write(b"abc" + data + b"trail")
        fd = os.open(path, os.O_RDONLY)
        try:
            digest = mod.MultiDigest(names, threads=threads)
            digest.update(b"before")
            assert digest.update_from_fd(fd, 3, size) == size
            assert digest.length == size + 6
            expected = mod.multi_digest(b"before" + data, names, threads=1)
            assert digest.digest() == expected
            # past the end: only what the file holds is fed
            rest = mod.MultiDigest(names, threads=threads)
            assert rest.update_from_fd(fd, 3, size + 1000) == size + 5
            assert rest.digest() == mod.multi_digest(data + b"trail", names, threads=1)
        finally:
            os.close(fd)


def test_update_from_fd_refuses_negative_ranges(mod: ModuleType) -> None:
    digest = mod.MultiDigest(["sha256"])
    with pytest.raises(ValueError):
        digest.update_from_fd(0, -1, 10)
    with pytest.raises(ValueError):
        digest.update_from_fd(0, 0, -1)


def test_twins_split_the_reading_work_alike(c: ModuleType, py: ModuleType) -> None:
    for count in range(1, len(EVERYTHING) + 1):
        for names in itertools.combinations(EVERYTHING, count):
            for threads in (1, 2):
                assert c._split_reading(names, threads) == py._split_reading(names, threads)
    # everything: the worker takes SHA-256 and the CRCs, the reading thread SHA-1 and XXH3
    assert py._split_reading(EVERYTHING, 2) == frozenset({"sha256", *CRCS})
