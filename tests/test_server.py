"""The web API through FastAPI's test client: good and bad inputs, limits, concurrency."""

from __future__ import annotations

import base64
import io
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from conftest import photo
from fastapi.testclient import TestClient
from PIL import Image

from compressnet.codec import load, preview_array
from compressnet.server.app import create_app
from compressnet.server.service import compress_upload


def png(h: int, w: int, seed: int = 0) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(photo(h, w, seed)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def client(spn_weights):
    app = create_app(str(spn_weights), max_upload=200_000, max_pixels=300 * 300)
    with TestClient(app) as c:
        yield c


def test_page_models_and_openapi(client):
    page = client.get("/")
    assert page.status_code == 200 and "Drop a photo here" in page.text
    models = client.get("/api/models").json()
    assert models["qualities"] == [1, 2] and models["limits"]["max_pixels"] == 90_000
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/compress", "/api/decompress", "/api/models", "/api/jobs/{job_id}"} <= set(paths)
    assert client.get("/docs").status_code == 200


def test_compress_compares_at_equal_size(client, spn_weights):
    r = client.post("/api/compress", files={"file": ("a.png", png(96, 128), "image/png")},
                    data={"quality": "1"})
    assert r.status_code == 200, r.text
    body = r.json()
    data = base64.b64decode(body["cnet"])
    assert body["bytes"] == len(data) and body["quality"] == 1 and body["width"] == 128
    codec = load(str(spn_weights))
    decoded = codec.decompress_array(data)
    shown = np.asarray(Image.open(io.BytesIO(base64.b64decode(body["decoded"].split(",")[1]))))
    np.testing.assert_array_equal(decoded, shown)
    assert [c["codec"] for c in body["comparisons"]] == ["hevc", "avif", "hevc@1/2", "avif@1/2", "jpeg"]
    assert body["realism"] == 0  # a model without a realism decoder has only the faithful one
    for c in body["comparisons"]:
        assert c["bytes"] <= body["bytes"] or not c["fits"]
        assert c["image"].startswith("data:image/png;base64,")


def test_decompress_round_trip_and_corruption(client, spn_weights):
    data = load(str(spn_weights)).compress(photo(40, 56), quality=2)
    r = client.post("/api/decompress", files={"file": ("x.cnet", data)})
    assert r.status_code == 200 and r.json()["width"] == 56 and r.json()["quality"] == 2
    bad = bytearray(data)
    bad[-1] ^= 0xFF
    r = client.post("/api/decompress", files={"file": ("x.cnet", bytes(bad))})
    assert r.status_code == 400 and "checksum" in r.json()["detail"]
    r = client.post("/api/decompress", files={"file": ("x.cnet", b"not a cnet file")})
    assert r.status_code == 400 and "magic" in r.json()["detail"]


@pytest.mark.parametrize("content,status,message", [
    (b"", 400, "empty"),
    (b"<html>not an image</html>", 400, "not an image"),
    (png(64, 64)[:150], 400, "truncated"),
    (png(320, 320), 413, "too large"),
    (b"\x00" * 250_000, 413, "upload too large"),
])
def test_bad_uploads(client, content, status, message):
    r = client.post("/api/compress", files={"file": ("f.png", content)})
    assert r.status_code == status and message in r.json()["detail"]
    assert client.get("/api/models").status_code == 200  # the server is still up


def test_bad_parameters(client):
    r = client.post("/api/compress", files={"file": ("a.png", png(32, 32))}, data={"quality": "9"})
    assert r.status_code == 400 and "quality" in r.json()["detail"]
    r = client.post("/api/compress", files={"file": ("a.png", png(32, 32))}, data={"quality": "x"})
    assert r.status_code == 422


def test_job_progress_until_done(client):
    r = client.post("/api/jobs/compress", files={"file": ("a.png", png(64, 64))}, data={"compare": "false"})
    assert r.status_code == 202
    job_id = r.json()["id"]
    deadline = time.monotonic() + 60
    while True:
        job = client.get(f"/api/jobs/{job_id}").json()
        assert 0.0 <= job["progress"] <= 1.0
        if job["state"] == "done":
            assert job["result"]["comparisons"] == []
            break
        assert job["state"] in ("queued", "running") and time.monotonic() < deadline
        time.sleep(0.05)
    assert client.get("/api/jobs/nope").status_code == 404


def test_concurrent_requests_all_succeed(client):
    def one(seed: int) -> int:
        files = {"file": (f"{seed}.png", png(48, 64, seed))}
        return client.post("/api/compress", files=files, data={"compare": "false"}).status_code

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(one, range(4))) == [200] * 4


def test_target_bpp(client):
    r = client.post("/api/compress", files={"file": ("a.png", png(64, 96))},
                    data={"target_bpp": "5", "compare": "false"})
    assert r.status_code == 200 and r.json()["bpp"] <= 5


def test_refined_compression_reports_its_steps_and_is_no_larger(client, spn_weights):
    files = {"file": ("a.png", png(48, 64, seed=3))}
    plain = client.post("/api/compress", files=files, data={"compare": "false", "quality": "2"})
    r = client.post("/api/jobs/compress", files=files,
                    data={"compare": "false", "quality": "2", "refine": "3"})
    job_id, stages = r.json()["id"], set()
    deadline = time.monotonic() + 60
    while (job := client.get(f"/api/jobs/{job_id}").json())["state"] != "done":
        assert job["state"] in ("queued", "running") and time.monotonic() < deadline
        stages.add(job["stage"])
        time.sleep(0.01)
    refined = job["result"]
    assert refined["refine"] == 3 and plain.json()["refine"] == 0
    assert refined["bytes"] <= plain.json()["bytes"]
    assert refined["cnet"] != plain.json()["cnet"]
    codec = load(str(spn_weights))  # what the page offers for download decodes as shown
    data = base64.b64decode(refined["cnet"])
    assert data == codec.compress(photo(48, 64, seed=3), quality=2, refine=3)
    assert stages <= ({"queued", "reading the image", f"compressing with {codec.name}", "decoding",
                       f"compressing with {codec.name}: tile 1 of 1", "decoding: tile 1 of 1"}
                      | {f"refining the latent: step {i} of 3" for i in range(1, 4)})
    seen = []  # each step moves the job's bar, between compressing and decoding
    compress_upload(codec, png(48, 64, seed=3), "a.png", 2, None, False, 10**6,
                    lambda p, stage: seen.append((p, stage)), refine=3)
    steps = [p for p, stage in seen if stage.startswith("refining")]
    assert len(steps) == 3 and steps == sorted(steps) and 0.15 < steps[0] and steps[-1] <= 0.45


def test_refine_out_of_range_is_refused(client):
    from compressnet.server.app import MAX_REFINE

    for steps in (-1, MAX_REFINE + 1):
        r = client.post("/api/compress", files={"file": ("a.png", png(32, 32))},
                        data={"refine": str(steps)})
        assert r.status_code == 400 and "refine" in r.json()["detail"]


def test_preview_of_a_cnet_file(client, spn_weights):
    codec = load(str(spn_weights))
    data = codec.compress(photo(64, 96, seed=5), 1)
    r = client.post("/api/preview", files={"file": ("a.cnet", data)})
    assert r.status_code == 200
    body = r.json()
    assert (body["width"], body["height"]) == (96, 64)
    png_bytes = base64.b64decode(body["preview"].split(",", 1)[1])
    shown = np.asarray(Image.open(io.BytesIO(png_bytes)))
    np.testing.assert_array_equal(shown, preview_array(data))
    assert body["blocks"] == [shown.shape[1], shown.shape[0]]
    plain = codec.compress(photo(64, 96, seed=5), 1, colour=False)
    r = client.post("/api/preview", files={"file": ("b.cnet", plain)})
    assert r.status_code == 400 and "no colour layer" in r.json()["detail"]
    r = client.post("/api/preview", files={"file": ("c.cnet", b"CN\x07junk")})
    assert r.status_code == 400


def test_a_phone_photo_in_heic_is_accepted(client):
    from compressnet.image import register_plugins

    register_plugins()
    buf = io.BytesIO()
    Image.fromarray(photo(64, 96)).save(buf, format="HEIF", quality=90)
    r = client.post("/api/compress", files={"file": ("IMG_0001.HEIC", buf.getvalue(), "image/heic")},
                    data={"quality": "1"})
    assert r.status_code == 200, r.text
    assert r.json()["width"] == 96 and r.json()["height"] == 64


def test_decoding_endpoints_apply_the_pixel_limit_from_the_header(client, spn_weights):
    """A small file of a large image (here 400x300 against the 300x300 limit) is refused with
    413 from its header, before any decoding; within the limit it decodes."""
    codec = load(str(spn_weights))
    big = codec.compress(photo(300, 400), quality=1)
    for endpoint in ("/api/decompress", "/api/preview"):
        r = client.post(endpoint, files={"file": ("big.cnet", big)})
        assert r.status_code == 413 and "above this server's limit of 90,000 pixels" in r.json()["detail"]
    small = codec.compress(photo(48, 64), quality=1)
    assert client.post("/api/decompress", files={"file": ("s.cnet", small)}).status_code == 200


def test_realism_field(client, spn_weights):
    data = load(str(spn_weights)).compress(photo(40, 56), quality=1)
    r = client.post("/api/decompress", files={"file": ("x.cnet", data)}, data={"realism": "0"})
    assert r.status_code == 200 and r.json()["realism"] == 0
    r = client.post("/api/decompress", files={"file": ("x.cnet", data)}, data={"realism": "1"})
    assert r.status_code == 400 and "no realism decoder" in r.json()["detail"]
    r = client.post("/api/compress", files={"file": ("a.png", png(48, 64), "image/png")},
                    data={"realism": "2", "compare": "false"})
    assert r.status_code == 400 and "from 0 to 1" in r.json()["detail"]


def test_a_declared_body_above_the_limit_is_refused_before_it_is_read():
    """A client declaring more than the limit (and sending a trickle, or nothing) gets its 413 at
    once: the body is never waited for."""
    import asyncio
    import json

    from compressnet.server.limits import BodyLimit

    async def app(scope, receive, send):  # pragma: no cover - must not be reached
        raise AssertionError("the app ran")

    async def never():  # a client that never sends its body
        await asyncio.Event().wait()

    sent = []

    async def send(message):
        sent.append(message)

    limit = BodyLimit(app, max_body=1000, max_upload=900)
    for declared in (b"10000000000", b"not-a-number"):
        sent.clear()
        scope = {"type": "http", "headers": [(b"content-length", declared)]}
        asyncio.run(asyncio.wait_for(limit(scope, never, send), timeout=5))
        assert sent[0]["status"] == 413 and (b"connection", b"close") in sent[0]["headers"]
        assert json.loads(sent[1]["body"])["detail"] == "upload too large (limit 900 bytes)"


def test_a_streamed_body_past_the_limit_is_cut_off(client):
    """No Content-Length (chunked): the body is counted as it arrives and stopped at the limit."""
    def chunks():
        boundary = b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f.png\"\r\n\r\n"
        yield boundary
        for _ in range(40):
            yield b"\0" * 10_000  # 400 kB against the 200 kB limit

    r = client.post("/api/compress", content=chunks(),
                    headers={"content-type": "multipart/form-data; boundary=b"})
    assert r.status_code == 413 and "upload too large" in r.json()["detail"]
    assert client.get("/api/models").status_code == 200


def test_api_docs_work_offline(client):
    page = client.get("/docs")
    assert page.status_code == 200
    for endpoint in ("/api/compress", "/api/decompress", "/api/preview", "/api/jobs/{job_id}"):
        assert endpoint in page.text
    assert "realism" in page.text and "curl" in page.text
    assert "http" not in page.text.replace("http://127.0.0.1:8000", "")  # nothing from elsewhere


def test_a_request_past_the_time_limit_answers_503(spn_weights):
    app = create_app(str(spn_weights), time_limit=1e-9)
    data = load(str(spn_weights)).compress(photo(48, 64), quality=1)
    with TestClient(app) as c:
        r = c.post("/api/decompress", files={"file": ("s.cnet", data)})
        assert r.status_code == 503 and "--time-limit" in r.json()["detail"]
        r = c.post("/api/compress", files={"file": ("a.png", png(48, 64))}, data={"compare": "false"})
        assert r.status_code == 503
        assert c.get("/api/models").status_code == 200
