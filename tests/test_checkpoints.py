"""Checkpoint list, cache, downloads (local HTTP server with Range support, file://, the Hub) and safe loading."""

from __future__ import annotations

import hashlib
import io
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from zeroshot import checkpoints as ck
from zeroshot.checkpoints import CheckpointEntry
from zeroshot.cli import main
from zeroshot.errors import CheckpointError

# --- fixtures: an isolated cache, checkpoint bytes, a local HTTP server -------------------------------------------


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "zeroshot-home"
    monkeypatch.setenv("ZEROSHOT_HOME", str(home))
    monkeypatch.delenv("ZEROSHOT_CHECKPOINTS", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return home


def torch_bytes(obj: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def weights() -> bytes:
    """A ~400 kB checkpoint in sam2's layout ({"model": state_dict}), large enough to cut mid-transfer."""
    generator = torch.Generator().manual_seed(0)
    return torch_bytes({"model": {"layer.weight": torch.randn(100_000, generator=generator)}})


@pytest.fixture(scope="module")
def other_weights() -> bytes:
    return torch_bytes({"model": {"layer.weight": torch.zeros(100_000)}})


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class FileServer:
    """Files served over HTTP; records every request's headers; can drop a transfer mid-file."""

    files: dict[str, bytes] = field(default_factory=dict)
    requests: list[dict[str, str]] = field(default_factory=list)
    drop_after: dict[str, int] = field(default_factory=dict)  # path -> bytes sent before closing, once
    ranges: bool = True  # honour Range requests
    wrong_range_start: bool = False  # answer a Range request with a range that starts elsewhere
    base_url: str = ""

    def etag(self, path: str) -> str:
        return f'"{sha(self.files[path])[:16]}"'


@pytest.fixture
def server() -> Iterator[FileServer]:
    state = FileServer()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests.append({"path": self.path, **dict(self.headers)})
            data = state.files.get(self.path)
            if data is None:
                self.send_error(404, "Not Found")
                return
            start = 0
            wanted = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
            if_range = self.headers.get("If-Range")
            if wanted and state.ranges and (if_range is None or if_range == state.etag(self.path)):
                start = int(wanted[1])
                if start >= len(data):
                    self.send_error(416, "Range Not Satisfiable")
                    return
                shown = 0 if state.wrong_range_start else start
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {shown}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            body = data[start:]
            self.send_header("Content-Length", str(len(body)))
            self.send_header("ETag", state.etag(self.path))
            self.end_headers()
            cut = state.drop_after.pop(self.path, None)
            self.wfile.write(body if cut is None else body[:cut])
            self.close_connection = True

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.base_url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()


def entry(url: str, *, name: str = "tiny", sha256: str | None = None, backend: str = "sam2") -> CheckpointEntry:
    config = "configs/sam2.1/sam2.1_hiera_t.yaml" if backend == "sam2" else None
    return CheckpointEntry(name, backend, config, (), "Apache-2.0", sha256, url, origin="test-list:1")


# --- the checkpoint list ------------------------------------------------------------------------------------------

GOOD = "tiny  sam2  configs/sam2.1/sam2.1_hiera_t.yaml  image_size=512,flag=true,mode=fast,scale=0.5  Apache-2.0  -  https://example.org/a/tiny.pt"


def test_parse_a_line_with_typed_options() -> None:
    entries = ck.parse_checkpoint_list(f"# comment\n\n{GOOD}  # trailing comment\n", source="list.txt")
    (e,) = entries.values()
    assert e.name == "tiny" and e.backend == "sam2" and e.sha256 is None and e.licence == "Apache-2.0"
    assert e.option_dict() == {"image_size": 512, "flag": True, "mode": "fast", "scale": 0.5}
    assert e.filename == "tiny.pt" and e.origin == "list.txt:3" and e.hub is None


def test_hub_urls_parse_with_revision_and_path() -> None:
    hub = ck.listing.parse_hub_url("hf://wanglab/MedSAM2@abc123/sub/MedSAM2_latest.pt")
    assert (hub.repo_id, hub.revision, hub.filename) == ("wanglab/MedSAM2", "abc123", "sub/MedSAM2_latest.pt")
    assert str(hub) == "hf://wanglab/MedSAM2@abc123/sub/MedSAM2_latest.pt"
    repo = entry("hf://facebook/sam2.1-hiera-tiny", backend="transformers")
    assert repo.is_repository and repo.filename == "sam2.1-hiera-tiny"
    with pytest.raises(CheckpointError, match="not a Hub URL"):
        ck.listing.parse_hub_url("hf://only-owner")


HASH = "ab" * 32


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("tiny sam2 configs/x.yaml - Apache-2.0 -", r"list.txt:1: expected 7 columns"),
        ("ti@ny sam2 configs/x.yaml - Apache-2.0 - https://e.org/t.pt", r"name 'ti@ny' must be"),
        ("tiny onnx configs/x.yaml - Apache-2.0 - https://e.org/t.pt", r"backend 'onnx' is not one of sam2"),
        ("tiny sam2 - - Apache-2.0 - https://e.org/t.pt", r"a sam2 entry needs a config"),
        ("tiny sam2 configs/x.yaml - - - https://e.org/t.pt", r"licence missing"),
        ("tiny sam2 configs/x.yaml - Apache-2.0 abc https://e.org/t.pt", r"sha256 'abc' is not 64 hex digits"),
        ("tiny sam2 configs/x.yaml - Apache-2.0 - ftp://e.org/t.pt", r"must start with one of https://"),
        ("tiny sam2 configs/x.yaml - Apache-2.0 - hf://owner", r"list.txt:1: 'hf://owner' is not a Hub URL"),
        ("tiny transformers - - Apache-2.0 - hf://o/r/model.pt", r"transformers entry is a whole repository"),
        ("tiny sam2 configs/x.yaml - Apache-2.0 - hf://o/r", r"sam2 entry needs the checkpoint file"),
        ("nni nninteractive - - CC-BY-NC-SA-4.0 - hf://o/r", r"nninteractive entry names the trained-model folder"),
        ("nni nninteractive - - CC-BY-NC-SA-4.0 - https://e.org/m/", r"nninteractive entry must be a folder on the"),
        ("tiny transformers - - Apache-2.0 - https://e.org/t.pt", r"must be a Hub repository"),
        ("tiny sam2 configs/x.yaml - Apache-2.0 - https://e.org/dir/", r"does not end in a file name"),
        ("tiny sam2 configs/x.yaml image_size Apache-2.0 - https://e.org/t.pt", r"option 'image_size' must be"),
        ("tiny sam2 configs/x.yaml a=1,a=2 Apache-2.0 - https://e.org/t.pt", r"option 'a' given twice"),
    ],
)
def test_malformed_lines_are_refused_with_their_line_number(line: str, message: str) -> None:
    with pytest.raises(CheckpointError, match=message):
        ck.parse_checkpoint_list(line, source="list.txt")


def test_duplicate_names_name_both_lines() -> None:
    text = f"{GOOD}\n# between\n{GOOD}\n"
    with pytest.raises(CheckpointError, match=r"list.txt:3: duplicate name 'tiny' \(first defined at list.txt:1\)"):
        ck.parse_checkpoint_list(text, source="list.txt")


def test_missing_list_names_the_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZEROSHOT_CHECKPOINTS", str(tmp_path / "nope.txt"))
    with pytest.raises(CheckpointError, match=r"nope.txt not found \(set ZEROSHOT_CHECKPOINTS"):
        ck.read_checkpoint_list()


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(CheckpointError, match=r"unknown checkpoint 'sam3'; known: tiny"):
        ck.find_entry("sam3", ck.parse_checkpoint_list(GOOD))


def test_shipped_list_covers_the_models_with_licences_and_sourced_hashes() -> None:
    entries = ck.read_checkpoint_list()
    names = set(entries)
    assert {"sam2.1-tiny", "sam2.1-small", "sam2.1-base-plus", "sam2.1-large"} <= names
    assert {"sam2-tiny", "sam2-small", "sam2-base-plus", "sam2-large"} <= names
    medsam2 = {e.filename for e in entries.values() if e.name.startswith("medsam2")}
    assert medsam2 == {
        "MedSAM2_latest.pt",
        "MedSAM2_2411.pt",
        "MedSAM2_CTLesion.pt",
        "MedSAM2_MRI_LiverLesion.pt",
        "MedSAM2_US_Heart.pt",
    }
    for e in entries.values():
        if e.name.startswith("medsam2"):
            assert e.licence == "CC-BY-SA-4.0"
            assert e.option_dict() == {"image_size": 512, "largest_component": True, "preprocessing": "medsam2"}
            assert e.hub is not None and e.hub.repo_id == "wanglab/MedSAM2"
        elif e.name == "sam3":
            assert e.is_repository and e.hub.repo_id == "facebook/sam3" and e.gated and e.licence == "SAM-License"
        elif e.backend == "transformers":
            assert e.is_repository and e.hub.repo_id.startswith("facebook/sam2.1-hiera-") and not e.gated
        elif e.backend == "nninteractive":
            assert e.licence == "CC-BY-NC-SA-4.0" and e.is_folder and not e.is_repository
            assert (e.hub.repo_id, e.hub.filename, e.filename) == (
                "MIC-DKFZ/nnInteractive",
                "nnInteractive_v1.0",
                "nnInteractive_v1.0",
            )
        else:
            assert e.licence == "Apache-2.0"
    # Only hashes with a source named in the file: the MedSAM2_latest LFS pointer.
    assert {e.name for e in entries.values() if e.sha256} == {"medsam2"}
    text = Path(ck.default_list_path()).read_text()
    assert "c92743b99f00d078bf32a3afcc38aaa9faf1c1692dffe3eaa7a90938c1991060" in text and "LFS pointer" in text


# --- downloads ----------------------------------------------------------------------------------------------------


def test_first_http_download_is_recorded_then_loads(server: FileServer, weights: bytes) -> None:
    server.files["/tiny.pt"] = weights
    e = entry(f"{server.base_url}/tiny.pt")
    assert ck.checkpoint_status(e).state == "missing"

    resolved = ck.download(e, progress=False)

    assert resolved.path == ck.cached_path(e) and resolved.path.read_bytes() == weights
    assert resolved.sha256 == sha(weights)
    assert ck.recorded_sha256(e) == sha(weights)
    lock = json.loads(ck.lock_path().read_text())
    assert lock["entries"]["tiny"]["url"] == e.url and lock["entries"]["tiny"]["size_bytes"] == len(weights)
    assert not list(resolved.path.parent.glob("*.part*"))
    assert ck.checkpoint_status(e, rehash=False).state == "verified"
    loaded = ck.load_checkpoint(resolved.path, sha256=resolved.sha256)
    assert torch.equal(loaded["model"]["layer.weight"], torch.load(io.BytesIO(weights))["model"]["layer.weight"])
    # A second download is a verification of the cached copy, not a transfer.
    before = len(server.requests)
    assert ck.download(e, progress=False).sha256 == sha(weights)
    assert len(server.requests) == before


def test_interrupted_download_resumes_from_the_part_file_with_range(server: FileServer, weights: bytes) -> None:
    server.files["/tiny.pt"] = weights
    server.drop_after["/tiny.pt"] = 100_000
    e = entry(f"{server.base_url}/tiny.pt", sha256=sha(weights))
    part = ck.cached_path(e).with_name("tiny.pt.part")

    with pytest.raises(CheckpointError, match=r"stopped early 1 time\(s\).*100000 of \d+ bytes.*run the same command"):
        ck.download(e, progress=False, attempts=1)
    assert part.stat().st_size == 100_000 and not ck.cached_path(e).exists()

    resolved = ck.download(e, progress=False, attempts=1)

    assert resolved.path.read_bytes() == weights
    second = server.requests[-1]
    assert second["Range"] == "bytes=100000-" and second["If-Range"] == server.etag("/tiny.pt")
    assert not part.exists()


def test_one_call_retries_and_resumes(server: FileServer, weights: bytes) -> None:
    server.files["/tiny.pt"] = weights
    server.drop_after["/tiny.pt"] = 50_000
    e = entry(f"{server.base_url}/tiny.pt", sha256=sha(weights))
    assert ck.download(e, progress=False, attempts=2).path.read_bytes() == weights
    assert [r.get("Range") for r in server.requests] == [None, "bytes=50000-"]


def test_a_file_changed_on_the_server_is_fetched_whole_not_spliced(
    server: FileServer, weights: bytes, other_weights: bytes
) -> None:
    server.files["/tiny.pt"] = weights
    server.drop_after["/tiny.pt"] = 100_000
    e = entry(f"{server.base_url}/tiny.pt")
    with pytest.raises(CheckpointError, match="stopped early"):
        ck.download(e, progress=False, attempts=1)
    server.files["/tiny.pt"] = other_weights  # new ETag: If-Range makes the server send the whole new file
    resolved = ck.download(e, progress=False, attempts=1)
    assert resolved.path.read_bytes() == other_weights
    assert ck.recorded_sha256(e) == sha(other_weights)


def test_a_server_without_range_support_restarts_from_zero(server: FileServer, weights: bytes) -> None:
    server.files["/tiny.pt"] = weights
    server.drop_after["/tiny.pt"] = 100_000
    server.ranges = False
    e = entry(f"{server.base_url}/tiny.pt", sha256=sha(weights))
    assert ck.download(e, progress=False, attempts=2).path.read_bytes() == weights


def test_a_range_that_does_not_continue_the_part_restarts(server: FileServer, weights: bytes) -> None:
    server.files["/tiny.pt"] = weights
    server.drop_after["/tiny.pt"] = 100_000
    server.wrong_range_start = True
    e = entry(f"{server.base_url}/tiny.pt", sha256=sha(weights))
    assert ck.download(e, progress=False, attempts=3).path.read_bytes() == weights
    assert [r.get("Range") for r in server.requests] == [None, "bytes=100000-", None]


def test_a_complete_part_file_left_behind_is_fetched_again(server: FileServer, weights: bytes) -> None:
    server.files["/tiny.pt"] = weights
    e = entry(f"{server.base_url}/tiny.pt", sha256=sha(weights))
    part = ck.cached_path(e).with_name("tiny.pt.part")
    part.parent.mkdir(parents=True)
    part.write_bytes(weights)  # a process that died after the transfer, before placing the file
    part.with_name("tiny.pt.part.json").write_text(json.dumps({"url": e.url, "validator": server.etag("/tiny.pt")}))
    assert ck.download(e, progress=False, attempts=2).path.read_bytes() == weights
    assert [r.get("Range") for r in server.requests] == [f"bytes={len(weights)}-", None]


def test_sha256_mismatch_is_refused_and_nothing_is_cached(
    server: FileServer, weights: bytes, other_weights: bytes
) -> None:
    server.files["/tiny.pt"] = other_weights
    e = entry(f"{server.base_url}/tiny.pt", sha256=sha(weights))
    with pytest.raises(CheckpointError, match=rf"refused: SHA-256 {sha(other_weights)}, expected {sha(weights)}"):
        ck.download(e, progress=False)
    assert [p.name for p in ck.cached_path(e).parent.iterdir()] == ["tiny.pt.lck"]  # only the advisory lock
    assert ck.recorded_sha256(e) is None


def test_truncated_file_is_refused_even_without_a_known_hash(server: FileServer, weights: bytes) -> None:
    server.files["/tiny.pt"] = weights[: len(weights) // 2]  # the server itself serves a cut file
    e = entry(f"{server.base_url}/tiny.pt")
    with pytest.raises(CheckpointError, match=r"refused and deleted: .* not a complete PyTorch checkpoint"):
        ck.download(e, progress=False)
    assert not ck.cached_path(e).exists() and ck.recorded_sha256(e) is None


def test_transfer_that_never_completes_is_not_placed(server: FileServer, weights: bytes) -> None:
    server.files["/tiny.pt"] = weights
    server.drop_after["/tiny.pt"] = 10
    e = entry(f"{server.base_url}/tiny.pt")
    with pytest.raises(CheckpointError, match="stopped early"):
        ck.download(e, progress=False, attempts=1)
    assert not ck.cached_path(e).exists()
    with pytest.raises(CheckpointError, match=r"not in the cache .*\n  zeroshot checkpoints download tiny"):
        ck.resolve_checkpoint(e)


def test_http_errors_name_the_url(server: FileServer) -> None:
    with pytest.raises(CheckpointError, match=r"/missing.pt failed: HTTP 404"):
        ck.download(entry(f"{server.base_url}/missing.pt"), progress=False)
    with pytest.raises(CheckpointError, match=r"cannot reach http://127.0.0.1:9/x.pt"):
        ck.download(entry("http://127.0.0.1:9/x.pt"), progress=False, timeout_s=5)
    with pytest.raises(CheckpointError, match="attempts must be at least 1"):
        ck.download(entry("http://127.0.0.1:9/x.pt"), attempts=0)


def test_file_url_and_local_source(tmp_path: Path, weights: bytes, other_weights: bytes) -> None:
    source = tmp_path / "download" / "tiny.pt"
    source.parent.mkdir()
    source.write_bytes(weights)
    e = entry(source.as_uri(), sha256=sha(weights))
    assert ck.download(e, progress=False).path.read_bytes() == weights

    copy = tmp_path / "usb-stick.pt"
    copy.write_bytes(other_weights)
    pinned = entry("https://unreachable.invalid/tiny.pt", name="pinned", sha256=sha(weights))
    with pytest.raises(CheckpointError, match=r"from .*usb-stick.pt refused: SHA-256"):
        ck.download(pinned, source=copy, progress=False)
    copy.write_bytes(weights)
    assert ck.download(pinned, source=copy, progress=False).sha256 == sha(weights)
    with pytest.raises(CheckpointError, match=r"checkpoint source .*nowhere.pt does not exist"):
        ck.download(pinned, source=tmp_path / "nowhere.pt", force=True, progress=False)


def test_trust_on_first_use_is_enforced_on_disk_and_on_the_server(
    server: FileServer, weights: bytes, other_weights: bytes
) -> None:
    server.files["/tiny.pt"] = weights
    e = entry(f"{server.base_url}/tiny.pt")
    path = ck.download(e, progress=False).path

    # The cached file is altered: loading refuses it.
    path.write_bytes(weights[:-1] + bytes([weights[-1] ^ 1]))
    with pytest.raises(CheckpointError, match=r"first download \(checkpoints.lock\)\); refusing to load"):
        ck.resolve_checkpoint(e)
    assert ck.checkpoint_status(e).state == "MISMATCH"
    with pytest.raises(CheckpointError, match="refusing to load"):
        ck.download(e, progress=False)  # without --force, a cached copy is verified, not replaced

    # The server now serves another file: a forced download is refused against the recorded hash.
    server.files["/tiny.pt"] = other_weights
    with pytest.raises(CheckpointError, match=r"expected .* \(from first download.*--retrust tiny"):
        ck.download(e, force=True, progress=False)
    assert ck.recorded_sha256(e) == sha(weights)

    # Retrusting is explicit, and records the new hash.
    assert ck.download(e, retrust=True, progress=False).sha256 == sha(other_weights)
    assert ck.recorded_sha256(e) == sha(other_weights)
    assert ck.resolve_checkpoint(e).path.read_bytes() == other_weights


def test_a_recorded_hash_applies_to_its_url_only(server: FileServer, weights: bytes) -> None:
    server.files["/tiny.pt"] = weights
    e = entry(f"{server.base_url}/tiny.pt")
    ck.download(e, progress=False)
    moved = entry(f"{server.base_url}/elsewhere/tiny.pt")
    assert ck.recorded_sha256(moved) is None
    with pytest.raises(CheckpointError, match=r"(?s)no SHA-256 to check against .*download --force tiny"):
        ck.resolve_checkpoint(moved)
    assert ck.forget_recorded_sha256(e) and not ck.forget_recorded_sha256(e)


def test_a_damaged_lock_file_is_named(weights: bytes) -> None:
    ck.lock_path().parent.mkdir(parents=True)
    ck.lock_path().write_text("{not json")
    with pytest.raises(CheckpointError, match=r"checkpoints.lock is not a valid lock file"):
        ck.recorded_sha256(entry("https://e.org/t.pt"))
    ck.lock_path().write_text('{"format": 99, "entries": {}}')
    with pytest.raises(CheckpointError, match=r"is not a zeroshot checkpoint lock \(format 1\)"):
        ck.recorded_sha256(entry("https://e.org/t.pt"))


# --- the Hugging Face Hub -----------------------------------------------------------------------------------------


def test_hub_offline_mode_is_respected(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    e = entry("hf://zeroshot-tests/no-such-repo/model.pt")
    with pytest.raises(CheckpointError, match=r"HF_HUB_OFFLINE is set and hf://zeroshot-tests/no-such-repo/model.pt"):
        ck.download(e, progress=False)
    assert not ck.cached_path(e).exists()


def test_hub_files_and_repositories_are_verified_and_linked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, weights: bytes
) -> None:
    import huggingface_hub

    blobs = tmp_path / "hf-cache"
    (blobs / "snapshot" / "sub").mkdir(parents=True)
    (blobs / "blob").write_bytes(weights)
    (blobs / "snapshot" / "model.pt").symlink_to(blobs / "blob")  # the Hub cache links snapshots to blobs
    (blobs / "snapshot" / "config.json").write_text('{"model_type": "sam2_video"}')
    (blobs / "snapshot" / "sub" / "model.safetensors").write_bytes(b"tensors")
    calls = []

    def fake_file(repo_id: str, filename: str, **kwargs: object) -> str:
        calls.append((repo_id, filename, kwargs))
        return str(blobs / "snapshot" / "model.pt")

    def fake_snapshot(repo_id: str, **kwargs: object) -> str:
        calls.append((repo_id, None, kwargs))
        return str(blobs / "snapshot")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_file)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)

    file_entry = entry("hf://org/repo@v1/model.pt", sha256=sha(weights))
    resolved = ck.download(file_entry, progress=False)
    assert resolved.path.read_bytes() == weights and not resolved.path.is_symlink()
    assert calls[0] == ("org/repo", "model.pt", {"revision": "v1", "local_files_only": False, "force_download": False})

    repo_entry = entry("hf://org/repo", name="hf-repo", backend="transformers")
    folder = ck.download(repo_entry, progress=False)
    assert sorted(p.relative_to(folder.path).as_posix() for p in folder.path.rglob("*") if p.is_file()) == [
        "config.json",
        "model.pt",
        "sub/model.safetensors",
    ]
    assert calls[1][2]["allow_patterns"] == ["*.json", "*.safetensors"]
    assert folder.sha256 == ck.sha256_of(folder.path) == ck.recorded_sha256(repo_entry)
    (folder.path / "config.json").write_text("{}")
    assert ck.checkpoint_status(repo_entry, rehash=False).state == "unchecked"
    assert ck.checkpoint_status(repo_entry).state == "MISMATCH"
    # The cache holds copies: editing one leaves the Hub cache intact, and a forced download (which also
    # bypasses the Hub cache) replaces the whole folder, checked against the recorded manifest hash.
    assert (blobs / "snapshot" / "config.json").read_text() == '{"model_type": "sam2_video"}'
    assert ck.download(repo_entry, force=True, progress=False).sha256 == folder.sha256
    assert calls[-1][2]["force_download"] is True

    # An nnInteractive entry is one folder of the repository: only its files, relative to it.
    (blobs / "snapshot" / "nnInteractive_v1.0" / "fold_0").mkdir(parents=True)
    (blobs / "snapshot" / "nnInteractive_v1.0" / "plans.json").write_text("{}")
    (blobs / "snapshot" / "nnInteractive_v1.0" / "fold_0" / "checkpoint_final.pth").write_bytes(weights)
    nni_entry = entry("hf://org/repo/nnInteractive_v1.0", name="nni", backend="nninteractive")
    nni = ck.download(nni_entry, progress=False)
    assert nni.path.name == "nnInteractive_v1.0" and calls[-1][2]["allow_patterns"] == ["nnInteractive_v1.0/*"]
    assert sorted(p.relative_to(nni.path).as_posix() for p in nni.path.rglob("*") if p.is_file()) == [
        "fold_0/checkpoint_final.pth",
        "plans.json",
    ]
    assert nni.sha256 == ck.sha256_of(nni.path) == ck.recorded_sha256(nni_entry)
    missing = entry("hf://org/repo/nnInteractive_v9", name="nni-missing", backend="nninteractive")
    with pytest.raises(CheckpointError, match=r"cannot download hf://org/repo/nnInteractive_v9: .*no files under"):
        ck.download(missing, progress=False)
    assert not ck.cached_path(missing).exists()

    def failing(*args: object, **kwargs: object) -> str:
        raise OSError("gated repository")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", failing)
    with pytest.raises(CheckpointError, match=r"cannot download hf://org/other/model.pt: OSError: gated"):
        ck.download(entry("hf://org/other/model.pt", name="other"), progress=False)


GATED = "gated  transformers  -  gated=true  SAM-License  -  hf://org/gated-model"


def test_a_gated_entry_parses_and_is_refused_without_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    (e,) = ck.parse_checkpoint_list(GATED, source="list.txt").values()
    assert e.gated and e.option_dict() == {} and e.licence_page == "https://huggingface.co/org/gated-model"
    with pytest.raises(CheckpointError, match=r"list.txt:1: option gated must be true or false, and only for an hf://"):
        ck.parse_checkpoint_list(GOOD.replace("image_size=512", "gated=true"), source="list.txt")
    for variable in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    fetched: list[str] = []
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda *a, **k: fetched.append("called"))
    with pytest.raises(
        CheckpointError,
        match=r"gated \(hf://org/gated-model\) is gated: .*SAM-License licence, which you accept on "
        r"https://huggingface.co/org/gated-model .*set HF_TOKEN",
    ):
        ck.download(e, progress=False)
    assert fetched == [] and not ck.cached_path(e).exists()


def test_a_token_without_access_names_the_licence_page(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub
    from huggingface_hub.errors import GatedRepoError

    (e,) = ck.parse_checkpoint_list(GATED, source="list.txt").values()
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")

    def refused(*args: object, **kwargs: object) -> str:
        # The Hub's own error type, without the HTTP response its constructor wants (none exists offline).
        error = GatedRepoError.__new__(GatedRepoError)
        Exception.__init__(error, "Access to model org/gated-model is restricted.")
        raise error

    monkeypatch.setattr(huggingface_hub, "snapshot_download", refused)
    with pytest.raises(
        CheckpointError,
        match=r"is gated and this Hub token has no access yet: accept its licence on "
        r"https://huggingface.co/org/gated-model",
    ):
        ck.download(e, progress=False)


# --- loading ------------------------------------------------------------------------------------------------------


class NotATensor:
    pass


def test_load_checkpoint_refuses_unsafe_wrong_or_broken_files(tmp_path: Path, weights: bytes) -> None:
    good = tmp_path / "good.pt"
    good.write_bytes(weights)
    assert set(ck.load_checkpoint(good)) == {"model"}
    with pytest.raises(CheckpointError, match=r"good.pt has SHA-256 .*, expected 0{64}; refusing"):
        ck.load_checkpoint(good, sha256="0" * 64)
    with pytest.raises(CheckpointError, match=r"does not exist"):
        ck.load_checkpoint(tmp_path / "missing.pt")

    cut = tmp_path / "cut.pt"
    cut.write_bytes(weights[:-100])
    with pytest.raises(CheckpointError, match="not a complete PyTorch checkpoint"):
        ck.load_checkpoint(cut)

    unsafe = tmp_path / "unsafe.pt"
    unsafe.write_bytes(torch_bytes({"model": NotATensor()}))
    with pytest.raises(CheckpointError, match=r"refusing to unpickle it \(torch.load weights_only=True\)"):
        ck.load_checkpoint(unsafe)

    not_mapping = tmp_path / "list.pt"
    not_mapping.write_bytes(torch_bytes([torch.zeros(2)]))
    with pytest.raises(CheckpointError, match=r"holds a list, expected a mapping"):
        ck.load_checkpoint(not_mapping)

    corrupt = tmp_path / "corrupt.pth"
    data = bytearray(weights)
    data[200:400] = bytes(200)  # inside the archive: the zip directory survives, a member does not
    corrupt.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"corrupt.pth is not a readable PyTorch checkpoint"):
        ck.load_checkpoint(corrupt)


# --- the command line ---------------------------------------------------------------------------------------------


@pytest.fixture
def cli_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: FileServer, weights: bytes) -> Path:
    server.files["/tiny.pt"] = weights
    server.files["/pinned.pt"] = weights
    listing = tmp_path / "checkpoints.txt"
    listing.write_text(
        f"tiny    sam2 configs/sam2.1/sam2.1_hiera_t.yaml -              Apache-2.0   -  {server.base_url}/tiny.pt\n"
        f"pinned  sam2 configs/sam2.1/sam2.1_hiera_t.yaml image_size=512 CC-BY-SA-4.0 {sha(weights)} "
        f"{server.base_url}/pinned.pt\n"
    )
    monkeypatch.setenv("ZEROSHOT_CHECKPOINTS", str(listing))
    return listing


def test_cli_list_shows_every_shipped_entry_with_its_licence(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["checkpoints", "list"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines()[1:] if line.strip()}
    entries = ck.read_checkpoint_list()
    assert set(entries) <= set(rows)
    for name, e in entries.items():
        assert e.licence in rows[name] and "missing" in rows[name]
    assert "pinned" in rows["medsam2"] and "first use" in rows["sam2.1-tiny"]


def test_cli_download_verify_path(cli_list: Path, capsys: pytest.CaptureFixture[str], weights: bytes) -> None:
    assert main(["checkpoints", "download", "--quiet", "tiny", "pinned"]) == 0
    out = capsys.readouterr().out
    assert f"tiny: {sha(weights)}" in out and "recorded on first use" in out

    assert main(["checkpoints", "list"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"tiny\s+sam2\s+Apache-2.0\s+recorded\s+verified", out)
    assert re.search(r"pinned\s+sam2\s+CC-BY-SA-4.0\s+pinned\s+verified", out)

    assert main(["checkpoints", "path", "pinned"]) == 0
    path = Path(capsys.readouterr().out.strip())
    assert path.read_bytes() == weights

    assert main(["checkpoints", "verify"]) == 0
    assert "2 verified" in capsys.readouterr().out

    path.write_bytes(b"changed")
    assert main(["checkpoints", "verify", "pinned", "tiny"]) == 1
    out = capsys.readouterr().out
    assert re.search(r"pinned\s+MISMATCH", out) and "1 verified, 1 failed" in out
    assert main(["checkpoints", "path", "pinned"]) == 2
    assert "refusing to load" in capsys.readouterr().err


def test_cli_errors_are_one_line_messages(cli_list: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["checkpoints", "path", "tiny"]) == 2
    assert "zeroshot checkpoints download tiny" in capsys.readouterr().err
    assert main(["checkpoints", "download", "nope"]) == 2
    assert "unknown checkpoint 'nope'" in capsys.readouterr().err
    assert main(["checkpoints", "download", "--from", str(tmp_path), "tiny", "pinned"]) == 2
    assert "--from takes exactly one NAME" in capsys.readouterr().err
    assert main(["checkpoints", "verify", "tiny"]) == 1
    assert re.search(r"tiny\s+missing", capsys.readouterr().out)
