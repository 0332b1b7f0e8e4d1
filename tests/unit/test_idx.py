import gzip

import numpy as np
import pytest

from mnist_regression.data.idx import IdxError, read_idx

from ..conftest import write_idx


@pytest.mark.parametrize("dtype", ["u1", "i1", "i2", "i4", "f4", "f8"])
def test_round_trip_of_every_type(tmp_path, dtype):
    array = (np.arange(2 * 3 * 5) - 7).astype(dtype).reshape(2, 3, 5)
    write_idx(tmp_path / "a.idx", array)
    result = read_idx(tmp_path / "a.idx", ndim=3)
    np.testing.assert_array_equal(result, array)
    assert result.dtype == np.dtype(dtype)


def test_reads_big_endian_values(tmp_path):
    path = tmp_path / "labels"
    path.write_bytes(bytes([0, 0, 0x0C, 1, 0, 0, 0, 2, 0, 0, 1, 0, 0, 0, 0, 7]))
    np.testing.assert_array_equal(read_idx(path), [256, 7])


def header(code=0x08, dims=(2, 2)):
    return bytes([0, 0, code, len(dims)]) + np.asarray(dims, ">u4").tobytes()


MALFORMED = {
    "empty": (b"", "too short"),
    "bad magic": (b"\x01\x02" + header()[2:] + bytes(4), "bad magic number"),
    "unknown type": (header(code=0x07) + bytes(4), "unknown type code 0x07"),
    "zero dims": (bytes([0, 0, 8, 0]), "zero dimensions"),
    "cut header": (header()[:6], "truncated inside the header"),
    "truncated data": (header() + bytes(3), "truncated"),
    "trailing bytes": (header() + bytes(5), "trailing bytes"),
    "gzip": (gzip.compress(header() + bytes(4)), "gzip-compressed"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_file_names_file_and_cause(tmp_path, case):
    content, cause = MALFORMED[case]
    path = tmp_path / "broken-idx"
    path.write_bytes(content)
    with pytest.raises(IdxError, match=cause) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_wrong_rank_is_refused(tmp_path):
    write_idx(tmp_path / "labels", np.zeros(4, np.uint8))
    with pytest.raises(IdxError, match="expected 3 dimensions"):
        read_idx(tmp_path / "labels", ndim=3)


def test_missing_file(tmp_path):
    with pytest.raises(IdxError, match="cannot read"):
        read_idx(tmp_path / "nope")
