"""`xgen search` and the retrieval `ask` will use: ranking, citations, query syntax."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assistant.library import IndexDatabase, question_query, retrieve, search, snippet, update_library
from assistant.library.search import plan, query_words
from models.errors import XGenError
from tests.library_folders import build_folder


def xgen(*args: str, home: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "assistant.cli", *args], capture_output=True, text=True,
                          env=dict(os.environ, XGEN_HOME=str(home)), timeout=300)


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """(data folder, library folder), indexed once for the module."""
    home = tmp_path_factory.mktemp("home")
    root = build_folder(tmp_path_factory.mktemp("lib"))
    (root / "digits.txt").write_text(" ".join(f"{i % 10} {chr(97 + i % 26)}" for i in range(60_000)) + "\n")
    (root / "syntax.txt").write_text('Use "quotes", NEAR(a b), AND/OR/NOT, col:umn and * stars with a zebu.\n')
    assert xgen("index", str(root), home=home).returncode == 0
    return home, root


def hits_for(home: Path, root: Path, text: str, *extra: str) -> list[dict]:
    out = xgen("search", str(root), "-q", text, "--json", *extra, home=home)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["hits"]


def test_citations_lines_pages_and_kinds(library):
    home, root = library
    [hit] = [h for h in hits_for(home, root, "walrus") if h["path"].endswith("b.md")]
    assert (hit["start_line"], hit["end_line"], hit["page"]) == (1, 3, None)
    pdf = hits_for(home, root, "lighthouse keeper")
    assert pdf[0]["path"] == str(root / "report.pdf")
    assert (pdf[0]["page"], pdf[0]["start_line"], pdf[0]["end_line"]) == (2, None, None)
    assert hits_for(home, root, "approved budget")[0]["path"] == str(root / "letter.docx")
    latin = hits_for(home, root, "CAFE tres chaud")  # diacritics and case do not matter
    assert latin[0]["path"] == str(root / "latin1.txt") and "café" in latin[0]["text"]
    named = hits_for(home, root, "armadillo")
    assert os.fsencode(named[0]["path"]) == os.fsencode(root) + b"/caf\xe9-name.txt"
    # stemming: another form of the word finds it
    assert hits_for(home, root, "giraffes eating")[0]["path"] == str(root / "notes" / "a.txt")
    # the human form: path:lines and a snippet with the matched words marked
    out = xgen("search", str(root), "-q", "walrus", home=home).stdout.splitlines()
    assert out[0].startswith(f"{root}/notes/deep/b.md:1-3  (") and "**walrus**" in out[1]


def test_search_is_limited_to_the_paths_given(library):
    home, root = library
    hits = hits_for(home, root / "notes", "zebras walrus lighthouse")
    assert hits and all(h["path"].startswith(f"{root}/notes/") for h in hits)
    assert len(hits_for(home, root, "zebras walrus lighthouse", "-n", "2")) == 2


def test_punctuation_only_question_is_one_line(library):
    home, root = library
    out = xgen("search", str(root), "-q", "?!... --- ()", home=home)
    assert out.returncode == 1 and "no words to search for" in out.stderr
    assert out.stderr.strip().count("\n") == 0 and out.stderr.startswith("error: ")
    db = IndexDatabase()
    try:
        with pytest.raises(XGenError, match="no words to search for"):
            search(db, '"" * : -')
    finally:
        db.close()


def test_document_with_no_indexable_words_does_not_crash(library):
    home, root = library
    for text in ("7", "a b c", "q 7 x", "digits 1 2 3"):
        out = xgen("search", str(root), "-q", text, "--json", home=home)
        assert out.returncode in (0, 2), out.stderr
        assert out.returncode == 2 or isinstance(json.loads(out.stdout)["hits"], list)


def test_very_common_words_are_left_out_of_the_query(tmp_path, home):
    root = tmp_path / "lib"
    root.mkdir()
    # "common" in every passage, "rare" in one
    for i in range(30):
        (root / f"{i}.txt").write_text(f"common filler {i}\n" + ("rare needle\n" if i == 7 else ""))
    update_library([root])
    db = IndexDatabase()
    try:
        with db.lock:
            assert plan(db.connection, ["common", "rare"]) == '"rare" OR "common"'  # both fit the budget
            # with a budget of 10 passages "common" (30) is too common to rank
            assert plan(db.connection, ["common", "rare"], budget=10) == '"rare"'
            assert plan(db.connection, ["common", "filler"], budget=10) == '"common" "filler"'  # all common: AND
            assert plan(db.connection, ["absent"]) is None
        assert search(db, "the rare common")[0].path.endswith(b"/7.txt")
    finally:
        db.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(junk=st.text(alphabet=st.sampled_from(list('"*-:()^+{}[]<>!?.,;\'/\\ NEARANDORNOT') + ["\x00", "é", "ß"]),
                    max_size=40))
def test_query_syntax_is_never_fts_syntax(library, junk):
    home, root = library
    db = IndexDatabase(os.path.join(home, "library.db"), check=False)
    try:
        text = junk + " zebu " + junk
        hits = search(db, text, limit=50)
        assert any("zebu" in h.text for h in hits)
        try:
            search(db, junk)
        except XGenError as exc:
            assert "no words to search for" in str(exc)
    finally:
        db.close()


def test_retrieve_updates_first_and_gives_token_counts(home, tmp_path):
    root = tmp_path / "lib"
    root.mkdir()
    (root / "a.txt").write_text("The kiln fires pottery at high heat.\n\nGlazes melt in the kiln.\n")
    hits = retrieve([root], "How hot is the kiln?")
    assert hits and hits[0].path == os.fsencode(root / "a.txt")
    from models.tokenizer import XGenTokenizer

    assert hits[0].n_tokens == len(XGenTokenizer(allow_download=False).encode(hits[0].text))
    assert hits[0].location() == f"{root / 'a.txt'}:1-3"
    (root / "b.txt").write_text("A new note about the kiln's chimney.\n")
    assert any(h.path.endswith(b"/b.txt") for h in retrieve([root], "chimney"))  # brought up to date
    assert retrieve([root], "?!") == []
    # the question's words come first, then the recent turns, most recent first
    assert query_words(question_query("kiln heat", ["older glaze", "newer chimney"])) == \
        ["kiln", "heat", "newer", "chimney", "older", "glaze"]


def test_snippet_marks_word_forms():
    text = "We index folders. Indexing is incremental, and the indexes stay small."
    assert snippet(text, ["indexing"]) == ("We **index** folders. **Indexing** is incremental, and the **indexes** "
                                           "stay small.")


def test_a_ranking_past_its_time_limit_gives_unranked_hits(library, monkeypatch):
    home, root = library
    module = sys.modules["assistant.library.search"]
    monkeypatch.setattr(module, "TIME_LIMIT", -1.0)  # every ranking is too slow...
    monkeypatch.setattr(module, "CHECK_EVERY", 1)  # ...and is seen to be at once
    db = IndexDatabase(os.path.join(home, "library.db"), check=False)
    try:
        hits = search(db, "walrus zebras", limit=5)
    finally:
        db.close()
    assert {os.path.basename(h.path) for h in hits} == {b"b.md", b"a.txt"}
    assert all(h.score == 0.0 for h in hits)


def test_a_search_within_files_ranks_as_the_whole_library_does(home, tmp_path):
    """Files are searched within their passage ids (not by ranking the whole library and
    filtering): the same passages, in the same order, as the library-wide ranking keeps."""
    from contextlib import closing

    root = tmp_path / "lib"
    root.mkdir()
    for name, pumps in (("a.txt", 30), ("b.txt", 3), ("c.txt", 12)):
        (root / name).write_text("\n\n".join(
            (f"Entry {i}: the pump in hall {i} was checked. " * (1 + i % 3) if i < pumps else
             f"Entry {i}: the valve in hall {i} was painted.") + " Filler words about the site." * 20
            for i in range(60)))
    update_library([root])
    files = [os.fsencode(root / n) for n in ("b.txt", "c.txt")]
    with closing(IndexDatabase()) as db:
        everywhere = search(db, "pump hall", limit=500)
        within = search(db, "pump hall", limit=8, within=files)
        by_folder = search(db, "pump hall", limit=8, within=[os.fsencode(root)])
    expected = [h for h in everywhere if h.path in files][:8]
    assert [(h.path, h.start_line, h.score) for h in within] == [(h.path, h.start_line, h.score) for h in expected]
    assert {h.path for h in within} == set(files) and len(within) == 8
    assert by_folder == everywhere[:8]
