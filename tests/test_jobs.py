"""The core's jobs as both faces use them: files read and counted once (off the app's UI
thread), files too large to load, the one model-choice rule, the one source rendering,
and the command line closing its store and model however a command ends."""

from __future__ import annotations

import os
import signal
import threading

import pytest
from click.testing import CliRunner

from tests.fake_engine import FakeEngine
from assistant.jobevents import JobEvents
from assistant.modelref import LoadedModel, choose_model
from assistant.session import Conversation, SummaryForm
from assistant.sources import Sources
from assistant.store import Store
from models.errors import XGenError
from tests.tui_helpers import NOTES, app_with, clear, notifications, sync, wait_for, wait_idle, write

NOTE_TEXT = ("The cooling unit in hall 3 failed on 2 September.\n\n"
             "It was replaced on 9 September by the vendor.\n")


class Counter:
    """A token counter that remembers what it counted, and in which thread."""

    def __init__(self):
        self.texts: list[str] = []
        self.threads: list[threading.Thread] = []

    def __call__(self, text: str) -> int:
        self.texts.append(text)
        self.threads.append(threading.current_thread())
        return len(text.split())


class Saved(JobEvents):
    def __init__(self):
        self.messages: list = []

    def saved(self, message) -> None:
        self.messages.append(message)


class Chunked:
    """Counts the library's chunking of files (assistant.library.extract.passages_of), and
    in which thread: a file's passages and tokens are made once, by the index."""

    def __init__(self, monkeypatch):
        from assistant.library import extract

        self.names: list[str] = []
        self.threads: list[threading.Thread] = []
        real = extract.passages_of

        def counted(doc):
            self.names.append(doc.name)
            self.threads.append(threading.current_thread())
            return real(doc)

        monkeypatch.setattr(extract, "passages_of", counted)


def xgen_tokens(text: str) -> int:
    from models.tokenizer import XGenTokenizer

    return len(XGenTokenizer(allow_download=False).encoding.encode_ordinary(text))


def model_of(engine: FakeEngine) -> LoadedModel:
    return LoadedModel("fake-model", engine, location="/models/fake.gguf")


# -- files are counted once ------------------------------------------------------------------


def test_a_file_is_counted_once_from_attaching_to_clear_and_resume(tmp_path, monkeypatch):
    notes = write(tmp_path, "notes.txt", NOTE_TEXT)
    chunked, counter = Chunked(monkeypatch), Counter()
    with Store(tmp_path / "sessions.db") as store:
        conversation = Conversation(store, count_tokens=counter)
        read = conversation.add_files([notes], record=False)
        assert read.n_tokens == {str(notes): xgen_tokens(NOTE_TEXT)} and read.problems == []
        conversation.ask(model_of(FakeEngine()), "When?")  # creates the session, records the file
        conversation.clear(model_of(FakeEngine()))  # a new session with the same file
        (record,) = store.files(conversation.session_id)
        assert record.n_tokens == xgen_tokens(NOTE_TEXT)
        resumed = Conversation(store, count_tokens=counter)  # a new process: the index has it
        resumed.open(conversation.session_id)
        assert resumed.read_files().n_tokens == {str(notes): xgen_tokens(NOTE_TEXT)}
    assert chunked.names == ["notes.txt"] and counter.texts == []  # files are counted by the index


def test_a_file_attached_twice_is_reported_not_counted_again(tmp_path, monkeypatch):
    notes = write(tmp_path, "notes.txt", NOTE_TEXT)
    chunked = Chunked(monkeypatch)
    with Store(tmp_path / "sessions.db") as store:
        conversation = Conversation(store)
        conversation.add_files([notes])
        again = conversation.add_files([notes, tmp_path / "missing.txt"])
    assert again.already == ["notes.txt"] and again.files == []
    assert len(again.problems) == 1 and "No such file" in again.problems[0]
    assert chunked.names == ["notes.txt"]


@sync
async def test_the_app_counts_an_attached_file_once_and_never_on_its_ui_thread(store, tmp_path, monkeypatch):
    chunked = Chunked(monkeypatch)
    notes = write(tmp_path, "notes.md", NOTES)
    app = app_with(FakeEngine(["Answer."]), store)
    async with app.run_test() as pilot:
        await wait_idle(pilot, app)
        ui_thread = threading.current_thread()
        app.chat.attach_paths([str(notes)])
        await wait_for(pilot, lambda: app.conversation.documents and not app.chat.files.reading)
        await clear(pilot, app)
        await pilot.pause()
        assert [d.name for d in app.conversation.documents] == ["notes.md"]
        (n_tokens,) = [f.n_tokens for f in store.files(app.conversation.session_id)]
        # the sum of its passages' counts: within a token per passage of the whole text's
        assert xgen_tokens(NOTES) - 5 <= n_tokens <= xgen_tokens(NOTES)
        assert any(f"notes.md: {n_tokens:,} tokens" in n.message for n in notifications(app))
    assert chunked.names == ["notes.md"]
    assert ui_thread not in chunked.threads


# -- files over the load limit -----------------------------------------------------------------


@pytest.fixture
def small_limit(monkeypatch):
    """A load limit of 1 KB, so a "large" file is a few KB."""
    monkeypatch.setattr("assistant.documents.large.DEFAULT_MAX_BYTES", 1024)
    monkeypatch.setattr("assistant.files.DEFAULT_MAX_BYTES", 1024)


def test_a_file_over_the_load_limit_can_be_summarized_not_asked_about(tmp_path, small_limit):
    log = write(tmp_path, "big.log", "".join(f"line {i}: the pump ran at {i} rpm\n" for i in range(300)))
    counter = Counter()
    with Store(tmp_path / "sessions.db") as store:
        conversation = Conversation(store, count_tokens=counter)
        read = conversation.add_files([log])
        (large,) = read.large
        assert read.documents == [] and conversation.documents == []
        size = f"{log.stat().st_size / 1024:.1f} KB"
        assert read.notes == [f"big.log is too large to ask about ({size}; the limit is 1 KB): it can only be "
                              "summarized, read in parts"]
        assert conversation.document("big.log") is large and store.files(conversation.session_id or "") == []
        refused = Conversation(store).add_files([log], large=False)
        assert refused.files == [] and refused.problems == read.notes
        events = Saved()
        result = conversation.summarize(model_of(FakeEngine(n_ctx=512)), large, SummaryForm(), events)
        assert result.text and result.stats.parts > 1
        summary = events.messages[-1]
        assert summary.role == "summary" and summary.meta["file"] == "big.log" and summary.content == result.text
    assert counter.texts == []  # a large file streams: it is never loaded or counted whole


# -- one rule for the model -------------------------------------------------------------------


def test_the_model_rule_asked_then_the_sessions_if_still_there_then_the_default(tmp_path, monkeypatch):
    monkeypatch.delenv("XGEN_MODEL", raising=False)
    kept = write(tmp_path, "kept.gguf", "a model file")
    assert choose_model("demo", str(kept)) == choose_model("demo")
    assert choose_model("demo").ref == "demo" and not choose_model("demo").implicit
    assert choose_model(None, str(kept)).ref == str(kept) and choose_model(None, str(kept)).implicit
    assert choose_model(None, str(tmp_path / "gone.gguf")).ref is None  # gone: the default model
    assert choose_model(None, "http://127.0.0.1:9").ref == "http://127.0.0.1:9"
    monkeypatch.setenv("XGEN_MODEL", "demo")  # the user named a default: not implicit
    assert choose_model(None).ref is None and not choose_model(None).implicit


# -- one source rendering -----------------------------------------------------------------------


def test_both_faces_render_the_sources_the_core_made_and_stored(tmp_path, monkeypatch):
    from assistant.cli.printer import print_sources
    from assistant.tui.widgets.messages import sources_line

    manual = write(tmp_path, "manual.txt", "\n\n".join(
        f"Section {i} about the {t}. " + f"The {t} needs care and regular checks. " * 6
        for i, t in enumerate(["battery", "antenna", "camera", "charger"] * 15)) + "\n")
    engine = FakeEngine(n_ctx=1024)
    with Store(tmp_path / "sessions.db") as store:
        conversation = Conversation(store)
        conversation.add_files([manual], record=False)
        chat = conversation.chat(model_of(engine), answer_tokens=200)
        engine.queue("Check the camera [2].")
        events = Saved()
        answer = conversation.ask(model_of(engine), "How to care for the camera?", events, answer_tokens=200)
    made, stored = Sources.of(answer), Sources.from_meta(events.messages[-1].meta)
    assert stored == made and 0 < made.given < made.total
    (cited,) = [g for g in made.groups if g.cited]
    assert cited.text == chat.passage(2).text  # the cited passage's text is stored with it

    runner = CliRunner()
    with runner.isolation() as (out, _err, *_rest):
        print_sources(stored)
        printed = out.getvalue().decode()
    app_line = sources_line(events.messages[-1].meta)
    assert printed.splitlines()[1] == made.heading and app_line.startswith(made.heading)
    for group in made.groups:
        assert f"  {'' if group.cited else '  '}{group.line}\n" in printed and group.line in app_line


# -- the command line closes what it opened ------------------------------------------------------


class Closing(FakeEngine):
    closed: list[str] = []

    def close(self) -> None:
        Closing.closed.append("engine")


class Interrupting(Closing):
    """A Ctrl+C arrives while the reply is being written."""

    def generate(self, prompt_ids, settings, *, stop=None, on_text=None, on_prefill=None):
        os.kill(os.getpid(), signal.SIGINT)
        assert stop is not None and stop.wait(10)
        return super().generate(prompt_ids, settings, stop=stop, on_text=on_text)


class Failing(Closing):
    def generate(self, prompt_ids, settings, *, stop=None, on_text=None, on_prefill=None):
        raise XGenError("llama.cpp failed to evaluate the prompt")


@pytest.mark.parametrize("engine_class, code", [(Closing, 0), (Failing, 1), (Interrupting, 130)],
                         ids=["success", "failure", "ctrl-c"])
@pytest.mark.parametrize("command", ["ask", "summarize"])
def test_the_command_line_closes_its_store_and_model_however_it_ends(home, tmp_path, monkeypatch, command,
                                                                    engine_class, code):
    from assistant.cli import main

    closed = Closing.closed = []

    class RecordedStore(Store):
        def close(self) -> None:
            closed.append("store")
            super().close()

    monkeypatch.setattr("assistant.cli.assist.Store", RecordedStore)
    monkeypatch.setattr("assistant.modelref.open_model",
                        lambda *args, **kwargs: LoadedModel("fake", engine_class(["It failed [1]."])))
    notes = write(tmp_path, "notes.txt", NOTE_TEXT)
    args = ["ask", str(notes), "-q", "When?"] if command == "ask" else ["summarize", str(notes)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert sorted(closed) == ["engine", "store"]


def test_a_summary_from_the_command_line_is_not_kept_as_a_session(home, tmp_path, monkeypatch):
    from assistant.cli import main

    monkeypatch.setattr("assistant.modelref.open_model",
                        lambda *args, **kwargs: LoadedModel("fake", FakeEngine(["The unit was replaced."])))
    notes = write(tmp_path, "notes.txt", NOTE_TEXT)
    result = CliRunner().invoke(main, ["summarize", str(notes)])
    assert result.exit_code == 0, result.output
    assert "The unit was replaced." in result.output
    with Store() as store:
        assert store.list_sessions() == []
        assert [s.text for s in store.summaries()] == ["The unit was replaced."]
