"""`xgen summarize FOLDER` against the OpenAI double: each file, then the folder naming its
files; calls that overlap on a server with slots; map-reduce of many file summaries;
Ctrl+C keeping the files done."""

from __future__ import annotations

import json
import threading

from tests.fake_engine import FakeEngine
from assistant.engines.remote import RemoteEngine
from assistant.folder_summary import parallel_calls, summarize_folder
from assistant.modelref import LoadedModel
from assistant.session import SummaryForm
from assistant.store import Store
from bench.openai_double import OpenAIDouble
from tests.test_library_ask import CASE, run, write_tree


def test_summarize_a_folder_gives_each_file_then_the_folder_naming_its_files(home, tmp_path):
    folder = write_tree(tmp_path, CASE) / "smith"
    (folder / ".hidden.txt").write_text("never summarized\n")
    with OpenAIDouble() as server:
        server.default_reply = "A summary."
        result = run("summarize", str(folder), "--model", server.url, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["summary"] == "A summary." and data["stopped"] is False
    assert [f["path"] for f in data["files"]] == [str(folder.resolve() / rel) for rel in
                                                 ("intake.txt", "letters/insurer.md", "notes/2024/visit.txt")]
    sent = server.prompt_texts()
    assert len(sent) == 4  # three files, then the folder
    for rel, text in CASE.items():  # each file's own text went to the model once
        assert sum(text.split("\n")[0] in p for p in sent[:3]) == 1
    combine = sent[3]
    assert all(f"File: {rel}\nA summary." in combine for rel in CASE)  # each summary under its file's name
    assert "never summarized" not in "".join(sent)


def test_a_server_with_slots_gets_overlapping_calls(home, tmp_path):
    folder = write_tree(tmp_path, {f"docs/f{i}.txt": f"File {i} says the pump {i} was checked.\n" for i in range(6)})
    with OpenAIDouble(total_slots=3, delay=0.05) as server:
        server.default_reply = "The pump was checked on the day it was due."
        result = run("summarize", str(folder / "docs"), "--model", server.url)
        assert result.exit_code == 0, result.output
        assert "(3 at a time)" in result.output  # the server's total_slots
        assert 1 < server.most_active <= 3
    with OpenAIDouble(total_slots=3, delay=0.05) as server:
        server.default_reply = "Another summary, so nothing comes from the cache."
        one = run("summarize", str(folder / "docs"), "--model", server.url, "--parallel", "1")
        assert one.exit_code == 0, one.output
        assert server.most_active == 1 and len(server.requests) == 7


def test_a_local_engine_runs_one_summary_at_a_time():
    model = LoadedModel("fake", FakeEngine())
    assert parallel_calls(model, None) == (1, None)
    calls, note = parallel_calls(model, 4)
    assert calls == 1 and "one summary at a time" in note


def test_file_summaries_that_do_not_fit_one_context_are_combined_in_parts(home, tmp_path):
    folder = write_tree(tmp_path, {f"many/f{i:02d}.txt": f"Entry {i}: the valve {i} was replaced.\n"
                                   for i in range(24)})
    with OpenAIDouble(n_ctx=512) as server:
        server.default_reply = "This file records that one valve was replaced, when, by whom and why, " * 2
        result = run("summarize", str(folder / "many"), "--model", server.url, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert len(data["files"]) == 24 and data["summary"]
    after_files = server.prompt_texts()[24:]
    assert len(after_files) >= 3  # parts, then their combination
    assert sum("Summarize this part of" in p for p in after_files) >= 2  # the map step over the summaries
    # Every file's summary reached the combination, under its name.
    assert all(any(f"File: many/f{i:02d}.txt" in p for p in after_files) for i in range(24))


def test_stopping_keeps_the_files_done_and_the_next_run_goes_on(home, tmp_path):
    folder = write_tree(tmp_path, {f"docs/f{i}.txt": f"File {i}: the pump {i} was checked.\n" for i in range(4)})
    stop = threading.Event()
    with OpenAIDouble() as server, Store() as store:
        server.default_reply = "Checked."
        model = LoadedModel("double", RemoteEngine(server.url), location=server.url)
        done = []

        def after_two(summary):
            done.append(summary)
            if len(done) == 2:
                stop.set()  # what Ctrl+C does

        first = summarize_folder(store, model, folder / "docs", SummaryForm(), stop=stop, parallel=1,
                                 on_file=after_two)
        assert first.stopped and len(first.files) == 2 and first.summary == ""
        assert len(server.requests) == 2
        second = summarize_folder(store, model, folder / "docs", SummaryForm(), parallel=1)
    assert not second.stopped and len(second.files) == 4 and second.summary == "Checked."
    assert [f.cached for f in second.files] == [True, True, False, False]
    assert len(server.requests) == 2 + 2 + 1  # the two files left, then the folder
