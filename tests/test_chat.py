"""Chat with files on a fake engine: passages, citations, budgeting and prefix reuse."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.chat import ChatSession, cited_numbers
from assistant.passages import Scope
from assistant.engines.base import ContextOverflow
from tests.fake_engine import FakeEngine


@pytest.fixture
def notes(tmp_path):
    path = tmp_path / "notes.md"
    lines = []
    for i in range(1, 41):
        lines.append(f"Line {i}: the shipment of widgets number {i} left the warehouse on day {i}.")
        if i % 5 == 0:
            lines.append("")
    path.write_text("\n".join(lines) + "\n")
    return scope_of(path)


@pytest.fixture
def manual(tmp_path):
    topics = ["battery", "antenna", "display", "keyboard", "speaker", "camera", "charger", "sensor"]
    paragraphs = []
    for i in range(60):
        topic = topics[i % len(topics)]
        paragraphs.append(f"Section {i} about the {topic}. " + f"The {topic} needs care and regular checks. " * 6)
    path = tmp_path / "manual.txt"
    path.write_text("\n\n".join(paragraphs) + "\n")
    return scope_of(path)


def scope_of(path) -> Scope:
    """The file attached through the library index, as a conversation attaches it."""
    scope = Scope()
    assert scope.attach([path]).problems == []
    return scope


def test_cited_numbers():
    assert cited_numbers("It left on day 3 [2]. Also [4, 2] and [7;8].") == [2, 4, 7, 8]
    assert cited_numbers("no citations [a] [] here") == []


def test_small_file_goes_in_whole_and_citations_resolve_to_lines(notes):
    engine = FakeEngine(n_ctx=4096)
    engine.queue("Widget 12 left on day 12 [2].")
    chat = ChatSession(engine, notes)
    answer = chat.ask("When did widget 12 leave?")
    prompt = engine.prompt_texts()[0]
    assert all(f"Line {i}:" in prompt for i in range(1, 41))  # the whole file
    assert answer.notes == []
    (cited,) = answer.citations
    assert cited.number == 2
    first, last = cited.found.start_line, cited.found.end_line
    assert cited.label == f"notes.md:{first}-{last}"
    text_lines = Path(cited.found.source).read_text().splitlines()[first - 1:last]
    assert "\n".join(text_lines).strip() == cited.text.strip()
    assert f"[2] {cited.label}" in prompt


def test_follow_up_reuses_the_prefix(notes):
    engine = FakeEngine(n_ctx=4096)
    engine.queue("Day 12 [2].", "Day 13 [2].")
    chat = ChatSession(engine, notes)
    first = chat.ask("When did widget 12 leave?")
    second = chat.ask("And widget 13?")
    p1, p2 = engine.prompts
    assert p2[: len(p1)] == p1  # append-only
    new_tokens = len(p2) - len(p1) - first.stats.generated  # the reply is cached too
    assert second.stats.prompt_evaluated == new_tokens
    assert second.stats.prompt_evaluated < 0.1 * first.stats.prompt_evaluated


def test_long_file_uses_retrieval_and_says_what_was_left_out(manual):
    engine = FakeEngine(n_ctx=1024)
    engine.queue("Check the camera regularly [6].")
    chat = ChatSession(engine, manual, answer_tokens=200)
    answer = chat.ask("How should I look after the camera?")
    prompt = engine.prompt_texts()[0]
    assert len(engine.prompts[0]) + 200 <= engine.n_ctx
    assert answer.notes and "did not fit the context" in answer.notes[0]
    shown = answer.passages_added
    assert 0 < len(shown) < answer.passages_total
    camera = [p.number for p in chat.passages if "camera" in p.text]
    assert set(shown) <= set(camera) or sum(n in camera for n in shown) >= len(shown) // 2
    assert "camera" in prompt


def test_follow_up_retrieval_adds_only_new_passages(manual):
    engine = FakeEngine(n_ctx=2048)
    chat = ChatSession(engine, manual, answer_tokens=200)
    first = chat.ask("battery care?")
    second = chat.ask("antenna care?")
    assert not set(first.passages_added) & set(second.passages_added)
    assert engine.prompts[1][: len(engine.prompts[0])] == engine.prompts[0]
    assert "More passages:" in engine.prompt_texts()[1]


def test_citations_only_to_passages_the_model_saw(manual):
    engine = FakeEngine(n_ctx=1024)
    chat = ChatSession(engine, manual, answer_tokens=200)
    engine.queue(" ".join(f"[{n}]" for n in range(1, 60)))
    answer = chat.ask("camera?")
    assert answer.citations
    assert {p.number for p in answer.citations} == set(answer.passages_added)


def test_a_citation_to_a_passage_not_given_is_flagged(notes):
    engine = FakeEngine()
    engine.queue("Day 12 [1], and see [17] and [40].")
    chat = ChatSession(engine, notes)
    answer = chat.ask("When did widget 12 leave?")
    given = {p.number for p in answer.sources}
    assert 1 in given and not {17, 40} & given
    assert [p.number for p in answer.citations] == [1]
    assert answer.notes[-1] == ("the answer cites [17] [40], which were not given to the model: "
                                "those citations point at no passage")
    engine.queue("Day 13 [1].")
    assert not any("not given" in n for n in chat.ask("And widget 13?").notes)


def test_question_too_long_for_the_context(notes):
    engine = FakeEngine(n_ctx=300)
    chat = ChatSession(engine, notes, answer_tokens=64)
    with pytest.raises(ContextOverflow):
        chat.ask("why? " * 400)


def test_full_context_drops_old_turns_and_says_so(notes):
    engine = FakeEngine(n_ctx=1400, default_reply="A long answer. " * 30)
    chat = ChatSession(engine, notes, answer_tokens=128)
    answers = [chat.ask(f"Question {i} about widgets?") for i in range(6)]
    rebuilt = [i for i, a in enumerate(answers) if any("(the context was full)" in n for n in a.notes)]
    assert rebuilt, [a.notes for a in answers]
    i = rebuilt[0]
    # The fresh view keeps the turn just before, drops the oldest, and has the passages again.
    prompt = engine.prompt_texts()[i]
    assert f"Question {i - 1} about widgets?" in prompt and "Question 0 about widgets?" not in prompt
    assert "Line 1:" in prompt
    assert all(len(p) + 128 <= engine.n_ctx for p in engine.prompts)
