"""QMP reply parsing for `sevm verify`: both query-sev shapes, full-reply wrapping, and a
clean, located error for every malformed variant (never an exception)."""
from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given, settings, strategies as st

from sevmanifest.diagnostics import EXIT_USAGE, DiagnosticError
from sevmanifest.measure.qmp import (MAX_REPLY_BYTES, SHAPE_FLAT, SHAPE_UNION,
                                     parse_launch_measure, parse_query_sev)
from verify_support import M_VECTORS, dumps, qmp_return, query_sev_flat, query_sev_union

SRC = "host/query-sev.json"


def _error(fn, data, source=SRC) -> str:
    with pytest.raises(DiagnosticError) as info:
        fn(data, source)
    assert info.value.exit_code == EXIT_USAGE
    (diag,) = info.value.diagnostics
    text = f"{diag.span}: {diag.message}" if diag.span else diag.message
    assert text.startswith(source), text  # every error names the input
    return text


@pytest.mark.parametrize("shape, make", [(SHAPE_FLAT, query_sev_flat), (SHAPE_UNION, query_sev_union)])
@pytest.mark.parametrize("wrap", [False, True])
def test_query_sev_both_shapes(shape, make, wrap):
    obj = make(policy=0x7000_0005, **{"api-major": 1, "api-minor": 55, "build-id": 21})
    info = parse_query_sev(dumps(qmp_return(obj) if wrap else obj), SRC)
    assert (info.api_major, info.api_minor, info.build, info.policy) == (1, 55, 21, 0x7000_0005)
    assert info.state == "launch-secret" and info.handle == 1 and info.shape == shape


def test_query_sev_accepts_bytes_running_state_and_unknown_keys():
    obj = query_sev_union(state="running", **{"future-key": [1, 2]})
    assert parse_query_sev(dumps(obj).encode(), SRC).state == "running"


def test_query_sev_real_qemu_72_without_sev_is_rejected():
    # verbatim from facts §8: what QEMU 7.2 answers when SEV is off
    text = ('{"enabled": false, "api-minor": 0, "handle": 0, "state": "uninit", '
            '"api-major": 0, "build-id": 0, "policy": 0}')
    assert "enabled\": false" in _error(parse_query_sev, text)


def test_sev_snp_is_rejected_clearly():
    obj = {"sev-type": "sev-snp", "enabled": True, "api-major": 1, "api-minor": 55,
           "build-id": 21, "state": "running", "snp-policy": 0x30000}
    message = _error(parse_query_sev, dumps(qmp_return(obj)))
    assert "SEV-SNP" in message and "not" in message


@pytest.mark.parametrize("state", ["uninit", "launch-update", "send-update", "receive-update",
                                   "bogus", ""])
def test_states_without_a_measurement(state):
    assert "state" in _error(parse_query_sev, dumps(query_sev_flat(state=state)))


KEYS = ["enabled", "api-major", "api-minor", "build-id", "policy", "state", "handle"]


@pytest.mark.parametrize("key", KEYS)
def test_every_missing_key(key):
    obj = query_sev_union()
    del obj[key]
    assert key in _error(parse_query_sev, dumps(obj))


WRONG_TYPES = {
    "enabled": [1, "true", None, 0],
    "api-major": [True, "1", 1.0, None, [1], {"v": 1}],
    "api-minor": [False, "49", 49.5],
    "build-id": [None, "6"],
    "policy": [True, "0x5", 5.0, [5]],
    "state": [1, None, ["running"]],
    "handle": ["1", 1.5, None],
    "sev-type": [1, None, "SEV", "tdx"],
}


@pytest.mark.parametrize("key, value", [(k, v) for k, vs in WRONG_TYPES.items() for v in vs])
def test_every_wrong_type(key, value):
    obj = query_sev_union(**{key: value})
    assert key in _error(parse_query_sev, dumps(obj))


@pytest.mark.parametrize("key, value", [
    ("api-major", 256), ("api-major", -1), ("api-minor", 1000), ("build-id", 256),
    ("policy", 1 << 32), ("policy", -5), ("handle", 1 << 32)])
def test_out_of_range(key, value):
    assert key in _error(parse_query_sev, dumps(query_sev_flat(**{key: value})))


MALFORMED = {
    "empty": "",
    "blank": "  \n",
    "syntax": '{"enabled": true,',
    "trailing garbage": dumps(query_sev_flat()) + " x",
    "two documents": dumps(query_sev_flat()) + dumps(query_sev_flat()),
    "single quotes": "{'enabled': true}",
    "NaN": dumps(query_sev_flat()).replace('"policy": 5', '"policy": NaN'),
    "Infinity": dumps(query_sev_flat()).replace('"policy": 5', '"policy": -Infinity'),
    "duplicate key": dumps(query_sev_flat()).replace('"policy": 5', '"policy": 5, "policy": 1'),
    "huge integer": dumps(query_sev_flat()).replace('"policy": 5', '"policy": ' + "9" * 5000),
    "deep nesting": "[" * 100_000 + "]" * 100_000,
    "array": "[1, 2]",
    "string": '"launch-secret"',
    "number": "5",
    "null": "null",
    "return not object": '{"return": [1]}',
    "qmp error": '{"error": {"class": "GenericError", "desc": "SEV feature is not available"}}',
    "qmp error odd": '{"error": "x"}',
    "qmp greeting": '{"QMP": {"version": {}, "capabilities": []}}',
}


@pytest.mark.parametrize("name", MALFORMED)
def test_malformed_query_sev(name):
    _error(parse_query_sev, MALFORMED[name])


def test_syntax_error_has_line_and_column():
    message = _error(parse_query_sev, '{\n  "enabled": true,\n  "policy": 05\n}')
    assert message.startswith(f"{SRC}:3:") and "malformed JSON" in message


def test_not_utf8_and_oversized():
    assert "UTF-8" in _error(parse_query_sev, b'{"enabled": \xff}')
    big = '{"pad": "' + "a" * MAX_REPLY_BYTES + '"}'
    assert "1 MiB" in _error(parse_query_sev, big)


def test_qmp_error_desc_is_shown():
    message = _error(parse_launch_measure, '{"error": {"class": "GenericError", '
                                           '"desc": "SEV launch measurement is not available"}}')
    assert "SEV launch measurement is not available" in message


# ---- query-sev-launch-measure ------------------------------------------------------------

BLOB = M_VECTORS["M-4"].blob


@pytest.mark.parametrize("wrap", [False, True])
def test_launch_measure(wrap):
    obj = {"data": base64.b64encode(BLOB).decode()}
    assert parse_launch_measure(dumps(qmp_return(obj) if wrap else obj), SRC) == BLOB


@pytest.mark.parametrize("data", [
    base64.b64encode(BLOB[:32]).decode(), base64.b64encode(BLOB[:47]).decode(),
    base64.b64encode(BLOB + b"\0").decode(), BLOB.hex(), "not base64!", "",
    base64.b64encode(BLOB).decode()[:-1], base64.b64encode(BLOB).decode() + "\n",
    "é" * 64, 48, None, [1], True])
def test_bad_launch_measure_data(data):
    _error(parse_launch_measure, dumps({"data": data}))


@pytest.mark.parametrize("text", ["{}", '{"return": {}}', "[]", "{", '"data"'])
def test_malformed_launch_measure(text):
    _error(parse_launch_measure, text)


# ---- nothing but DiagnosticError, whatever the input -------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(1 << 40), 1 << 40) | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.binary(max_size=200), st.text(max_size=200),
                 json_values.map(json.dumps),
                 st.fixed_dictionaries({}, optional={k: json_values for k in KEYS + ["sev-type", "data"]})
                 .map(lambda d: json.dumps(qmp_return(d)))))
def test_arbitrary_input_never_raises_anything_else(data):
    for fn in (parse_query_sev, parse_launch_measure):
        try:
            fn(data, SRC)
        except DiagnosticError as exc:
            assert exc.exit_code == EXIT_USAGE
