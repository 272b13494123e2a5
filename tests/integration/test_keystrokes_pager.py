"""The pager against the local server: a 500 then success, a loop, a malformed page, a missing `next`, a dangling
`next`, a timeout, a page without `user_label`, the page cap, the cache (no second download), file:// and
data-root sources, and `next` values that try to leave the page's folder."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from pipelines.errors import InputSchemaError, MissingPartitionError
from pipelines.keystrokes.errors import BadParams
from pipelines.keystrokes.generate import KeystrokeSpec, write_dataset
from pipelines.keystrokes.ingest import inspect_url
from pipelines.keystrokes.pager import FetchConfig, PageFetchError, Pager, next_url
from pipelines.keystrokes.server import Faults, serving

FAST = FetchConfig(backoff=0.0, retries=2, read_timeout=2.0)
SPEC = KeystrokeSpec(n_users=6, mean_samples=8, seed=4, bad_rate=0.0, split_page_share=0.5, test_min_samples=4)


@pytest.fixture
def folder(data_root) -> Path:
    target = data_root / "keystrokes" / "generated" / SPEC.name
    write_dataset(SPEC, target)
    return target


def crawl(url: str, config: FetchConfig = FAST) -> list:
    with Pager(config) as pager:
        return list(pager.crawl(url))


def test_every_page_once_in_order(folder):
    with serving(folder) as server:
        pages = crawl(server.train_url)
        chain = server.site.chain
        assert [p.name for p in pages] == chain
        assert all(server.hits[f"/train/{name}"] == 1 for name in chain)
        assert len(chain) > SPEC.n_users  # some users on several pages


def test_a_500_then_success_is_retried(folder):
    with serving(folder, Faults(fail={"#1": 2})) as server:
        pages = crawl(server.train_url)
        assert len(pages) == len(server.site.chain)
        assert server.hits[f"/train/{server.site.chain[1]}"] == 3  # two 500s, then the page


def test_500s_past_the_retries_stop_naming_the_page(folder):
    with serving(folder, Faults(fail={"#2": 10})) as server:
        with pytest.raises(PageFetchError) as caught:
            crawl(server.train_url)
        name = server.site.chain[2]
        assert str(caught.value) == (f"page {server.base_url}/train/{name}: still failing after 3 attempts (too "
                                     "many 500 error responses)")
        assert server.hits[f"/train/{name}"] == 3


def test_a_loop_stops_naming_the_page(folder):
    with serving(folder, Faults(loop=True)) as server:
        with pytest.raises(InputSchemaError, match=r"was seen twice \(a loop: page \d+, .* links back to page 0\)"):
            crawl(server.train_url)
        assert all(server.hits[f"/train/{n}"] == 1 for n in server.site.chain)  # nothing fetched twice


def test_a_malformed_page_stops_naming_the_page(folder):
    with serving(folder, Faults(malformed={"#3"})) as server:
        with pytest.raises(InputSchemaError) as caught:
            crawl(server.train_url)
        assert str(caught.value).startswith(f"page {server.base_url}/train/{server.site.chain[3]} is not JSON")


def test_a_page_without_user_label(folder):
    with serving(folder, Faults(no_label={"#1"})) as server, \
            pytest.raises(InputSchemaError, match=r"/train/user_\w+\.json lacks 'user_label'"):
        crawl(server.train_url)


def test_a_missing_next_ends_the_chain_and_is_reported(folder):
    with serving(folder, Faults(no_next={"#2"})) as server:
        result = inspect_url("train", server.train_url, config=FAST, min_samples=1)
        assert result.extra["pages"] == 3
        assert result.extra["crawl"]["pages_without_next"] == [f"{server.base_url}/train/{server.site.chain[2]}"]


def test_a_dangling_next_is_missing_input(folder):
    with serving(folder, Faults(dangling_next={"#1"})) as server, \
            pytest.raises(MissingPartitionError, match=r"/train/user_does_not_exist\.json: HTTP 404 Not Found"):
        crawl(server.train_url)


def test_a_timeout_is_retried_then_stops(folder):
    with serving(folder, Faults(delay={"#1": 1.0})) as server:
        started = time.monotonic()
        with pytest.raises(PageFetchError, match=r"timed out \(read timeout 0.2 s, 2 attempts\)"):
            crawl(server.train_url, FetchConfig(backoff=0.0, retries=1, read_timeout=0.2))
        assert server.hits[f"/train/{server.site.chain[1]}"] == 2
        assert time.monotonic() - started < 10


def test_the_page_cap(folder):
    with serving(folder) as server, pytest.raises(InputSchemaError, match="page cap reached: 2 pages read"):
        crawl(server.train_url, FetchConfig(max_pages=2))


def test_a_second_crawl_reads_the_cache(folder, data_root):
    with serving(folder) as server:
        first = inspect_url("train", server.train_url, config=FAST, min_samples=1)
        hits = sum(server.hits.values())
        second = inspect_url("train", server.train_url, config=FAST, min_samples=1)
        assert sum(server.hits.values()) == hits  # nothing downloaded again
        assert second.extra["crawl"]["from_cache"] == second.extra["pages"] == first.extra["pages"]
        assert (second.rows_valid, second.extra["fingerprint"]) == (first.rows_valid, first.extra["fingerprint"])
        refreshed = inspect_url("train", server.train_url, config=FetchConfig(refresh=True), min_samples=1)
        assert sum(server.hits.values()) == 2 * hits and refreshed.extra["crawl"]["fetched"] == first.extra["pages"]
    manifests = list((data_root / "keystrokes" / "cache" / "crawls").glob("*.json"))
    assert len(manifests) == 1 and json.loads(manifests[0].read_text())["complete"] is True


def test_a_bad_page_is_not_cached(folder):
    with serving(folder, Faults(malformed={"#1"})) as server:
        port, broken = server.server_address[1], f"/train/{server.site.chain[1]}"
        with pytest.raises(InputSchemaError):
            crawl(server.train_url)
    with serving(folder, port=port) as fixed:  # the same URLs, now served right
        assert len(crawl(fixed.train_url)) == len(fixed.site.chain)
        assert fixed.hits[broken] == 1  # fetched again: the malformed copy was not cached
        assert fixed.hits[f"/train/{fixed.site.chain[0]}"] == 0  # the good first page was


def test_file_and_data_root_sources(folder, data_root):
    with serving(folder) as server:
        first = server.site.first_page
    by_file = inspect_url("train", (folder / "pages" / first).as_uri(), min_samples=1)
    rel = (folder / "pages" / first).relative_to(data_root).as_posix()
    by_root = inspect_url("train", rel, min_samples=1)
    assert by_file.rows_valid == by_root.rows_valid > 0
    assert by_file.extra["fingerprint"] == by_root.extra["fingerprint"]
    with pytest.raises(MissingPartitionError, match="no such file"):
        crawl("keystrokes/generated/nothing/user_x.json")


@pytest.mark.parametrize("bad", ["http://elsewhere.example/user_x.json", "../../etc/passwd", "sub/user_x.json",
                                 "%2e%2e%2fuser_x.json", "", 7, "user\x00.json"])
def test_next_must_be_a_file_name_next_to_the_page(bad):
    with pytest.raises(InputSchemaError, match="next"):
        next_url("http://127.0.0.1:1/train/user_a.json", bad)
    assert next_url("http://127.0.0.1:1/train/user_a.json", "user_b.json") == "http://127.0.0.1:1/train/user_b.json"
    assert next_url("keystrokes/x/user_a.json", "user_b.json") == "keystrokes/x/user_b.json"


@pytest.mark.parametrize("url", ["ftp://host/user_x.json", "/etc/passwd", "keystrokes/../../etc/passwd", "  "])
def test_unsupported_urls_are_bad_params(url):
    with pytest.raises(BadParams):
        inspect_url("train", url)
