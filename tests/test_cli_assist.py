"""The assistant end to end from the command line, on the tiny converted model."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from assistant.cli import main
from assistant.store import Store

PARAGRAPH = ("Paragraph {n}: the auditors visited site {n} and counted {n} pallets of spare parts. "
             "They noted that the cooling unit in hall {n} was serviced in spring.\n\n")


@pytest.fixture
def model(converted):
    return str(converted("q8_0"))


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_summarize_a_document_longer_than_the_context(home, model, tmp_path):
    doc = tmp_path / "audit.txt"
    doc.write_text("".join(PARAGRAPH.format(n=i) for i in range(60)))  # ~2,400 tokens, ctx 512
    result = run("summarize", str(doc), "--model", model, "--json", "--temperature", "0")
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    stats = out["stats"]
    assert stats["document_tokens"] > 4 * 512
    assert stats["parts"] >= 5
    # One call per part, one final call, and combine calls only if there were levels.
    if stats["levels"] == 0:
        assert stats["model_calls"] == stats["parts"] + 1
    else:
        assert stats["model_calls"] > stats["parts"] + 1
    assert out["summary"] and not out["stopped"]
    assert stats["prompt_tokens_evaluated"] <= stats["prompt_tokens"]
    assert stats["tokens_generated"] > 0
    # Stored locally, and the map step is cached for a re-run in another form.
    with Store() as store:
        (summary,) = store.summaries()
        assert summary.text == out["summary"]
    again = json.loads(run("summarize", str(doc), "--model", model, "--json", "--form", "bullets",
                           "--temperature", "0").output)
    # Complete partial summaries are cached; ones cut at their cap (a random model rarely
    # ends by itself) are not, and are redone (up to twice: as asked, then tighter).
    # Greedy, so the same calls are cut again: none of them came from the cache as complete.
    assert again["stats"]["cut_parts"] == stats["cut_parts"]
    assert again["stats"]["cached_parts"] + again["stats"]["cut_parts"] >= stats["parts"]
    if stats["cut_parts"] == 0:
        assert again["stats"]["model_calls"] == 1


def test_ask_with_citations_and_a_saved_session(home, model, tmp_path):
    doc = tmp_path / "notes.txt"
    doc.write_text("".join(PARAGRAPH.format(n=i) for i in range(4)))
    result = run("ask", str(doc), "-q", "What was counted?", "-q", "Which hall?", "--model", model,
                 "--temperature", "0")
    assert result.exit_code == 0, result.output
    assert "> What was counted?" in result.output and "> Which hall?" in result.output
    with Store() as store:
        (session,) = store.list_sessions()
        messages = store.messages(session.id)
        assert [m.role for m in messages] == ["user", "assistant", "user", "assistant"]
        first, second = messages[1].meta["stats"], messages[3].meta["stats"]
        # The follow-up only evaluates its own new tokens: the document is in the cache.
        assert second["prompt_evaluated"] < first["prompt_evaluated"] / 4
        (attached,) = store.files(session.id)
        assert attached.name == "notes.txt"
    # The session survives a restart: a new process lists and shows it.
    shown = run("sessions", "show", session.id[:8])
    assert "What was counted?" in shown.output


def test_kv_cache_setting_reaches_llama_cpp(home, model, tmp_path, monkeypatch):
    import assistant.engines

    kv_types = []  # (type_k, type_v) of each context llama.cpp made
    real_open = assistant.engines.open_engine

    def spy(kind, location, **options):
        engine = real_open(kind, location, **options)
        kv_types.append((engine._llm.context_params.type_k, engine._llm.context_params.type_v))
        return engine

    monkeypatch.setattr(assistant.engines, "open_engine", spy)
    doc = tmp_path / "notes.txt"
    doc.write_text(PARAGRAPH.format(n=1))
    monkeypatch.setenv("XGEN_KV_CACHE", "q8_0")  # the environment sets the default...
    result = run("ask", str(doc), "-q", "Which hall?", "--model", model, "--max-tokens", "16")
    assert result.exit_code == 0, result.output
    assert kv_types[-1] == (8, 8)  # GGML_TYPE_Q8_0 (the engine turns flash attention on for it)
    result = run("ask", str(doc), "-q", "Which hall?", "--model", model, "--max-tokens", "16", "--kv-cache", "f16")
    assert result.exit_code == 0, result.output
    assert kv_types[-1] == (1, 1)  # ...and the flag wins: GGML_TYPE_F16
    bad = CliRunner().invoke(main, ["ask", str(doc), "-q", "hi", "--kv-cache", "q4_0"])
    assert bad.exit_code == 2 and "q4_0" in bad.output


def test_no_model_explains_how_to_get_one(home, tmp_path):
    doc = tmp_path / "a.txt"
    doc.write_text("hello")
    result = CliRunner().invoke(main, ["summarize", str(doc)])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1].startswith("error: no model found: run `xgen pull")


def test_unknown_model_name_is_one_line(home, tmp_path):
    doc = tmp_path / "a.txt"
    doc.write_text("hello")
    result = CliRunner().invoke(main, ["ask", str(doc), "-q", "hi", "--model", "xgen-7b-8k-inst"])
    assert result.exit_code == 1
    assert "xgen pull xgen-7b-8k-inst" in result.output
    assert "Traceback" not in result.output


def test_bad_document_is_one_line(home, model, tmp_path):
    binary = tmp_path / "blob.bin"
    binary.write_bytes(bytes(range(256)) * 100)
    result = CliRunner().invoke(main, ["summarize", str(binary), "--model", model])
    assert result.exit_code == 1
    assert result.output.strip().startswith("error: ")
    assert "Traceback" not in result.output


def test_models_lists_registry_and_local_files(home, model):
    import shutil

    from models.paths import models_dir

    shutil.copy(model, models_dir() / "xgen-demo-q8_0.gguf")
    result = run("models")
    assert "Salesforce/xgen-7b-8k-inst" in result.output
    assert "xgen-demo-q8_0.gguf" in result.output
    assert "Default: demo" in result.output


def test_pull_without_network_is_one_line(home, monkeypatch):
    """`pull` is the one command that downloads; offline it fails cleanly, touching no socket."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    result = CliRunner().invoke(main, ["pull", "xgen-7b-8k-base"])
    assert result.exit_code == 1, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("error: Salesforce/xgen-7b-8k-base")
    assert "Traceback" not in result.output


def test_pull_unknown_name(home):
    result = CliRunner().invoke(main, ["pull", "gpt-5"])
    assert result.exit_code == 1
    assert "unknown model 'gpt-5'" in result.output and "xgen-7b-8k-inst" in result.output


def test_torch_engine_from_the_cli(home, tiny_checkpoint, tmp_path):
    doc = tmp_path / "notes.txt"
    doc.write_text(PARAGRAPH.format(n=1))
    result = run("ask", str(doc), "-q", "What was counted?", "--model", str(tiny_checkpoint), "--temperature", "0")
    assert result.exit_code == 0, result.output
    with Store() as store:
        (session,) = store.list_sessions()
        assert session.engine == "torch"
        assert store.messages(session.id)[1].meta["stats"]["generated"] > 0


def test_the_summary_line_shows_the_tokens_read_inside_a_part(capsys):
    """The engine's count of a part's prompt read so far follows the part on the stderr
    line; a shorter line after it blanks what it leaves; the final call has no line."""
    from assistant.cli.printer import EventPrinter

    show = EventPrinter(quiet=False).progress
    show("map", 2, 7)
    show("prompt", 1200, 3900)
    show("map", 3, 7)
    show("map", 7, 7)
    show("final", 0, 1)
    show("prompt", 500, 900)
    err = capsys.readouterr().err
    long = "map: part 3 of 7, 1,200 of 3,900 tokens read…"
    assert err.split("\r")[1:] == ["map: part 3 of 7…", long, "map: part 4 of 7…".ljust(len(long)),
                                   "map: 7 parts done.\n"]


def test_file_names_and_questions_that_are_not_utf8(home, model, tmp_path):
    """A Latin-1 file name (bytes that are not UTF-8) once raised UnicodeEncodeError from
    the prompt and from the store, leaving an empty session per attempt; a question typed in
    a Latin-1 terminal did the same. The name is stored losslessly, shown escaped, and the
    session continues from the file it names."""
    import os

    raw = os.fsencode(tmp_path) + b"/bad\xff\xfe.txt"
    with open(raw, "wb") as f:
        f.write(PARAGRAPH.format(n=1).encode())
    path = os.fsdecode(raw)
    result = run("ask", path, "-q", "What was counted?\udcff", "--model", model, "--temperature", "0")
    assert result.exit_code == 0, result.output
    assert "[1] bad\\xff\\xfe.txt:1-" in result.output
    with Store() as store:
        (session,) = store.list_sessions()
        (attached,) = store.files(session.id)
        assert os.fsencode(attached.path) == raw and attached.name == "bad\\xff\\xfe.txt"
        assert store.messages(session.id)[0].content == "What was counted?\ufffd"
    exported = run("sessions", "export", session.id[:8])
    assert "bad\\xff\\xfe.txt (`" + os.fsdecode(os.fsencode(tmp_path)) + "/bad\\xff\\xfe.txt`" in exported.output
    again = run("ask", "-s", session.id[:8], "-q", "And then?", "--model", model, "--temperature", "0")
    assert again.exit_code == 0 and "[1] bad\\xff\\xfe.txt:1-" in again.output, again.output
    with Store() as store:
        assert len(store.list_sessions()) == 1 and len(store.messages(session.id)) == 4
