"""The embedded server's choice, command line and life cycle, without a model: a stand-in
``llama-server`` (a small Python script) takes the native binary's place, so these run everywhere.
The real servers are exercised by tests/test_embedded.py and tests/test_native_server.py."""

from __future__ import annotations

import os
import re
import signal
import sys
import textwrap
import time
from pathlib import Path

import pytest

from agents.errors import LLMUnavailable
from agents.local_server import LLAMA_CPP_VERSION, LocalServer, LocalServerConfig, choose_server
from carealign.engines import _style, local_server_config
from carealign.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent
GGUF = "model.gguf"


def _fake_server(tmp_path: Path, body: str) -> Path:
    """An executable that stands in for llama-server; ``body`` runs with ``port`` and ``tmp`` set."""
    script = tmp_path / "llama-server"
    script.write_text(f"#!{sys.executable}\n" + textwrap.dedent("""
        import http.server, os, subprocess, sys, time
        from pathlib import Path
        port = int(sys.argv[sys.argv.index("--port") + 1])
        tmp = Path(__file__).parent
        (tmp / "server.pid").write_text(str(os.getpid()))

        class Models(http.server.BaseHTTPRequestHandler):
            template_ok = "--jinja" in sys.argv or "unknown-template" not in str(tmp)

            def do_GET(self):
                self.send_response(200 if self.path == "/v1/models" else 404)
                self.end_headers()
                self.wfile.write(b'{"data": []}')

            def do_POST(self):
                ok = self.path == "/apply-template" and self.template_ok
                self.send_response(200 if ok else 500)
                self.end_headers()
                self.wfile.write(b'{"prompt": "ping"}' if ok else
                                 b'{"error": {"message": "this custom template is not supported, try using --jinja"}}')

            def log_message(self, *args):
                pass

        def serve():
            http.server.HTTPServer(("127.0.0.1", port), Models).serve_forever()
        """) + textwrap.dedent(body))
    script.chmod(0o755)
    (tmp_path / GGUF).write_bytes(b"GGUF")
    return script


def _cfg(tmp_path: Path, binary: Path | None, **kw) -> LocalServerConfig:
    return LocalServerConfig(model=str(tmp_path / GGUF), binary=str(binary) if binary else None, **kw)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def test_native_when_built_python_as_fallback_and_clear_errors(tmp_path: Path, monkeypatch):
    binary = _fake_server(tmp_path, "serve()\n")
    assert choose_server(_cfg(tmp_path, binary, server="auto"))[:2] == ("native", binary)
    assert choose_server(_cfg(tmp_path, binary, server="native"))[0] == "native"
    missing = tmp_path / "nope" / "llama-server"
    monkeypatch.setattr("importlib.util.find_spec", lambda name: object() if name == "llama_cpp" else None)
    kind, _, why = choose_server(_cfg(tmp_path, missing, server="auto"))
    assert kind == "python" and str(missing) in why
    assert choose_server(_cfg(tmp_path, binary, server="python"))[0] == "python"
    with pytest.raises(LLMUnavailable, match=r"not built at .*nope/llama-server.*make install"):
        choose_server(_cfg(tmp_path, missing, server="native"))
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(LLMUnavailable, match="native server"):
        choose_server(_cfg(tmp_path, missing, server="auto"))


def test_settings_reach_the_native_command_line_and_pick_the_json_style(tmp_path: Path):
    binary = _fake_server(tmp_path, "serve()\n")
    settings = load_settings(None, local_model=str(tmp_path / GGUF), local_server_binary=str(binary),
                             local_parallel=3, local_n_ctx=1024, local_threads=2)
    srv = LocalServer(local_server_config(settings, port=5555))
    cmd = srv.command()
    assert cmd[0] == str(binary)
    flags = {flag: cmd[i + 1] for i, flag in enumerate(cmd[:-1]) if flag.startswith("--")}
    # the context is per slot: the server divides --ctx-size among its --parallel slots
    assert flags["--parallel"] == "3" and flags["--ctx-size"] == "3072" and flags["--threads"] == "2"
    assert flags["--port"] == "5555" and flags["--host"] == "127.0.0.1" and "--cont-batching" in cmd
    assert "--no-jinja" in cmd and "built-in chat template" in srv.describe()
    jinja = LocalServer(local_server_config(settings.model_copy(update={"local_jinja": True})))
    assert "--jinja" in jinja.command() and "--no-jinja" not in jinja.command()
    assert "3 slots x 1024 tokens" in srv.describe() and "native" in srv.describe()
    assert _style(settings, srv) == "json_schema"
    python = LocalServer(local_server_config(settings.model_copy(update={"local_server": "python"})))
    if python.kind == "python":  # needs llama-cpp-python installed
        assert _style(settings, python) == "json_object" and "one request at a time" in python.describe()
        assert python.command()[1:3] == ["-m", "llama_cpp.server"]
    assert _style(settings, None) == "json_schema"
    assert _style(settings.model_copy(update={"response_format": "none"}), srv) == "none"


def test_makefile_builds_the_version_the_code_looks_for():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^LLAMA_VERSION\s*:=\s*(\S+)", makefile, re.M).group(1) == LLAMA_CPP_VERSION


def test_stop_ends_the_whole_process_group(tmp_path: Path):
    """Whatever the server started dies with it: the group is signalled, not only the leader."""
    binary = _fake_server(tmp_path, """
        child = subprocess.Popen(["sleep", "300"])
        (tmp / "child.pid").write_text(str(child.pid))
        serve()
        """)
    srv = LocalServer(_cfg(tmp_path, binary, server="native", parallel=2, startup_timeout=30))
    with srv:
        leader = srv.pid
        assert leader is not None and os.getpgid(leader) == leader != os.getpgid(0)
        child = int((tmp_path / "child.pid").read_text())
        assert _alive(leader) and _alive(child)
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(leader) and not _alive(child)


def test_a_server_that_exits_or_never_answers_is_a_clear_error_with_its_log(tmp_path: Path):
    crash = _fake_server(tmp_path, "print('error: unknown model architecture: foo'); sys.exit(3)\n")
    with pytest.raises(LLMUnavailable, match=r"(?s)exited with code 3.*unknown model architecture: foo"):
        LocalServer(_cfg(tmp_path, crash, server="native")).start()
    mute = _fake_server(tmp_path, "print('loading tensors', flush=True); time.sleep(300)\n")
    srv = LocalServer(_cfg(tmp_path, mute, server="native", startup_timeout=1.5))
    with pytest.raises(LLMUnavailable, match=r"(?s)did not answer within 2s.*local_startup_timeout.*loading tensors"):
        srv.start()
    assert srv.pid is None and not _alive(int((tmp_path / "server.pid").read_text()))  # stopped


def test_sigterm_acts_as_ctrl_c_while_a_server_runs_and_is_restored_after(tmp_path: Path):
    binary = _fake_server(tmp_path, "serve()\n")
    before = signal.getsignal(signal.SIGTERM)
    srv = LocalServer(_cfg(tmp_path, binary, server="native"))
    with srv:
        assert signal.getsignal(signal.SIGTERM) is not before
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler interrupts this
    assert signal.getsignal(signal.SIGTERM) is before


def test_logprobs_are_cut_to_the_message_when_the_server_strips_a_json_fence():
    """llama-server returns a json_schema reply without the ```json fence the model wrote around it,
    but its logprobs still hold the fence: the judge's expected score needs tokens that spell the
    message, so the fence's tokens go (a token split by the edge keeps its inside part)."""
    from agents.backends import compact_logprobs
    from agents.scoring import read_score

    alts = [["7", -0.4], ["8", -1.2]]
    written = [("```", []), ("json", []), ("\n{", [["\n{", -0.01]]), ('"score', []), ('":', []), (" ", []),
               ("7", alts), ("}\n", []), ("```", [])]
    choice = {"message": {"content": '{"score": 7}'},
              "logprobs": {"content": [{"token": t, "top_logprobs": [{"token": a, "logprob": lp} for a, lp in al]}
                                       for t, al in written]}}
    tokens = compact_logprobs(choice)
    assert "".join(t for t, _ in tokens) == '{"score": 7}'
    assert tokens[0] == ["{", []] and tokens[-1] == ["}", []] and ["7", alts] in tokens
    reading = read_score('{"score": 7}', tokens)
    assert reading.sampled == 7 and reading.expected is not None and 7.0 < reading.expected < 8.0
    plain = {"message": {"content": "7"}, "logprobs": {"content": [{"token": "7", "top_logprobs": []}]}}
    assert compact_logprobs(plain) == [["7", []]]


def test_a_gguf_without_a_built_in_chat_template_is_refused_at_start_with_the_setting_to_use(tmp_path: Path):
    """llama.cpp's built-in templates cover the shipped models; any other GGUF whose format it does
    not know would fail every request, so start-up says which setting to change."""
    folder = tmp_path / "unknown-template"
    folder.mkdir()
    binary = _fake_server(folder, "serve()\n")
    cfg = LocalServerConfig(model=str(folder / GGUF), binary=str(binary), server="native")
    with pytest.raises(LLMUnavailable, match=r"no built-in chat template for model.gguf.*local_jinja = true"):
        LocalServer(cfg).start()
    cfg.jinja = True
    with LocalServer(cfg) as srv:
        assert "Jinja" in srv.describe()
