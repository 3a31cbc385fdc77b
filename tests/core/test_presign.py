"""``slipstream.presign``: signing, verification, expiry, overrides, key rotation."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slipstream.errors import InvalidResponseOverride, PresignExpired, PresignTampered
from slipstream.presign import CONTENT_DISPOSITION_PARAM, CONTENT_TYPE_PARAM, SignedGrant, Signer

NOW = 1_700_000_000.0
EXPIRES = 1_700_000_600
ETAG = '"1a2b-17f00-4d2"'
SPACE = "root"
PATH = "sub/résumé 日本.txt"
DISPOSITION = "attachment; filename=\"r_sum_.txt\"; filename*=UTF-8''r%C3%A9sum%C3%A9.txt"


def signed(signer: Signer | None = None, **overrides: str) -> dict[str, str]:
    signer = signer or Signer("current-key")
    return signer.sign(SPACE, PATH, expires=EXPIRES, etag=ETAG, **overrides)


def verify(
    query: dict[str, str],
    *,
    signer: Signer | None = None,
    method: str = "GET",
    space: str = SPACE,
    path: str = PATH,
    now: float = NOW,
) -> SignedGrant:
    return (signer or Signer("current-key")).verify(method, space, path, query, now)


# --- the happy path ----------------------------------------------------------------------


def test_round_trip_gives_the_grant() -> None:
    params = signed()
    assert set(params) == {"expires", "etag", "sig"}
    assert params["expires"] == str(EXPIRES) and params["etag"] == ETAG
    grant = verify(params)
    assert grant == SignedGrant(SPACE, PATH, EXPIRES, ETAG, None, None)


def test_head_verifies_with_the_get_signature() -> None:
    assert verify(signed(), method="HEAD").path == PATH


def test_signature_is_hmac_sha256_of_the_documented_canonical_string() -> None:
    params = signed(content_type="text/plain")
    message = "\n".join(["GET", SPACE, PATH, str(EXPIRES), ETAG, "text/plain", ""])
    mac = hmac.new(b"current-key", message.encode(), hashlib.sha256).digest()
    assert params["sig"] == base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
    assert len(params["sig"]) == 43


def test_signed_overrides_are_granted() -> None:
    params = signed(content_type="text/csv; charset=utf-8", content_disposition=DISPOSITION)
    assert params[CONTENT_TYPE_PARAM] == "text/csv; charset=utf-8"
    assert params[CONTENT_DISPOSITION_PARAM] == DISPOSITION
    grant = verify(params)
    assert grant.content_type == "text/csv; charset=utf-8"
    assert grant.content_disposition == DISPOSITION


# --- refused URLs ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("expires", str(EXPIRES + 1)),
        ("expires", f"0{EXPIRES}"),
        ("etag", '"1a2b-17f00-4d3"'),
        ("etag", ETAG.strip('"')),
        (CONTENT_TYPE_PARAM, "text/html"),
        (CONTENT_DISPOSITION_PARAM, "inline"),
    ],
)
def test_changing_any_signed_parameter_is_tampering(field: str, value: str) -> None:
    params = signed(content_type="text/plain", content_disposition=DISPOSITION)
    with pytest.raises(PresignTampered) as info:
        verify({**params, field: value})
    assert info.value.status == 403
    assert info.value.message == "signature does not match"


@pytest.mark.parametrize(
    ("space", "path"),
    [("app-other", PATH), (SPACE, "sub/other.txt"), (SPACE, "sub//résumé 日本.txt")],
)
def test_a_signature_is_bound_to_its_space_and_path(space: str, path: str) -> None:
    with pytest.raises(PresignTampered):
        verify(signed(), space=space, path=path)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "get"])
def test_only_get_and_head_are_granted(method: str) -> None:
    with pytest.raises(PresignTampered):
        verify(signed(), method=method)


@pytest.mark.parametrize("dropped", [CONTENT_TYPE_PARAM, CONTENT_DISPOSITION_PARAM])
def test_dropping_a_signed_override_is_tampering(dropped: str) -> None:
    params = signed(content_type="text/plain", content_disposition=DISPOSITION)
    del params[dropped]
    with pytest.raises(PresignTampered):
        verify(params)


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        ("sig", "missing signature (sig)"),
        ("expires", "missing signature parameters (expires, etag)"),
        ("etag", "missing signature parameters (expires, etag)"),
    ],
)
def test_missing_parameters_are_tampering(missing: str, message: str) -> None:
    params = signed()
    del params[missing]
    with pytest.raises(PresignTampered) as info:
        verify(params)
    assert info.value.message == message


def bad_sigs() -> list[str]:
    good = signed()["sig"]
    flipped_last = good[:-1] + ("A" if good[-1] != "A" else "B")
    return [
        "",
        good + "=",  # padded
        good[:-1],  # short
        good + "A",  # long
        good.replace(good[0], "+" if good[0] != "+" else "/", 1),  # standard alphabet
        "é" + good[1:],  # non-ASCII: hmac.compare_digest would raise on this str
        "\u0661" + good[1:],  # a non-ASCII digit
        good[:5] + "\x00" + good[6:],
        flipped_last,
        "A" * 43,
    ]


@pytest.mark.parametrize("sig", bad_sigs())
def test_malformed_or_wrong_signatures_are_tampering(sig: str) -> None:
    with pytest.raises(PresignTampered):
        verify({**signed(), "sig": sig})


def test_non_canonical_base64_spelling_of_the_right_mac_is_refused() -> None:
    params = signed()
    sig = params["sig"]
    # The last of 43 characters carries 2 padding bits; setting them keeps the bytes.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    twin = sig[:-1] + alphabet[alphabet.index(sig[-1]) | 1]
    if twin == sig:
        twin = sig[:-1] + alphabet[alphabet.index(sig[-1]) | 2]
    assert base64.urlsafe_b64decode(twin + "=") == base64.urlsafe_b64decode(sig + "=")
    with pytest.raises(PresignTampered):
        verify({**params, "sig": twin})


@pytest.mark.parametrize("expires", ["", "-5", "+5", "1e9", "٣٣", " 1700000600", "9" * 13])
def test_malformed_expiry_is_tampering(expires: str) -> None:
    with pytest.raises(PresignTampered):
        verify({**signed(), "expires": expires})


def test_expired_url_is_reported_as_expired() -> None:
    params = signed()
    assert verify(params, now=EXPIRES - 0.001).expires == EXPIRES
    for now in (EXPIRES, EXPIRES + 1, EXPIRES + 10**6):
        with pytest.raises(PresignExpired) as info:
            verify(params, now=now)
        assert info.value.status == 403
        assert info.value.message == "URL expired"


def test_a_forged_url_is_tampered_even_when_expired() -> None:
    params = {**signed(), "sig": "A" * 43}
    with pytest.raises(PresignTampered):
        verify(params, now=EXPIRES + 100)


# --- keys --------------------------------------------------------------------------------


def test_wrong_key_is_tampering() -> None:
    with pytest.raises(PresignTampered):
        verify(signed(Signer("another-key")))


def test_previous_secret_still_verifies_but_never_signs() -> None:
    old = Signer("old-key")
    rotated = Signer("new-key", ["older-key", "old-key"])
    assert verify(signed(old), signer=rotated).etag == ETAG
    # the rotated signer signs with the new key only
    new_params = signed(rotated)
    assert verify(new_params, signer=Signer("new-key")).path == PATH
    with pytest.raises(PresignTampered):
        verify(new_params, signer=old)


def test_keys_are_utf8_and_may_not_be_empty() -> None:
    assert verify(signed(Signer("clé")), signer=Signer("x", ["clé"])).space == SPACE
    with pytest.raises(ValueError):
        Signer("")


# --- unsigned overrides ------------------------------------------------------------------


def test_unsigned_overrides_are_ignored() -> None:
    params = {
        **signed(),
        CONTENT_TYPE_PARAM: "text/html",
        CONTENT_DISPOSITION_PARAM: "inline",
    }
    grant = verify(params)
    assert grant.content_type is None and grant.content_disposition is None


def test_an_unsigned_override_next_to_a_signed_one_is_ignored() -> None:
    params = {**signed(content_type="text/plain"), CONTENT_DISPOSITION_PARAM: "inline"}
    grant = verify(params)
    assert grant.content_type == "text/plain"
    assert grant.content_disposition is None
    params = {**signed(content_disposition=DISPOSITION), CONTENT_TYPE_PARAM: "text/html\x00"}
    grant = verify(params)
    assert grant.content_type is None
    assert grant.content_disposition == DISPOSITION


def test_empty_override_parameter_counts_as_absent() -> None:
    grant = verify({**signed(), CONTENT_TYPE_PARAM: ""})
    assert grant.content_type is None


@pytest.mark.parametrize(
    "value",
    ["text/plain\r\nSet-Cookie: x=1", "text/plain\n", "a\x85b", "a\ud800b", "", "x" * 1025],
)
def test_overrides_that_are_not_header_values_cannot_be_signed(value: str) -> None:
    with pytest.raises(InvalidResponseOverride) as info:
        signed(content_type=value)
    assert info.value.status == 400
    with pytest.raises(InvalidResponseOverride):
        signed(content_disposition=value)


def test_only_the_disposition_may_carry_non_ascii_text() -> None:
    """The real file name goes into ``filename="..."`` as UTF-8; a media type is ASCII."""
    with pytest.raises(InvalidResponseOverride):
        signed(content_type="tëxt/plain")
    disposition = 'attachment; filename="résumé 日本.txt"'
    assert verify(signed(content_disposition=disposition)).content_disposition == disposition


@pytest.mark.parametrize("expires", ["", "+5", " 5", "5 ", "1_0", "\u0661", "\u00b2", "1" * 13])
def test_an_expiry_that_is_not_plain_ascii_digits_is_tampered(expires: str) -> None:
    with pytest.raises(PresignTampered):
        verify({**signed(), "expires": expires})


@pytest.mark.parametrize(
    ("space", "path", "etag"),
    [("", PATH, ETAG), (SPACE, "", ETAG), (SPACE, "a\nb", ETAG), (SPACE, PATH, "a\x00")],
)
def test_fields_with_control_characters_cannot_be_signed(space: str, path: str, etag: str) -> None:
    with pytest.raises(ValueError):
        Signer("k").sign(space, path, expires=EXPIRES, etag=etag)


def test_field_boundaries_cannot_be_shifted() -> None:
    """Without control characters, no two different grants share a canonical string."""
    signer = Signer("k")
    params = signer.sign("ab", "c", expires=EXPIRES, etag=ETAG)
    with pytest.raises(PresignTampered):
        signer.verify("GET", "a", "bc", params, NOW)
    with pytest.raises(PresignTampered):
        signer.verify("GET", "ab\nc", "c", params, NOW)


# --- properties --------------------------------------------------------------------------

_text = st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=40)
_header = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1)


@settings(max_examples=60, deadline=None)
@given(
    space=_text,
    path=_text,
    etag=_text,
    expires=st.integers(min_value=1, max_value=10**11),
    content_type=st.none() | _header,
    disposition=st.none() | _header,
)
def test_any_grant_round_trips(
    space: str,
    path: str,
    etag: str,
    expires: int,
    content_type: str | None,
    disposition: str | None,
) -> None:
    signer = Signer("prop-key")
    params = signer.sign(
        space,
        path,
        expires=expires,
        etag=etag,
        content_type=content_type,
        content_disposition=disposition,
    )
    grant = signer.verify("HEAD", space, path, params, expires - 1)
    assert grant == SignedGrant(space, path, expires, etag, content_type, disposition)


@settings(max_examples=60, deadline=None)
@given(index=st.integers(min_value=0, max_value=42), data=st.data())
def test_any_changed_signature_character_is_refused(index: int, data: st.DataObject) -> None:
    params = signed()
    sig = params["sig"]
    replacement = data.draw(st.characters().filter(lambda ch: ch != sig[index]))
    with pytest.raises(PresignTampered):
        verify({**params, "sig": sig[:index] + replacement + sig[index + 1 :]})
