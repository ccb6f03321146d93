"""The cache of partial summaries knows its model, goes with its sessions, and is bounded."""

from __future__ import annotations

import shutil

import pytest
from click.testing import CliRunner

from assistant.cli import main
from assistant.documents import load_document
from assistant.engines import open_engine
from tests.fake_engine import FakeEngine
from assistant.modelref import LoadedModel
from assistant.session import Conversation
from assistant.store import Store, store as store_module
from assistant.summarize import MemoryCache, Summarizer, SummaryForm

PARAGRAPH = "The committee met on {n} March to review the budget of department {n}. " * 3 + "\n\n"


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "sessions.db") as s:
        yield s


@pytest.fixture
def long_doc(tmp_path):
    path = tmp_path / "minutes.txt"
    path.write_text("".join(PARAGRAPH.format(n=i) for i in range(60)))
    return load_document(path)


class Renamed(FakeEngine):
    """Another model file with the same display name (a q4_0 beside a q8_0)."""

    @property
    def identity(self) -> str:
        return "fake:another-file"


def test_the_model_file_not_its_name_keys_the_cache(long_doc, store):
    first = Summarizer(FakeEngine(n_ctx=1024), cache=store).summarize(long_doc)
    assert first.stats.parts > 1 and first.stats.cached_parts == 0
    again = Summarizer(FakeEngine(n_ctx=1024), cache=store).summarize(long_doc)
    assert again.stats.cached_parts == again.stats.parts  # same model: every part reused
    other = Summarizer(Renamed(n_ctx=1024), cache=store).summarize(long_doc)
    assert other.stats.cached_parts == 0  # same name, another file: nothing reused
    smaller = Summarizer(FakeEngine(n_ctx=768), cache=store).summarize(long_doc)
    assert smaller.stats.cached_parts == 0  # another context size cuts other parts


def test_engine_identity_follows_the_file_and_its_settings(converted, tmp_path):
    q8, q4 = converted("q8_0"), converted("q4_0")
    copy = tmp_path / "renamed.gguf"
    shutil.copy(q8, copy)
    identities = {}
    for label, path, kv in (("q8", q8, "f16"), ("q4", q4, "f16"), ("copy", copy, "f16"), ("q8-kv8", q8, "q8_0")):
        engine = open_engine("llama", path, kv_type=kv, n_ctx=256)
        identities[label] = engine.identity
        assert engine.model_name  # the display name is the same GGUF general.name for all of them
        engine.close()
    assert identities["q8"] == identities["copy"]
    assert len({identities["q8"], identities["q4"], identities["q8-kv8"]}) == 3


def test_deleting_a_session_deletes_the_cached_parts_of_its_files(long_doc, store, tmp_path):
    model = LoadedModel("fake", FakeEngine(n_ctx=1024))
    kept = Conversation(store)
    kept.attach(long_doc)
    kept.summarize(model, long_doc, SummaryForm())
    entries = store.cache_info()[0]
    assert entries > 1
    other = tmp_path / "other.txt"
    other.write_text("".join(PARAGRAPH.format(n=i + 100) for i in range(60)))
    other_doc = load_document(other)
    gone = Conversation(store)
    gone.attach(other_doc)
    gone.attach(long_doc)  # shared with the kept session
    gone.summarize(model, other_doc, SummaryForm())
    assert store.cache_info()[0] > entries
    store.delete_session(gone.session_id)
    assert store.cache_info()[0] == entries  # other.txt's parts went, minutes.txt's stayed
    store.delete_session(kept.session_id)
    assert store.cache_info()[0] == 0


def test_the_cache_is_bounded_oldest_used_out_first(store, monkeypatch):
    monkeypatch.setattr(store_module, "CACHE_MAX_ENTRIES", 3)
    for i in range(3):
        store.cache_put(f"k{i}", f"value {i}")
    assert store.cache_get("k0") == "value 0"  # used again: now the newest
    store.cache_put("k3", "value 3")
    assert store.cache_get("k1") is None and store.cache_get("k0") == "value 0"
    assert store.cache_info()[0] == 3
    monkeypatch.setattr(store_module, "CACHE_MAX_BYTES", 20)
    store.cache_put("big", "x" * 15)
    assert store.cache_info()[1] <= 20 and store.cache_get("big") == "x" * 15


def test_xgen_cache_clear(tmp_path, monkeypatch):
    monkeypatch.setenv("XGEN_HOME", str(tmp_path / "home"))
    with Store() as s:
        s.cache_put("a", "one", "sha")
        s.cache_put("b", "two", "sha")
    info = CliRunner().invoke(main, ["cache", "info"])
    assert info.exit_code == 0 and info.output.startswith("2 cached partial summaries")
    cleared = CliRunner().invoke(main, ["cache", "clear"])
    assert cleared.exit_code == 0 and "cleared 2" in cleared.output
    with Store() as s:
        assert s.cache_info() == (0, 0)


# -- one text source: a streamed file's parts are tagged by its content hash, like a document's --


def _big_log(tmp_path):
    from assistant.documents import open_for_summary

    path = tmp_path / "shift.log"
    path.write_text("".join(PARAGRAPH.format(n=i) for i in range(200)))
    return path, lambda: open_for_summary(path, max_bytes=1024, window_bytes=3000)


def test_a_streamed_file_s_cached_parts_are_tagged_with_its_content_hash(tmp_path):
    import hashlib
    import threading

    path, stream = _big_log(tmp_path)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    cache = MemoryCache()
    engine = FakeEngine(n_ctx=1024)
    stop = threading.Event()
    def stop_after_two_parts(stage, done, total):
        if stage == "read" and len(engine.prompts) >= 2:
            stop.set()

    first = Summarizer(engine, cache=cache).summarize(stream(), stop=stop, on_progress=stop_after_two_parts)
    assert first.stopped and len(cache.data) == 2
    assert set(cache.sources.values()) == {None}  # its hash is known only at the end of the file
    again = Summarizer(engine, cache=cache).summarize(stream())
    assert not again.stopped and again.stats.parts > 5 and again.stats.cached_parts == 2
    assert set(cache.sources.values()) == {sha}  # the ones from the stopped run too


def test_deleting_a_session_deletes_the_cached_parts_of_its_streamed_file(tmp_path, store):
    from assistant.session import summarize_document

    path, stream = _big_log(tmp_path)
    source = stream()
    summarize_document(LoadedModel("fake", FakeEngine(n_ctx=1024)), source, SummaryForm(), store)
    assert store.cache_info()[0] > 5
    session = store.create_session()
    store.attach_file(session.id, "/elsewhere/renamed.log", "renamed.log", source.sha256, 0)  # same content
    store.delete_session(session.id)
    assert store.cache_info()[0] == 0


def test_cached_parts_from_before_prompt_version_2_are_dropped(tmp_path, monkeypatch):
    """They can no longer be read (every key changed), and a streamed file's were tagged
    with its path, which deleting a session no longer looks at."""
    from assistant.store import MIGRATIONS
    from assistant.store import db as store_db

    path = tmp_path / "sessions.db"
    monkeypatch.setattr(store_db, "MIGRATIONS", MIGRATIONS[:3])
    with Store(path) as old:
        old.cache_put("summary-part:" + "0" * 64, "old partial", "/logs/shift.log")
        old.cache_put("summary-part:" + "1" * 64, "old partial", "a" * 64)
        old.cache_put("another-kind", "kept", None)
    monkeypatch.setattr(store_db, "MIGRATIONS", MIGRATIONS)
    with Store(path) as new:
        assert new.cache_info()[0] == 1 and new.cache_get("another-kind") == "kept"
