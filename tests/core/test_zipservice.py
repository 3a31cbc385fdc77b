"""The stored form of a zip manifest (:class:`slipstream.zipservice.Manifest`)."""

from __future__ import annotations

import json

from slipstream.zipremote import RemoteObject
from slipstream.zipservice import Manifest


def manifest(*objects: RemoteObject) -> Manifest:
    return Manifest(
        id="0b7e1c52-5f9e-4f55-9d43-0d6b2f1f2a11",
        file_name="download.zip",
        response_format="json",
        error_redirect_uri=None,
        headers=(("X-Key", "v"),),
        objects=objects,
        names=tuple(f"m{n}" for n in range(len(objects))),
        created=1_700_000_000.0,
    )


def test_the_range_support_seen_by_the_probe_survives_storage() -> None:
    original = manifest(
        RemoteObject("http://a/x", 10, '"e"', None, None, ranges=False),
        RemoteObject("http://a/y", 20, None, "Wed, 21 Oct 2015 07:28:00 GMT", None),
    )
    stored = json.loads(json.dumps(original.to_json()))
    again = Manifest.from_json(stored)
    assert again == original
    assert [obj.ranges for obj in again.objects] == [False, True]


def test_manifests_stored_before_range_support_was_recorded_still_load() -> None:
    old = manifest(RemoteObject("http://a/x", 10, '"e"', None, 'attachment; filename="n"'))
    data = old.to_json()
    data["objects"] = [fields[:5] for fields in data["objects"]]  # the old five fields
    loaded = Manifest.from_json(data)
    assert loaded.objects == old.objects
    assert loaded.objects[0].ranges is True
    assert loaded.etag == old.etag
