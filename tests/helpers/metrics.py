"""Scraping ``/metrics`` and comparing two scrapes, through prometheus_client's own parser."""

from __future__ import annotations

from collections import Counter

import httpx
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
"""``(sample name, sorted labels) -> value`` of one scrape."""


def parse(text: str) -> Samples:
    """Every sample of a text exposition (``_created`` timestamps left out: not counts)."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


async def scrape(port: int, token: str | None = None) -> Samples:
    """``GET /metrics`` on ``port`` (with ``token`` as Bearer); must be a 200."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(timeout=10, verify=False) as client:
        response = await client.get(f"http://127.0.0.1:{port}/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(response.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value (0 when it is not there yet: a labelled child not yet used)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def moved(before: Samples, after: Samples, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples of ``name`` that changed between two scrapes, and by how much."""
    delta: Counter[tuple[tuple[str, str], ...]] = Counter()
    for (sample, labels), number in after.items():
        if sample == name and number != before.get((sample, labels), 0.0):
            delta[labels] = number - before.get((sample, labels), 0.0)
    return dict(delta)


def labels(**pairs: str) -> tuple[tuple[str, str], ...]:
    """The key :func:`moved` uses for these labels."""
    return tuple(sorted(pairs.items()))
