"""The OpenAI-compatible client against a small HTTP server on 127.0.0.1 started here:
request shape (model, messages, image parts, auth header), canned replies, retry after a
500, timeouts, no retry on a 400, bounded concurrency through the chain, and the key never
reaching logs, reprs or the cache."""
import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from mir_core.annotation import (AnnotationChain, BackendError, ChainConfig, OpenAIChatBackend,
                                 OpenAIConfig, make_backend)
from mir_core.annotation.backends import encode_png

KEY = "sk-test-secret-0123456789"


class FakeServer:
    """Chat-completions server: pops scripted responses (status, reply text, delay)."""

    def __init__(self):
        self.requests = []
        self.script = []
        self.lock = threading.Lock()
        self.active = 0
        self.max_active = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests.append({"path": self.path, "headers": dict(self.headers),
                                            "body": body})
                    status, text, delay = (server.script.pop(0) if server.script
                                           else (200, "I > A > E", 0.0))
                    server.active += 1
                    server.max_active = max(server.max_active, server.active)
                try:
                    time.sleep(delay)
                    if status == 200:
                        payload = {"id": "x", "object": "chat.completion", "choices": [
                            {"index": 0, "message": {"role": "assistant", "content": text},
                             "finish_reason": "stop"}],
                            "usage": {"prompt_tokens": 42, "completion_tokens": 7}}
                    else:
                        payload = {"error": {"message": text}}
                    data = json.dumps(payload).encode()
                    try:
                        self.send_response(status)
                        self.send_header("Content-Type", "application/json")
                        self.send_header("Content-Length", str(len(data)))
                        self.end_headers()
                        self.wfile.write(data)
                    except (BrokenPipeError, ConnectionResetError):
                        pass                  # the client gave up (timeout test)
                finally:
                    with server.lock:
                        server.active -= 1

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = FakeServer()
    yield s
    s.close()


def _backend(server, log=None, **kw):
    cfg = OpenAIConfig(base_url=server.url, model="test-model", api_key=KEY, backoff_s=0.01,
                       **kw)
    return OpenAIChatBackend(cfg, log=log if log is not None else (lambda *a: None))


def test_request_shape_images_and_auth(server):
    b = _backend(server)
    frames = np.zeros((2, 16, 24, 3), np.uint8)
    frames[1, :, :, 0] = 255
    r = b.generate([{"role": "system", "content": "be brief"},
                    {"role": "user", "content": "Describe the actions."}], images=frames,
                   max_new_tokens=33)
    assert r.text == "I > A > E" and r.prompt_tokens == 42 and r.completion_tokens == 7
    assert r.images_sent == 2
    (req,) = server.requests
    assert req["path"] == "/v1/chat/completions"
    assert req["headers"]["Authorization"] == f"Bearer {KEY}"
    body = req["body"]
    assert body["model"] == "test-model" and body["max_tokens"] == 33
    assert body["temperature"] == 0.0
    assert body["messages"][0] == {"role": "system", "content": "be brief"}
    parts = body["messages"][1]["content"]
    assert parts[0] == {"type": "text", "text": "Describe the actions."}
    images = [p for p in parts if p["type"] == "image_url"]
    assert len(images) == 2
    for p in images:
        url = p["image_url"]["url"]
        assert url.startswith("data:image/jpeg;base64,")
        jpeg = base64.b64decode(url.split(",", 1)[1])
        assert jpeg[:2] == b"\xff\xd8" and jpeg[-2:] == b"\xff\xd9"


def test_png_parts_and_no_key(server):
    cfg = OpenAIConfig(base_url=server.url + "/chat/completions", model="m", api_key=None,
                       image_format="png", image_detail=None)
    b = OpenAIChatBackend(cfg, log=lambda *a: None)
    b.generate([{"role": "user", "content": "hi"}], images=np.zeros((1, 8, 8, 3), np.uint8))
    req = server.requests[0]
    assert "Authorization" not in req["headers"]
    img = req["body"]["messages"][0]["content"][1]["image_url"]
    assert img["url"].startswith("data:image/png;base64,") and "detail" not in img
    png = base64.b64decode(img["url"].split(",", 1)[1])
    assert png == encode_png(np.zeros((8, 8, 3), np.uint8))


def test_retry_after_500_then_success(server):
    logs = []
    server.script = [(500, "overloaded", 0.0), (429, "slow down", 0.0), (200, "done", 0.0)]
    r = _backend(server, log=logs.append).generate([{"role": "user", "content": "x"}])
    assert r.text == "done" and len(server.requests) == 3
    assert any("HTTP 500" in m for m in logs) and any("HTTP 429" in m for m in logs)
    assert all(KEY not in m for m in logs)


def test_timeout_is_retried_then_fails_clearly(server):
    server.script = [(200, "late", 1.5), (200, "late", 1.5)]
    b = _backend(server, timeout_s=0.3, max_retries=1)
    t0 = time.perf_counter()
    with pytest.raises(BackendError, match="no reply after 2 attempts") as e:
        b.generate([{"role": "user", "content": "x"}])
    assert time.perf_counter() - t0 < 3.0
    assert KEY not in str(e.value)
    server.script = [(200, "late", 1.0), (200, "in time", 0.0)]
    time.sleep(1.5)                            # let the slow handlers of the first part finish
    server.requests.clear()
    assert b.generate([{"role": "user", "content": "x"}]).text == "in time"


def test_client_error_is_not_retried(server):
    server.script = [(400, "bad request: unknown model", 0.0)]
    with pytest.raises(BackendError, match="HTTP 400"):
        _backend(server).generate([{"role": "user", "content": "x"}])
    assert len(server.requests) == 1


def test_env_config_and_key_hidden(server, monkeypatch):
    monkeypatch.setenv("MIR_LLM_BASE_URL", server.url)
    monkeypatch.setenv("MIR_LLM_MODEL", "env-model")
    monkeypatch.setenv("MIR_LLM_API_KEY", KEY)
    b = make_backend("openai")
    assert b.model == "env-model" and KEY not in repr(b) and KEY not in repr(b.config)
    assert make_backend("openai", "other").model == "other"
    monkeypatch.delenv("MIR_LLM_MODEL")
    with pytest.raises(BackendError, match="MIR_LLM_MODEL"):
        make_backend("openai")


def test_chain_over_http_bounded_concurrency_and_clean_cache(server, data_root, tmp_path):
    server.script = [(200, "1. Interaction with Others\n2. Facial Expressions\n3. Speakers' "
                      "Actions", 0.2) for _ in range(8)]
    b = _backend(server, max_concurrency=3)
    cache = tmp_path / "c.jsonl"
    cfg = ChainConfig(sample_size=8, data_root=data_root, cache_path=cache)
    ranks = AnnotationChain(b, cfg, log=lambda *a: None).rank()
    assert ranks.ok.all() and (ranks.orders == [2, 1, 0]).all()
    assert len(server.requests) == 8 and 1 < server.max_active <= 3
    assert ranks.stats.prompt_tokens == 8 * 42 and ranks.stats.completion_tokens == 8 * 7
    text = cache.read_text()
    assert KEY not in text and len(text.splitlines()) == 8
    with pytest.raises(Exception, match="log-probabilities|log-likelihoods"):
        AnnotationChain(b, ChainConfig(sample_size=2, data_root=data_root, cache_path=cache,
                                       rank_mode="loglik"), log=lambda *a: None).rank()
