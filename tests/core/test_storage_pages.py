"""``LocalStorage.list_dir_page``: the pages of a listing, examined one page at a time,
are exactly the slices of the whole listing (what the drive API's ``list`` serves)."""

from __future__ import annotations

from pathlib import Path

import pytest

from slipstream.errors import FileNotFound, PathNotAllowed
from tests.core.test_storage import STATE_DIR, local_storage, tree

__all__ = ["tree"]


@pytest.mark.parametrize("limit", [1, 2, 3, 5, 100])
def test_pages_are_slices_of_the_listing(tree: Path, limit: int) -> None:
    storage = local_storage(tree)
    whole = storage.list_dir("")
    pages = []
    after = None
    while True:
        page, more = storage.list_dir_page("", after, limit)
        assert len(page) <= limit
        pages.extend(page)
        if not more:
            break
        assert len(page) == limit
        after = page[-1].name
    assert pages == whole


def test_a_marker_between_names_and_past_the_end(tree: Path) -> None:
    storage = local_storage(tree)
    whole = storage.list_dir("")
    names = [e.name for e in whole]
    page, more = storage.list_dir_page("", "b", 2)
    start = next(i for i, name in enumerate(names) if name > "b")
    assert page == whole[start : start + 2]
    assert more == (start + 2 < len(whole))
    assert storage.list_dir_page("", "\U0010ffff", 5) == ([], False)


def test_a_page_hides_what_the_listing_hides(tree: Path) -> None:
    storage = local_storage(tree)
    page, more = storage.list_dir_page("", None, 1000)
    assert not more
    names = [e.name for e in page]
    for hidden in ("escape_link", "escape_dir", "loop_link", STATE_DIR, "state_link"):
        assert hidden not in names
    with pytest.raises(FileNotFound):
        storage.list_dir_page(STATE_DIR, None, 5)
    with pytest.raises(PathNotAllowed):
        storage.list_dir_page("escape_dir", None, 5)
    with pytest.raises(FileNotFound):
        storage.list_dir_page("nope", None, 5)
