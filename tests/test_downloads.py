"""Downloading the published checkpoints: served from a local HTTP server on 127.0.0.1 (no outside
traffic), including a resumed, a truncated and a corrupted download."""
from __future__ import annotations

import hashlib
import http.server
import json
import threading

import numpy as np
import pytest
import torch

from uslbench import downloads
from uslbench.downloads import download, published_for, published_weights_path, verify_or_record, weights_cache_dir
from uslbench.errors import UserError

PAYLOAD = np.random.default_rng(0).bytes(3 * downloads.CHUNK + 12345)


class _Server:
    """A file server with HTTP Range support; `truncate_at` makes it close the connection after
    that many body bytes while announcing the full length; `ignore_range` answers 200 always."""

    def __init__(self, payload: bytes):
        self.payload, self.truncate_at, self.ignore_range, self.ranges = payload, None, False, []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                start = 0
                header = self.headers.get("Range")
                server.ranges.append(header)
                if header and not server.ignore_range:
                    start = int(header.split("=")[1].split("-")[0])
                    if start >= len(server.payload):
                        self.send_response(416)
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(server.payload) - 1}/{len(server.payload)}")
                else:
                    self.send_response(200)
                body = server.payload[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.truncate_at is not None:
                    body = body[:server.truncate_at]
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/ckpt.pth"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = _Server(PAYLOAD)
    yield s
    s.close()


def test_full_download_records_size_and_sha256(server, tmp_path):
    path = download(server.url, tmp_path / "w" / "ckpt.pth")
    assert path.read_bytes() == PAYLOAD
    manifest = json.loads((tmp_path / "w" / "ckpt.pth.json").read_text())
    assert manifest == {"url": server.url, "size": len(PAYLOAD), "sha256": hashlib.sha256(PAYLOAD).hexdigest()}
    assert not (tmp_path / "w" / "ckpt.pth.part").exists()
    assert server.ranges == [None]


def test_truncated_download_is_kept_and_resumed(server, tmp_path):
    server.truncate_at = 1_000_000
    with pytest.raises(UserError, match="(interrupted|incomplete).*run the command again to resume"):
        download(server.url, tmp_path / "ckpt.pth")
    part = tmp_path / "ckpt.pth.part"
    assert part.stat().st_size == 1_000_000 and not (tmp_path / "ckpt.pth").exists()
    server.truncate_at = None
    path = download(server.url, tmp_path / "ckpt.pth")
    assert path.read_bytes() == PAYLOAD
    assert server.ranges == [None, "bytes=1000000-"]          # the second request asked only for the rest


def test_server_without_range_restarts_from_zero(server, tmp_path):
    (tmp_path / "ckpt.pth.part").write_bytes(b"x" * 5000)        # stale bytes of unknown origin
    server.ignore_range = True
    path = download(server.url, tmp_path / "ckpt.pth")
    assert path.read_bytes() == PAYLOAD


def test_corrupted_file_is_an_error_on_later_use(server, tmp_path):
    path = download(server.url, tmp_path / "ckpt.pth")
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF                                            # one flipped byte, same size
    path.write_bytes(bytes(data))
    with pytest.raises(UserError, match="does not match what was recorded.*corrupted"):
        verify_or_record(path, server.url)


def test_network_error_names_url_and_path(tmp_path):
    with pytest.raises(UserError, match=r"Download of http://127.0.0.1:9/x failed.*put it at"):
        download("http://127.0.0.1:9/x", tmp_path / "x", timeout=5)


def test_published_table_and_messages(tmp_path):
    assert published_for("simclr", "cifar10").filename == "cifar10_ckpt_epoch_200.pth"
    assert published_for("mocov2", "imagenet").url.endswith("res50_moco_eman_800ep.pth.tar")
    assert published_for("simclr", "digits") is None
    with pytest.raises(UserError) as info:
        published_weights_path("simclr", "cifar100", tmp_path, allow_download=False)
    text = str(info.value)
    assert "--download" in text and "cifar100_ckpt_epoch_200.pth" in text
    assert str(weights_cache_dir(tmp_path) / "cifar100_ckpt_epoch_200.pth") in text
    assert not (weights_cache_dir(tmp_path)).exists()            # nothing fetched without the flag


def _cld_checkpoint() -> bytes:
    """A random-weight checkpoint in the CLD layout (module. prefix, 512->128 linear head)."""
    from uslbench.nets.contrastive import ContrastiveNet
    import io

    net = ContrastiveNet("resnet18_cifar", [512, 128], False)
    state = {}
    for key, value in net.state_dict().items():
        key = key.replace("backbone.", "").replace("downsample", "shortcut").replace("projection.0", "linear")
        if key.startswith("fc."):
            continue
        state["module." + key] = value
    buffer = io.BytesIO()
    torch.save({"model": state}, buffer)
    return buffer.getvalue()


@pytest.mark.slow
def test_encoder_fetches_the_published_checkpoint_only_with_download(tmp_path, monkeypatch):
    from uslbench.datasets import load_dataset
    from uslbench.datasets.testing import write_cifar
    from uslbench.catalog import ENCODERS

    server = _Server(_cld_checkpoint())
    try:
        entry = downloads.PublishedWeights("simclr", ("cifar10",), server.url, "cifar10_ckpt_epoch_200.pth", "CLD test")
        monkeypatch.setattr(downloads, "PUBLISHED", (entry,))
        write_cifar(tmp_path / "data", "cifar10")
        dataset = load_dataset("cifar10", data_root=str(tmp_path / "data"))
        encoder = ENCODERS.create("simclr", dataset="cifar10")
        encoder.use_results_root(tmp_path / "results")
        with pytest.raises(UserError, match=r"add --download to fetch the authors' published checkpoint"):
            encoder.resolve_weights(dataset)
        assert server.ranges == []                               # no request without the flag
        encoder.allow_download(True)
        path = encoder.resolve_weights(dataset)
        assert path == weights_cache_dir(tmp_path / "results") / "cifar10_ckpt_epoch_200.pth"
        encoder.check(dataset)                                   # the CLD layout loads into the network
        assert server.ranges == [None]
        # a second encoder finds the verified file without the flag and without a request
        again = ENCODERS.create("simclr", dataset="cifar10")
        again.use_results_root(tmp_path / "results")
        assert again.resolve_weights(dataset) == path and server.ranges == [None]

        # the CLI: `run` without --download names the flag; with it, the pipeline fetches nothing more
        # (the file is cached) and the run goes through to a record
        from click.testing import CliRunner
        from uslbench.cli import main

        fresh = tmp_path / "fresh"
        args = ["run", "--selector", "random", "--learner", "linear", "--dataset", "cifar10", "--budget", "10",
                "--encoder", "simclr", "--data-root", str(tmp_path / "data")]
        result = CliRunner().invoke(main, args + ["--results-root", str(fresh)])
        assert result.exit_code != 0 and "--download" in result.output and server.url in result.output
        result = CliRunner().invoke(main, args + ["--results-root", str(fresh), "--download"])
        assert result.exit_code == 0, result.output
        assert (weights_cache_dir(fresh) / "cifar10_ckpt_epoch_200.pth").is_file()
        assert server.ranges == [None, None]
    finally:
        server.close()
