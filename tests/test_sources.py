"""Dataset resolution (local path, search paths, download) and checked downloads."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from dataclasses import replace
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from valueharms.config import validate
from valueharms.data.sources import CATALOGUE, DataError, download, resolve, source


def test_configured_path_wins(tmp_path: Path) -> None:
    f = tmp_path / "mine.csv"
    f.write_text("x\n")
    other = tmp_path / "search"
    other.mkdir()
    (other / "real_toxic_prompts.csv").write_text("y\n")
    cfg = validate({"datasets": {"rtp": {"path": str(f)}}, "data_search_paths": [str(other)]})
    assert resolve("rtp", cfg, str(tmp_path / "dl")) == (str(f), False)


def test_configured_path_that_is_missing_is_an_error(tmp_path: Path) -> None:
    cfg = validate({"datasets": {"hexphi": {"path": str(tmp_path / "nope.csv")}}})
    with pytest.raises(DataError) as err:
        resolve("hexphi", cfg, str(tmp_path / "dl"))
    msg = str(err.value)
    assert msg.startswith("datasets.hexphi.path: file not found:")
    assert "nope.csv" in msg and "HEx-PHI" in msg


def test_search_paths_are_tried_in_order(tmp_path: Path) -> None:
    first, second, third = (tmp_path / n for n in ("first", "second", "third"))
    for d in (first, second, third):
        d.mkdir()
    (second / "hex-phi.csv").write_text("2\n")
    (third / "hex-phi.csv").write_text("3\n")
    cfg = validate({"data_search_paths": [str(first), str(second), str(third)]})
    assert resolve("hexphi", cfg, str(tmp_path / "dl")) == (str(second / "hex-phi.csv"), False)


def test_without_a_local_copy_the_file_is_downloaded(tmp_path: Path) -> None:
    cfg = validate({"data_search_paths": [str(tmp_path)]})
    path, needs = resolve("beavertails", cfg, "downloads")
    assert (path, needs) == (
        os.path.join("downloads", "beavertails", CATALOGUE["beavertails"].filename),
        True,
    )


def test_a_dataset_without_url_or_local_file_says_how_to_get_it(tmp_path: Path) -> None:
    """Planning needs no user file (issue 17): the path is the fetch job's output, and
    that job fails with the message."""
    from valueharms.data.sources import download

    path, needs = resolve("ess", validate({}), str(tmp_path))
    assert needs and path.startswith(str(tmp_path))
    with pytest.raises(DataError) as err:
        download(source("ess"), path)
    msg = str(err.value)
    assert "dataset 'ess'" in msg and "no download address" in msg
    assert "europeansocialsurvey.org" in msg
    assert "set datasets.ess.path" in msg


def test_config_overrides_url_and_checksum() -> None:
    cfg = validate({"datasets": {"rtp": {"url": "http://mirror/x.csv", "sha256": "ab" * 32}}})
    src = source("rtp", cfg["datasets"])
    assert (src.url, src.sha256) == ("http://mirror/x.csv", "ab" * 32)
    assert src.filename == "real_toxic_prompts.csv"
    assert source("rtp") == CATALOGUE["rtp"]


def test_distinct_datasets_never_resolve_to_the_same_local_file(tmp_path: Path) -> None:
    for src in CATALOGUE.values():
        (tmp_path / src.filename).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / src.filename).write_text(src.name)
    cfg = validate({"data_search_paths": [str(tmp_path)]})
    resolved = {name: resolve(name, cfg, str(tmp_path / "dl"))[0] for name in CATALOGUE}
    assert len(set(resolved.values())) == len(resolved)


# --- download against a real local HTTP server ----------------------------------------

GOOD = b"prompt_id,prompt\n1,hello\n" * 100


@pytest.fixture
def http_root(tmp_path: Path, monkeypatch) -> Iterator[tuple[str, Path]]:
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)  # urllib would send 127.0.0.1 to a proxy
    root = tmp_path / "served"
    root.mkdir()
    (root / "good.csv").write_bytes(GOOD)

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_download_with_matching_checksum(http_root, tmp_path: Path) -> None:
    url, _ = http_root
    digest = hashlib.sha256(GOOD).hexdigest()
    src = replace(CATALOGUE["rtp"], url=f"{url}/good.csv", sha256=digest)
    out = tmp_path / "dl" / "rtp" / "real_toxic_prompts.csv"
    assert download(src, out, timeout=5) == digest
    assert out.read_bytes() == GOOD
    assert os.listdir(out.parent) == ["real_toxic_prompts.csv"]


def test_download_without_a_pinned_checksum_returns_the_one_it_saw(http_root, tmp_path) -> None:
    url, _ = http_root
    src = replace(CATALOGUE["alpaca"], url=f"{url}/good.csv")
    assert src.sha256 is None
    out = tmp_path / "alpaca.json"
    assert download(src, out, timeout=5) == hashlib.sha256(GOOD).hexdigest()
    assert out.read_bytes() == GOOD


def test_download_with_wrong_checksum_leaves_nothing(http_root, tmp_path: Path) -> None:
    url, _ = http_root
    src = replace(CATALOGUE["rtp"], url=f"{url}/good.csv", sha256="0" * 64)
    out = tmp_path / "dl" / "real_toxic_prompts.csv"
    with pytest.raises(DataError) as err:
        download(src, out, timeout=5)
    msg = str(err.value)
    assert f"sha256 {hashlib.sha256(GOOD).hexdigest()} != declared {'0' * 64}" in msg
    assert "dataset 'rtp'" in msg
    assert os.listdir(out.parent) == []


def test_download_wrong_checksum_keeps_an_existing_good_file(http_root, tmp_path: Path) -> None:
    url, root = http_root
    (root / "changed.csv").write_bytes(b"tampered\n")
    out = tmp_path / "real_toxic_prompts.csv"
    out.write_bytes(GOOD)
    src = replace(
        CATALOGUE["rtp"], url=f"{url}/changed.csv", sha256=hashlib.sha256(GOOD).hexdigest()
    )
    with pytest.raises(DataError, match="sha256"):
        download(src, out, timeout=5)
    assert out.read_bytes() == GOOD
    assert sorted(os.listdir(tmp_path)) == ["real_toxic_prompts.csv", "served"]


def test_download_of_a_missing_file_is_a_data_error(http_root, tmp_path: Path) -> None:
    url, _ = http_root
    src = replace(CATALOGUE["hexphi"], url=f"{url}/absent.csv")
    out = tmp_path / "dl" / "hex-phi.csv"
    with pytest.raises(DataError) as err:
        download(src, out, timeout=5)
    msg = str(err.value)
    assert "could not download dataset 'hexphi'" in msg and "404" in msg
    assert "set datasets.hexphi.path" in msg
    assert os.listdir(out.parent) == []
