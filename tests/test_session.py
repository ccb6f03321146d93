"""The conversation core (assistant/session.py) on a fake engine: what is stored, what the
model is shown when a session is resumed, and what is refused before anything is stored."""

from __future__ import annotations

import io
import os

import pytest

from assistant.chat import NoRoomForDocuments
from assistant.documents import load_stdin
from tests.fake_engine import FakeEngine
from assistant.modelref import LoadedModel
from assistant.jobevents import JobEvents
from assistant.library import IndexDatabase
from assistant.session import Conversation
from assistant.store import Store
from assistant.summarize import SummaryForm
from models.errors import XGenError


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "sessions.db") as s:
        yield s


class Recorded(JobEvents):
    """A job's events, kept to look at."""

    def __init__(self):
        self.messages: list = []
        self.pieces: list[str] = []
        self.notes: list[str] = []

    def saved(self, message) -> None:
        self.messages.append(message)

    def text(self, piece: str) -> None:
        self.pieces.append(piece)

    def note(self, text: str) -> None:
        self.notes.append(text)


def model_of(engine: FakeEngine) -> LoadedModel:
    return LoadedModel("fake-model", engine, location="/models/fake.gguf")


def write_notes(folder, name="notes.txt"):
    path = folder / name
    path.write_text("The cooling unit in hall 3 failed on 2 September.\n\n"
                    "It was replaced on 9 September by the vendor.\n")
    return path


def test_the_model_in_use_is_recorded_with_a_session_begun_without_one(store, tmp_path):
    conversation = Conversation(store)
    conversation.add_files([write_notes(tmp_path)])  # attached while the app loads the model
    assert store.get_session(conversation.session_id).model_ref == ""
    conversation.use_model(model_of(FakeEngine()))
    saved = store.get_session(conversation.session_id)
    assert (saved.model, saved.engine, saved.model_ref) == ("fake-model", "fake", "/models/fake.gguf")
    conversation.new()
    conversation.add_files([write_notes(tmp_path, "other.txt")])  # a later session, still without a model given
    assert store.get_session(conversation.session_id).model_ref == "/models/fake.gguf"


def test_a_question_after_the_session_was_deleted_elsewhere_starts_a_new_one(store, tmp_path):
    engine = FakeEngine(["It failed on 2 September [1].", "On 9 September [1]."])
    conversation = Conversation(store)
    conversation.add_files([write_notes(tmp_path)])
    conversation.ask(model_of(engine), "When did it fail?")
    deleted = conversation.session_id
    with Store(store.path) as other:  # another app, or `xgen sessions delete`
        other.delete_session(deleted)
    assert conversation.deleted_elsewhere
    conversation.ask(model_of(engine), "When was it replaced?")
    (fresh,) = store.list_sessions()
    assert fresh.id == conversation.session_id != deleted and fresh.model_ref == "/models/fake.gguf"
    assert [m.content for m in store.messages(fresh.id)] == ["When was it replaced?", "On 9 September [1]."]
    assert [f.name for f in store.files(fresh.id)] == ["notes.txt"]


def test_a_resumed_session_gives_the_model_its_earlier_turns(store, tmp_path):
    notes = write_notes(tmp_path)
    engine = FakeEngine(["It failed on 2 September [1].", "On 9 September [1]."])
    first = Conversation(store)
    first.add_files([notes], record=False)
    answer = first.ask(model_of(engine), "When did the unit fail?")
    assert answer.text == "It failed on 2 September [1]."

    resumed = Conversation(store)  # a new process: only the store is shared
    resumed.open(first.session_id)
    assert resumed.read_files().problems == []
    resumed.ask(model_of(engine), "And when was it replaced?")
    prompt = engine.prompt_texts()[-1]
    earlier = prompt.index("Question: When did the unit fail?")
    assert prompt.index("It failed on 2 September [1].") > earlier
    assert prompt.index("Question: And when was it replaced?") > prompt.index("It failed on 2 September")
    assert "cooling unit in hall 3" in prompt  # the document is there too
    assert [m.role for m in store.messages(first.session_id)] == ["user", "assistant"] * 2


def test_turns_that_do_not_fit_are_left_out_most_recent_kept(store, tmp_path):
    notes = write_notes(tmp_path)
    long_answer = "The unit was inspected again and again. " * 30
    engine = FakeEngine([long_answer] * 6, n_ctx=1024)
    conversation = Conversation(store)
    conversation.add_files([notes], record=False)
    for i in range(6):
        conversation.ask(model_of(engine), f"Question number {i}?", answer_tokens=300)
    resumed = Conversation(store)
    resumed.open(conversation.session_id)
    resumed.read_files()
    answer = resumed.ask(model_of(engine), "The last question?", answer_tokens=300)
    prompt = engine.prompt_texts()[-1]
    assert "Question number 5?" in prompt  # the most recent turn is kept
    assert "Question number 0?" not in prompt
    (note,) = [n for n in answer.notes if "earlier turn" in n]
    kept = sum(f"Question number {i}?" in prompt for i in range(6))
    assert note.startswith(f"{6 - kept} earlier turns of 6 did not fit")
    assert len(engine.prompts[-1]) + 300 <= engine.n_ctx


def test_resuming_from_another_directory(store, tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    write_notes(work)
    monkeypatch.chdir(work)
    engine = FakeEngine()
    conversation = Conversation(store)
    conversation.add_files(["notes.txt"], record=False)  # a relative path
    conversation.ask(model_of(engine), "When?")
    (record,) = store.files(conversation.session_id)
    assert record.path == str(work / "notes.txt")

    monkeypatch.chdir(tmp_path)
    resumed = Conversation(store)
    resumed.open(conversation.session_id)
    found = resumed.read_files()
    assert found.problems == [] and [d.name for d in found.documents] == ["notes.txt"]


def test_a_changed_file_is_reread_with_a_note(store, tmp_path):
    notes = write_notes(tmp_path)
    engine = FakeEngine()
    conversation = Conversation(store)
    conversation.add_files([notes], record=False)
    conversation.ask(model_of(engine), "When?")
    notes.write_text("The unit was replaced in October.\n")
    resumed = Conversation(store)
    resumed.open(conversation.session_id)
    found = resumed.read_files()
    assert found.notes == ["notes.txt changed since it was attached; its current text is used"]
    resumed.ask(model_of(engine), "When was it replaced?")
    assert "replaced in October" in engine.prompt_texts()[-1]  # the index holds the current text
    (record,) = store.files(conversation.session_id)
    assert record.sha256 == found.documents[0].sha256  # the note is given once, not at every resume
    assert Conversation(store).open(conversation.session_id) and True
    again = Conversation(store)
    again.open(conversation.session_id)
    assert again.read_files().notes == []


def test_a_session_started_from_stdin_can_continue(store):
    engine = FakeEngine()
    conversation = Conversation(store)
    conversation.attach(load_stdin(io.BytesIO(b"Piped minutes: the budget was approved.\n")), record=False)
    conversation.ask(model_of(engine), "Was the budget approved?")
    resumed = Conversation(store)
    resumed.open(conversation.session_id)
    found = resumed.read_files()
    assert found.problems == []
    assert found.documents[0].text == "Piped minutes: the budget was approved.\n"
    resumed.ask(model_of(engine), "By whom?")
    assert "the budget was approved" in engine.prompt_texts()[-1]


def test_no_room_for_the_document_stores_nothing(store, tmp_path):
    notes = write_notes(tmp_path)
    engine = FakeEngine(n_ctx=300)
    conversation = Conversation(store)
    conversation.add_files([notes], record=False)
    with pytest.raises(NoRoomForDocuments, match="--max-tokens.*--ctx"):
        conversation.ask(model_of(engine), "When did it fail?", answer_tokens=200)
    assert store.list_sessions() == [] and engine.prompts == []


def test_an_empty_question_is_refused(store, tmp_path):
    conversation = Conversation(store)
    conversation.add_files([write_notes(tmp_path)], record=False)
    with pytest.raises(XGenError, match="empty"):
        conversation.ask(model_of(FakeEngine()), "   ")
    assert store.list_sessions() == []


def test_an_engine_failure_on_a_new_session_leaves_no_session(store, tmp_path):
    class Broken(FakeEngine):
        def generate(self, *args, **kwargs):
            raise XGenError("llama.cpp failed to evaluate the prompt")

    conversation = Conversation(store)
    conversation.add_files([write_notes(tmp_path)], record=False)
    with pytest.raises(XGenError, match="failed to evaluate"):
        conversation.ask(model_of(Broken()), "When?")
    assert store.list_sessions() == []


def test_an_engine_failure_before_any_word_stores_nothing_in_an_existing_session(store, tmp_path):
    class Down(FakeEngine):
        down = False

        def generate(self, *args, **kwargs):
            if self.down:
                raise XGenError("cannot reach http://127.0.0.1:9: connection refused; is the server running?")
            return super().generate(*args, **kwargs)

    engine = Down(["It failed on 2 September [1]."])
    conversation = Conversation(store)
    conversation.add_files([write_notes(tmp_path)])
    conversation.ask(model_of(engine), "When did it fail?")
    engine.down = True
    for _ in range(2):
        events = Recorded()
        with pytest.raises(XGenError, match="cannot reach"):
            conversation.ask(model_of(engine), "And who replaced it?", events)
        assert len(events.messages) == 2  # saved, then taken back
    assert [m.content for m in store.messages(conversation.session_id)] == [
        "When did it fail?", "It failed on 2 September [1]."]


def test_an_invented_next_turn_is_cut_from_the_reply_and_the_store(store, tmp_path):
    engine = FakeEngine(["It failed on 2 September [1].\n### Human: thanks!\n### Assistant: You're welcome."])
    conversation = Conversation(store)
    conversation.add_files([write_notes(tmp_path)], record=False)
    events = Recorded()
    answer = conversation.ask(model_of(engine), "When?", events)
    shown, saved = events.pieces, events.messages[-1]
    assert answer.text == "It failed on 2 September [1]."
    assert "".join(shown).strip() == answer.text and "###" not in "".join(shown)
    assert saved.content == answer.text and saved.meta["finish"] == "eos"
    assert [p.number for p in answer.citations] == [1]


def test_sources_list_every_passage_given_and_counts_add_up(store, tmp_path):
    paragraphs = [f"Section {i} about the {t}. " + f"The {t} needs care and regular checks. " * 6
                  for i, t in enumerate(["battery", "antenna", "camera", "charger"] * 15)]
    manual = tmp_path / "manual.txt"
    manual.write_text("\n\n".join(paragraphs) + "\n")
    engine = FakeEngine(n_ctx=1024)
    conversation = Conversation(store)
    conversation.add_files([manual], record=False)
    chat = conversation.chat(model_of(engine), answer_tokens=200)
    engine.queue("Check the camera [2].")  # passages are numbered as they are given: 1, 2...
    events = Recorded()
    answer = conversation.ask(model_of(engine), "How to care for the camera?", events, answer_tokens=200)
    saved = events.messages[-1]
    given, total = len(answer.sources), answer.passages_total
    db = IndexDatabase()
    in_index = db.query("SELECT count(*) FROM passages AS p JOIN files AS f ON f.id = p.file_id WHERE f.path = ?",
                        (os.fsencode(os.path.realpath(manual)),))[0][0]
    db.close()
    assert 0 < given < total == in_index
    assert [p.number for p in answer.sources] == list(range(1, given + 1)) == [p.number for p in chat.passages]
    (note,) = [n for n in answer.notes if "passages did not fit" in n]
    assert note == (f"{total - given} of {total} passages did not fit the context; the {given} that best "
                    f"match the questions were given to the model")
    sources = saved.meta["sources"]
    assert saved.meta["passages_given"] == given and saved.meta["passages_total"] == total
    assert [s["cited"] for s in sources].count(True) == len(answer.citations) == 1
    (cited,) = [s for s in sources if s["cited"]]
    assert cited["numbers"] == "[2]" and cited["label"] == chat.passage(2).label
    listed = sum(1 + int(s["numbers"].split("]-[")[-1].strip("[]")) - int(s["numbers"].split("]")[0].strip("["))
                 for s in sources)
    assert listed == given  # every passage given is listed once


def test_a_reply_cut_at_its_limit_says_so(store, tmp_path):
    engine = FakeEngine(["word " * 200])
    conversation = Conversation(store)
    conversation.add_files([write_notes(tmp_path)], record=False)
    events = Recorded()
    answer = conversation.ask(model_of(engine), "Tell me everything.", events, answer_tokens=64)
    saved = events.messages[-1]
    assert answer.cut_short and saved.meta["finish"] == "length"
    assert any("limit of 64 tokens" in n for n in answer.notes)


def test_a_summary_goes_into_the_session(store, tmp_path):
    engine = FakeEngine(["The unit failed and was replaced."])
    conversation = Conversation(store)
    (doc,) = conversation.add_files([write_notes(tmp_path)]).files
    events = Recorded()
    result = conversation.summarize(model_of(engine), doc, SummaryForm(), events)
    message = events.messages[-1]
    assert result.text == "The unit failed and was replaced."
    assert message.role == "summary" and message.content == result.text
    assert [s.text for s in store.summaries(conversation.session_id)] == [result.text]


def test_detach_removes_the_file_from_the_session(store, tmp_path):
    conversation = Conversation(store)
    (doc,) = conversation.add_files([write_notes(tmp_path)]).files
    assert conversation.attach(doc) is False  # attached once only
    conversation.detach(doc.source)
    assert store.files(conversation.session_id) == [] and conversation.documents == []


def test_another_program_writing_never_slows_the_stream_and_the_notes_stay_true(store):
    """With another process holding the write lock, each progressive save waited the 5 s
    busy timeout (a token per 5 s), then the note said "could not be saved" of a saved answer."""
    import sqlite3
    import threading
    import time

    engine = FakeEngine([" ".join(f"word{i}" for i in range(40))], step_delay=0.05)
    conversation = Conversation(store)
    holder = sqlite3.connect(store.path, isolation_level=None, check_same_thread=False)
    release = threading.Timer(6.0, holder.execute, ["COMMIT"])
    arrived: list[float] = []

    class LockedWhileStreaming(Recorded):
        def saved(self, message) -> None:
            super().saved(message)
            if message.role == "assistant" and not message.content:  # the reply starts: lock
                holder.execute("BEGIN IMMEDIATE")  # the other program's write, held 6 s
                release.start()
                arrived.append(time.monotonic())

        def text(self, piece: str) -> None:
            super().text(piece)
            arrived.append(time.monotonic())

    events = LockedWhileStreaming()
    try:
        answer = conversation.ask(model_of(engine), "What is it?", events)
    finally:
        release.join()
        holder.close()
    # A save every half second used to wait out the busy timeout (5 s) before the next piece
    # could come; now the pieces come at the engine's pace (2 s) and only the last save
    # waits for the other program.
    assert len(arrived) > 40 and arrived[-1] - arrived[0] < 4  # from the lock to the last piece
    assert events.notes == answer.notes and not any("could not be saved" in n for n in answer.notes)
    (_, reply) = store.messages(conversation.session_id)
    assert reply.content == answer.text and reply.meta["finish"] == answer.stats.finish


def test_a_save_that_really_failed_says_so(store, monkeypatch):
    import sqlite3

    from assistant import persist

    session = store.create_session()
    _, reply = store.add_exchange(session.id, "q", {"finish": "streaming"})
    monkeypatch.setattr(persist, "FINAL_SAVE_PATIENCE", 0.0)
    monkeypatch.setattr("assistant.store.db.BUSY_TIMEOUT_MS", 50)
    holder = sqlite3.connect(store.path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        saver = persist.ProgressiveSave(store, reply.id, interval=0.0)
        saver.add("partial")  # deferred, not failed
        assert saver.error is None
        assert saver.finish("partial answer", {"finish": "stop"}) is None
        assert "is busy: another program is writing to it" in saver.error
    finally:
        holder.execute("COMMIT")
        holder.close()
    assert saver.finish("partial answer", {"finish": "stop"}) is not None and saver.error is None
