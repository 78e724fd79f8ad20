"""Fault cases of the OpenAI-compatible client, against a misbehaving HTTP server on
127.0.0.1 started here (bounded request counts, always shut down): replies cut off
mid-body, connections dropped, 200s that are not chat completions, a server that echoes
the Authorization header back (raw, URL-encoded, JSON-escaped), and the count of HTTP
requests reaching the cache record. Back-off delays are a few milliseconds."""
import json
import re
import sys
import threading
import time
import traceback
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mir_core.annotation import (AnnotationChain, BackendError, ChainConfig, OpenAIChatBackend,
                                 OpenAIConfig)
from mir_core.annotation.backends import redact

KEY = "sk-test-secret-0123456789abcdef"
# a key that is not sk-shaped and changes under URL-encoding and JSON escaping: only the
# exact-key redaction can catch it
ODD_KEY = "opaque/Key+99=xyz~s3cr3t\"q"
RANK_TEXT = "Interaction with Others > Facial Expressions > Speakers' Actions"
AREA = "LLM client"


def _completion(text: str) -> bytes:
    return json.dumps({"id": "x", "object": "chat.completion", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": text},
         "finish_reason": "stop"}], "usage": {"prompt_tokens": 42,
                                              "completion_tokens": 7}}).encode()


def _echo_forms(auth: str) -> dict:
    """The Authorization header as a careless server might echo it."""
    key = auth.split(" ", 1)[1] if " " in auth else auth
    return {
        "message": f"invalid credentials; you sent Authorization: {auth}",
        "headers": {"Authorization": auth},
        "key_only": key,
        "url_encoded": urllib.parse.quote(f"Authorization={auth}", safe=""),
        "url_encoded_key": urllib.parse.quote(key, safe=""),
        "url_encoded_lower": re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(),
                                    urllib.parse.quote(key, safe="")),
        "json_escaped": json.dumps(json.dumps({"auth": auth, "key": key})),
        "php_escaped": key.replace("/", "\\/"),
        "unicode_escaped": "".join(f"\\u{ord(c):04x}" for c in key),
    }


class FaultServer:
    """Chat-completions server that pops scripted actions, one per request:

    * ``("ok", text)``                       - a normal completion
    * ``("status", code, text)``             - an OpenAI-style error body
    * ``("raw", code, body_bytes)``          - any body, exact bytes
    * ``("cut", body_bytes, n)``             - Content-Length of the whole body, only the
      first ``n`` bytes sent, then the connection closed
    * ``("drop",)``                          - the connection closed without a reply
    * ``("echo", code)``                     - an error body echoing the Authorization
      header in several encodings
    An empty script answers ``("ok", RANK_TEXT)``; more than ``limit`` requests fail the
    test (the client must not loop)."""

    def __init__(self, limit: int = 40):
        self.requests = []
        self.script = []
        self.limit = limit
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, code: int, data: bytes, length: int | None = None):
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data) if length is None else length))
                self.end_headers()
                self.wfile.write(data)
                self.wfile.flush()

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with server.lock:
                    server.requests.append({"headers": dict(self.headers),
                                            "body": json.loads(body)})
                    n = len(server.requests)
                    action = server.script.pop(0) if server.script else ("ok", RANK_TEXT)
                if n > server.limit:
                    action = ("status", 400, "request limit of the fault server exceeded")
                self.close_connection = True
                try:
                    kind = action[0]
                    if kind == "ok":
                        self._send(200, _completion(action[1]))
                    elif kind == "status":
                        self._send(action[1], json.dumps({"error": {"message": action[2]}})
                                   .encode())
                    elif kind == "raw":
                        self._send(action[1], action[2])
                    elif kind == "cut":
                        data, keep = action[1], action[2]
                        self._send(200, data[:keep], length=len(data))
                    elif kind == "drop":
                        pass
                    elif kind == "echo":
                        auth = self.headers.get("Authorization", "")
                        err = {"error": {"message": f"bad key: {auth}", "type": "auth",
                                         "echo": _echo_forms(auth)}}
                        self._send(action[1], json.dumps(err).encode())
                    else:
                        raise AssertionError(f"unknown action {action!r}")
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def server():
    s = FaultServer()
    try:
        yield s
    finally:
        s.close()


def _backend(server, key=KEY, log=None, **kw):
    kw.setdefault("backoff_s", 0.005)
    kw.setdefault("backoff_max_s", 0.02)
    kw.setdefault("timeout_s", 5.0)
    cfg = OpenAIConfig(base_url=server.url, model="fault-model", api_key=key, **kw)
    return OpenAIChatBackend(cfg, log=log if log is not None else (lambda *a: None))


def _chain(backend, data_root, cache_path, n=3, log=None, **kw):
    cfg = ChainConfig(sample_size=n, data_root=data_root, cache_path=cache_path, **kw)
    return AnnotationChain(backend, cfg, log=log if log is not None else (lambda *a: None))


def _records(cache_path):
    return [json.loads(x) for x in cache_path.read_text().splitlines() if x.strip()]


def _leaks(text: str, key: str) -> list[str]:
    """The decodings of ``text`` in which ``key`` shows up (empty: no leak)."""
    found = []
    candidates = {"raw": text, "unquoted": urllib.parse.unquote(text),
                  "unquoted twice": urllib.parse.unquote(urllib.parse.unquote(text)),
                  "unquote_plus": urllib.parse.unquote_plus(text),
                  "json-unescaped": text.replace("\\\\", "\\").replace("\\/", "/")
                  .replace('\\"', '"')}
    try:
        candidates["unicode-unescaped"] = text.encode("latin-1", "backslashreplace").decode(
            "unicode_escape")
    except UnicodeDecodeError:
        pass
    for name, t in candidates.items():
        if key in t:
            found.append(name)
    return found


# =========================================================================== cut-off replies
@pytest.mark.fault(area=AREA, case="reply body cut off mid-way (Content-Length larger than "
                   "the body, then the connection closed), once",
                   before="http.client.IncompleteRead escaped the client unretried and "
                          "aborted the whole step",
                   after="classified as a transient transport failure and retried; the next "
                         "request's reply is returned, Reply.http_requests == 2")
def test_cut_off_body_is_retried_then_succeeds(server):
    logs = []
    full = _completion("A > E > I")
    server.script = [("cut", full, len(full) // 2), ("ok", "A > E > I")]
    t0 = time.perf_counter()
    r = _backend(server, log=logs.append).generate([{"role": "user", "content": "x"}])
    assert time.perf_counter() - t0 < 5
    assert r.text == "A > E > I" and r.http_requests == 2 and len(server.requests) == 2
    assert len(logs) == 1 and "IncompleteRead" in logs[0] and "retry 1/4" in logs[0]


@pytest.mark.fault(area=AREA, case="reply body always cut off mid-way for one item of a step",
                   before="IncompleteRead aborted the whole step: no record, the other items "
                          "never ran",
                   after="after max_retries the item is a recorded transport failure (kind "
                         "incomplete_read, the partial body in raw_body, http_requests "
                         "counted); the step goes on and the other items succeed")
def test_cut_off_body_always_is_recorded_and_step_continues(server, data_root, tmp_path):
    full = _completion(RANK_TEXT)
    partial = full[:37]
    server.script = [("cut", full, 37)] * 3            # the first item: 3 requests, all cut
    b = _backend(server, max_retries=2, max_concurrency=1)
    cache = tmp_path / "c.jsonl"
    ranks = _chain(b, data_root, cache).rank()
    assert len(server.requests) == 3 + 2                # 3 for the failing item, 1 per other
    assert ranks.ok.tolist() == [False, True, True]
    assert ranks.stats.transport_failures == 1 and ranks.stats.failures == 0
    assert ranks.stats.http_requests == 5 and ranks.stats.attempts == 3
    recs = {r["sample_id"]: r for r in _records(cache)}
    bad = recs[ranks.keys[0]]
    assert bad["ok"] is False and bad["extra"]["transport_error"] is True
    assert bad["extra"]["failure"] == "incomplete_read"
    assert bad["raw_body"] == partial.decode()
    assert bad["http_requests"] == 3 and bad["attempts"] == 1
    assert "IncompleteRead" in bad["error"] and "no reply after 3 attempts" in bad["error"]
    for k in ranks.keys[1:]:
        assert recs[k]["ok"] is True and recs[k]["http_requests"] == 1
    # a transport failure is not "done": the next run asks again, and only for that item
    again = _chain(b, data_root, cache).rank()
    assert again.ok.all() and again.stats.queried == 1 and again.stats.cache_hits == 2
    assert len(server.requests) == 6


@pytest.mark.fault(area=AREA, case="connection closed without any reply (RemoteDisconnected)",
                   before="retried, but the extra request was counted nowhere",
                   after="classified as a connection failure and retried; the reply after it "
                         "is returned with http_requests == 2")
def test_dropped_connection_is_retried(server):
    server.script = [("drop",), ("ok", "fine")]
    r = _backend(server).generate([{"role": "user", "content": "x"}])
    assert r.text == "fine" and r.http_requests == 2 and len(server.requests) == 2


# =========================================================================== bad 200s
@pytest.mark.fault(area=AREA, case="HTTP 200 with a body that is not JSON (an HTML proxy page)",
                   before="not retried: BackendError at once, the raw text was lost",
                   after="retried like other transport errors; the next request's reply is "
                         "returned")
def test_non_json_200_is_retried(server):
    logs = []
    server.script = [("raw", 200, b"<html><body>502 Bad Gateway (proxy)</body></html>"),
                     ("ok", "I > E > A")]
    r = _backend(server, log=logs.append).generate([{"role": "user", "content": "x"}])
    assert r.text == "I > E > A" and r.http_requests == 2 and len(server.requests) == 2
    assert len(logs) == 1 and "not JSON" in logs[0] and "Bad Gateway" in logs[0]


@pytest.mark.fault(area=AREA, case="HTTP 200 with a non-JSON body on every request, the body "
                   "quoting the Authorization header",
                   before="not retried, the raw text was lost (and would have carried the key)",
                   after="retried max_retries times, then BackendError(kind='non_json') whose "
                         "raw holds the redacted body; the chain records it in raw_body")
def test_non_json_200_final_failure_keeps_redacted_body(server, data_root, tmp_path):
    body = (f"<html>upstream error; request had Authorization: Bearer {KEY} and "
            f"key={KEY}</html>").encode()
    server.script = [("raw", 200, body)] * 2
    b = _backend(server, max_retries=1, max_concurrency=1)
    with pytest.raises(BackendError, match="no reply after 2 attempts") as e:
        b.generate([{"role": "user", "content": "x"}])
    err = e.value
    assert err.kind == "non_json" and err.http_requests == 2 and err.status == 200
    assert err.raw.startswith("<html>upstream error") and "[REDACTED]" in err.raw
    assert not _leaks(err.raw, KEY) and not _leaks(str(err), KEY)
    assert len(server.requests) == 2
    # through the chain: recorded with the body, the other items go on
    server.script = [("raw", 200, body)] * 2
    cache = tmp_path / "c.jsonl"
    ranks = _chain(b, data_root, cache, n=2).rank()
    assert ranks.ok.tolist() == [False, True]
    rec = _records(cache)[0]
    assert rec["extra"]["failure"] == "non_json" and rec["http_requests"] == 2
    assert rec["raw_body"].startswith("<html>upstream error") and "[REDACTED]" in rec["raw_body"]
    assert not _leaks(cache.read_text(), KEY)


@pytest.mark.fault(area=AREA, case="HTTP 200 JSON without choices (an error object with status "
                   "200)",
                   before="BackendError 'unexpected response shape' at once, not retried",
                   after="retried; the next request's reply is returned, and on final failure "
                         "the JSON body is kept (kind bad_shape)")
def test_json_200_without_choices_is_retried(server):
    bad = json.dumps({"error": {"message": "model overloaded"}}).encode()
    server.script = [("raw", 200, bad), ("ok", "A > I > E")]
    b = _backend(server, max_retries=1)
    r = b.generate([{"role": "user", "content": "x"}])
    assert r.text == "A > I > E" and r.http_requests == 2
    server.script = [("raw", 200, bad)] * 2
    with pytest.raises(BackendError) as e:
        b.generate([{"role": "user", "content": "x"}])
    assert e.value.kind == "bad_shape" and e.value.raw == bad.decode()
    assert e.value.http_requests == 2 and len(server.requests) == 4


# =========================================================================== key leaks
def _assert_no_leak(key: str, *texts: str):
    for t in texts:
        assert not _leaks(t, key), f"key leaked ({_leaks(t, key)}) in: {t[:300]!r}"


@pytest.mark.fault(area=AREA, case="500 error body echoing the Authorization header (raw, "
                   "URL-encoded, JSON-escaped), on every request",
                   before="the key went to stderr (retry log lines, exception text) and into "
                          "the cache's error field",
                   after="every log line, the exception text and traceback, the cache record "
                         "(error, raw_body) hold [REDACTED] instead; the key appears nowhere")
@pytest.mark.parametrize("key", [KEY, ODD_KEY], ids=["sk-key", "opaque-key"])
def test_echoed_key_in_500_never_leaks(server, data_root, tmp_path, capfd, key):
    server.script = [("echo", 500)] * 3
    b = _backend(server, key=key, max_retries=2, max_concurrency=1, log=print)   # to stdout
    with pytest.raises(BackendError) as e:
        b.generate([{"role": "user", "content": "x"}])
    traceback.print_exception(e.value, file=sys.stderr)          # what a crashed run shows
    print(e.value, e.value.raw, file=sys.stderr)
    assert e.value.http_requests == 3 and e.value.status == 500
    assert "[REDACTED]" in str(e.value) and "[REDACTED]" in e.value.raw
    assert e.value.__cause__ is None and e.value.__suppress_context__
    # the same through the chain, logging with print
    server.script = [("echo", 500)] * 3
    cache = tmp_path / "c.jsonl"
    ranks = _chain(b, data_root, cache, n=2, log=print).rank()
    assert ranks.ok.tolist() == [False, True] and len(server.requests) == 3 + 3 + 1
    out, err = capfd.readouterr()
    assert out.count("HTTP 500") >= 4 and "Traceback" in err
    rec = _records(cache)[0]
    assert rec["extra"]["failure"] == "http_status" and rec["extra"]["http_status"] == 500
    assert "[REDACTED]" in rec["error"] and "[REDACTED]" in rec["raw_body"]
    _assert_no_leak(key, out, err, str(e.value), e.value.raw, cache.read_text(),
                    repr(b), repr(ranks.errors))
    # the server did get the key (the test is not vacuous)
    assert server.requests[0]["headers"]["Authorization"] == f"Bearer {key}"


@pytest.mark.fault(area=AREA, case="401 error body echoing the Authorization header",
                   before="the key went into the BackendError text (stderr) and the cache's "
                          "error field",
                   after="not retried (one request); the error and the record are redacted; "
                         "the step goes on and records every item as a transport failure")
def test_echoed_key_in_401_never_leaks(server, data_root, tmp_path, capfd):
    server.script = [("echo", 401)]
    b = _backend(server, key=ODD_KEY, max_concurrency=1, log=print)
    with pytest.raises(BackendError, match="HTTP 401") as e:
        b.generate([{"role": "user", "content": "x"}])
    assert len(server.requests) == 1 and e.value.http_requests == 1
    assert e.value.retryable is False and e.value.kind == "http_status"
    print(e.value, file=sys.stderr)
    server.script = [("echo", 401)] * 2
    cache = tmp_path / "c.jsonl"
    ranks = _chain(b, data_root, cache, n=2, log=print).rank()
    assert not ranks.ok.any() and ranks.stats.transport_failures == 2
    assert len(server.requests) == 3 and ranks.stats.http_requests == 2
    out, err = capfd.readouterr()
    assert "HTTP 401" in err
    _assert_no_leak(ODD_KEY, out, err, str(e.value), e.value.raw, cache.read_text())
    for rec in _records(cache):
        assert "[REDACTED]" in rec["error"] and rec["extra"]["http_status"] == 401


@pytest.mark.fault(area=AREA, case="a 200 whose reply text quotes the Authorization header",
                   before="the key went into the reply text, the cache's raw field and every "
                          "printout of it",
                   after="the reply text is redacted like every other string leaving the client")
def test_echoed_key_in_reply_text_is_redacted(server):
    server.script = [("ok", f"I saw Authorization: Bearer {ODD_KEY} and {ODD_KEY}; A > E > I")]
    r = _backend(server, key=ODD_KEY).generate([{"role": "user", "content": "x"}])
    assert r.text.endswith("A > E > I") and r.text.count("[REDACTED]") == 2
    _assert_no_leak(ODD_KEY, r.text)


@pytest.mark.fault(area=AREA, case="HTTP debug output switched on process-wide (an installed "
                   "urllib opener with HTTPHandler(debuglevel=1))",
                   before="urllib.request.urlopen used the global opener, whose http.client "
                          "debug lines print every request header, Authorization included",
                   after="the client uses its own opener with debug output off: nothing of "
                         "the request reaches stdout/stderr")
def test_http_debug_level_never_prints_the_key(server, capfd):
    noisy = urllib.request.build_opener(urllib.request.HTTPHandler(debuglevel=1))
    urllib.request.install_opener(noisy)
    try:
        with urllib.request.urlopen(urllib.request.Request(
                server.url + "/chat/completions", data=b"{}", method="POST",
                headers={"Authorization": "Bearer probe-token"})) as r:
            r.read()
        assert "probe-token" in capfd.readouterr().out      # the trap is armed
        r = _backend(server, key=ODD_KEY).generate([{"role": "user", "content": "x"}])
    finally:
        urllib.request.install_opener(None)
    out, err = capfd.readouterr()
    assert r.text == RANK_TEXT and len(server.requests) == 2
    assert server.requests[1]["headers"]["Authorization"] == f"Bearer {ODD_KEY}"
    _assert_no_leak(ODD_KEY, out, err)


def test_redact_covers_encodings():
    """The redaction function itself, on every form a server may echo."""
    for key in (KEY, ODD_KEY):
        for name, form in _echo_forms(f"Bearer {key}").items():
            text = json.dumps(form) if not isinstance(form, str) else form
            red = redact(text, [key])
            assert not _leaks(red, key), (name, red)
            assert redact(red, [key]) == red                        # idempotent
    # without the configured key: bearer tokens, sk- keys, credential pairs
    assert redact("Authorization: Bearer abc.def-123") == "Authorization: [REDACTED]"
    assert redact("got bearer%20tok/en%3D") == "got bearer%20[REDACTED]"
    assert redact(f'{{"k": "{KEY}"}}') == '{"k": "[REDACTED]"}'
    assert redact(f"a\\n{KEY}") == "a\\n[REDACTED]"
    assert redact("https://h/v1?api_key=hunter2&x=1") == "https://h/v1?api_key=[REDACTED]&x=1"
    # ordinary text is left alone
    for text in ("/data/disk-cache-annotation", "sk-learn", "MIR_LLM_API_KEY when needed",
                 "HTTP 500 Internal Server Error"):
        assert redact(text) == text
    assert redact(None) is None and redact(b"Bearer xyz") == "Bearer [REDACTED]"


# =========================================================================== counting
@pytest.mark.fault(area=AREA, case="server fails twice (500, 503) then answers",
                   before="HTTP retries were not counted: the record said attempts: 1 after "
                          "three requests",
                   after="the record says attempts: 1 (backend calls) and http_requests: 3; "
                         "RunStats.http_requests sums them")
def test_http_requests_are_counted_in_the_record(server, data_root, tmp_path):
    server.script = [("status", 500, "overloaded"), ("status", 503, "unavailable"),
                     ("ok", RANK_TEXT)]
    cache = tmp_path / "c.jsonl"
    ranks = _chain(_backend(server), data_root, cache, n=1).rank()
    assert ranks.ok.all() and len(server.requests) == 3
    (rec,) = _records(cache)
    assert rec["http_requests"] == 3 and rec["attempts"] == 1 and rec["ok"] is True
    assert ranks.stats.http_requests == 3 and ranks.stats.attempts == 1


@pytest.mark.fault(area=AREA, case="an unparsable reply, then a 500, then a parsable reply",
                   before="attempts counted backend calls only: the HTTP request retried in "
                          "between was invisible in the record",
                   after="both counts kept apart and exact: attempts: 2 (parse attempts), "
                         "http_requests: 3, both raw replies kept")
def test_parse_and_http_retries_are_counted_apart(server, data_root, tmp_path):
    server.script = [("ok", "I cannot tell."), ("status", 500, "oops"), ("ok", RANK_TEXT)]
    cache = tmp_path / "c.jsonl"
    ranks = _chain(_backend(server), data_root, cache, n=1).rank()
    assert ranks.ok.all() and len(server.requests) == 3
    (rec,) = _records(cache)
    assert rec["attempts"] == 2 and rec["http_requests"] == 3
    assert rec["raw"] == ["I cannot tell.", RANK_TEXT]


@pytest.mark.fault(area=AREA, case="a parse retry whose request then fails for good",
                   before="the transport error discarded the earlier reply and its counts",
                   after="a recorded transport failure that keeps the earlier raw reply, "
                         "attempts: 2 and http_requests: 1 + 2")
def test_transport_failure_after_parse_retry_keeps_earlier_reply(server, data_root, tmp_path):
    server.script = [("ok", "no idea"), ("status", 502, "bad gateway"),
                     ("status", 502, "bad gateway")]
    cache = tmp_path / "c.jsonl"
    ranks = _chain(_backend(server, max_retries=1), data_root, cache, n=1).rank()
    assert not ranks.ok.any() and ranks.stats.transport_failures == 1
    (rec,) = _records(cache)
    assert rec["raw"] == ["no idea"] and rec["attempts"] == 2 and rec["http_requests"] == 3
    assert rec["extra"]["http_status"] == 502 and "bad gateway" in rec["raw_body"]
