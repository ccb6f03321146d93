"""Asking and replies: streaming, stopping (Esc, Ctrl+C), saving as it is written, citations, the context, copying."""

from __future__ import annotations

import pytest

from bench.openai_double import OpenAIDouble
from tests.fake_engine import FakeEngine
from assistant.tui.screens.passage import PassageScreen
from assistant.tui.widgets.composer import Composer
from assistant.tui.widgets.conversation import ConversationView
from assistant.tui.widgets.messages import CitationButton, ReplyMessage, UserMessage

from tests.tui_helpers import (LONG_REPLY, NOTES, SIZE, SMALL, app_with, composer, notifications, passage_rows,
                               passage_text, replies, send, sync, type_draft, wait_for, wait_idle, write)

WORDS = " ".join(f"word{i}" for i in range(60))


@sync
async def test_send_a_message_and_see_the_reply_streamed(store):
    engine = FakeEngine(["Widgets **left** on day 3, as the notes say."], step_delay=0.08)
    app = app_with(engine, store)
    async with app.run_test(size=SIZE) as pilot:
        await wait_idle(pilot, app)
        assert app.chat.status.model.label == "fake-model" and app.chat.status.model.engine == "fake"
        await send(pilot, "When did they leave?")
        reply = (await wait_for(pilot, lambda: replies(app), what="a reply widget"))[0]
        # Streamed: part of the text is on screen before the reply is finished.
        partial = await wait_for(pilot, lambda: reply.streaming and reply.streamed_text, what="streamed text")
        assert "Widgets **left** on day 3, as the notes say.".startswith(partial)
        await wait_idle(pilot, app)
        assert reply.text == "Widgets **left** on day 3, as the notes say."
        assert "Widgets left on day 3" in reply.markdown.source.replace("**", "")
        assert [w.text for w in app.chat.query(UserMessage)] == ["When did they leave?"]
        assert composer(app).text == ""
    messages = store.messages(app.conversation.session_id)
    assert [(m.role, m.content) for m in messages] == [
        ("user", "When did they leave?"), ("assistant", "Widgets **left** on day 3, as the notes say.")]
    assert messages[1].meta["finish"] == "eos" and messages[1].meta["stats"]["generated"] > 5


@sync
async def test_escape_stops_the_reply_and_keeps_the_partial_text(store):
    engine = FakeEngine([LONG_REPLY], step_delay=0.03)
    app = app_with(engine, store)
    async with app.run_test(size=SIZE) as pilot:
        await wait_idle(pilot, app)
        await send(pilot, "Say many words")
        reply = (await wait_for(pilot, lambda: replies(app)))[0]
        await wait_for(pilot, lambda: len(reply.streamed_text) > 20, what="some streamed text")
        await pilot.press("escape")
        await wait_for(pilot, lambda: not app.chat.busy, timeout=3, what="the reply to stop")
        assert reply.meta["finish"] == "stopped"
        assert reply.text and LONG_REPLY.startswith(reply.text) and len(reply.text) < len(LONG_REPLY)
        assert "stopped" in str(reply.query_one(".meta").render())
        # The app is still usable: the next question gets a reply.
        engine.queue("Fine.")
        await send(pilot, "And now?")
        await wait_for(pilot, lambda: len(replies(app)) == 2 and not app.chat.busy)
        assert replies(app)[1].text == "Fine."
    saved = store.messages(app.conversation.session_id)[1]
    assert saved.content == reply.text and saved.meta["finish"] == "stopped"


@sync
async def test_a_question_the_server_never_answered_is_given_back_and_not_stored(store):
    from assistant.engines import open_engine

    server = OpenAIDouble(["The first answer."]).__enter__()
    app = app_with(open_engine("remote", server.url), store)
    async with app.run_test(size=SMALL) as pilot:
        await wait_idle(pilot, app)
        await send(pilot, "Hello?")
        await wait_for(pilot, lambda: replies(app) and not app.chat.busy)
        server.__exit__(None, None, None)
        for attempt in range(2):  # the server is down now: each attempt fails the same way
            await send(pilot, "Are you there?")
            await wait_for(pilot, lambda: not app.chat.busy and composer(app).text == "Are you there?",
                           what="the question given back")
            assert [n.title for n in notifications(app)][-1] == "Not sent"
            assert len(replies(app)) == 1 and len(app.chat.query(UserMessage)) == 1
    assert [m.content for m in store.messages(app.conversation.session_id)] == ["Hello?", "The first answer."]


@sync
async def test_a_reply_cut_by_the_server_going_away_stays_on_screen_with_the_real_cause(store):
    from assistant.engines import open_engine

    with OpenAIDouble([WORDS], cut_after=12) as server:
        app = app_with(open_engine("remote", server.url), store)
        async with app.run_test(size=SMALL) as pilot:
            await wait_idle(pilot, app)
            await send(pilot, "Say many words")
            await wait_for(pilot, lambda: replies(app) and not app.chat.busy, what="the reply to fail")
            (reply,) = replies(app)
            written = " ".join(WORDS.split()[:12])
            assert reply.text.strip() == written  # kept on screen, as Esc keeps it
            assert "(no text)" not in reply.markdown.source
            meta = str(reply.query_one(".meta").render())
            assert "closed the connection" in meta and "longer than its context" not in meta
            assert "closed the connection" in notifications(app)[-1].message
    saved = store.messages(app.conversation.session_id)[1]
    assert saved.content.strip() == written and saved.meta["finish"] == "error"


@sync
async def test_ctrl_c_stops_a_reply_and_idle_it_does_not_quit(store):
    engine = FakeEngine([WORDS], step_delay=0.03)
    app = app_with(engine, store)
    async with app.run_test(size=SMALL) as pilot:
        await wait_idle(pilot, app)
        await send(pilot, "Say many words")
        reply = (await wait_for(pilot, lambda: replies(app)))[0]
        await wait_for(pilot, lambda: len(reply.streamed_text) > 10, what="some streamed text")
        await pilot.press("ctrl+c")
        await wait_for(pilot, lambda: not app.chat.busy, timeout=3, what="the reply to stop")
        assert reply.meta["finish"] == "stopped" and WORDS.startswith(reply.text) and reply.text != WORDS
        # Idle, Ctrl+C keeps Textual's meaning (copy in the input): the app stays open.
        await type_draft(pilot, "keep me")
        await pilot.press("ctrl+c")
        await pilot.pause()
        assert app.is_running and composer(app).text == "keep me"


@sync
async def test_a_reply_is_saved_while_it_is_written(store):
    """Killing the app mid-reply loses at most half a second of it."""
    engine = FakeEngine([LONG_REPLY], step_delay=0.02)
    app = app_with(engine, store)
    async with app.run_test(size=SIZE) as pilot:
        await wait_idle(pilot, app)
        await send(pilot, "Write a lot")
        await wait_for(pilot, lambda: app.conversation.session_id)
        session_id = app.conversation.session_id
        user, reply = await wait_for(pilot, lambda: len(store.messages(session_id)) == 2 and store.messages(session_id))
        assert user.content == "Write a lot"  # saved before generating
        saved = await wait_for(pilot, lambda: store.messages(session_id)[1].content, timeout=3,
                               what="a progressive save")
        assert app.chat.busy and LONG_REPLY.startswith(saved)
        assert store.messages(session_id)[1].meta == {"finish": "streaming"}
        await pilot.press("escape")
        await wait_for(pilot, lambda: not app.chat.busy)


@sync
async def test_an_answer_with_citations_opens_the_passage(store, tmp_path):
    notes = write(tmp_path, "notes.md", NOTES)
    engine = FakeEngine(["Widget 2 left on day 2 [1]."])
    app = app_with(engine, store, files=[str(notes)])
    async with app.run_test(size=SIZE) as pilot:
        await wait_idle(pilot, app)
        await wait_for(pilot, lambda: app.conversation.documents)
        await send(pilot, "When did widget 2 leave?")
        await wait_for(pilot, lambda: replies(app) and not app.chat.busy)
        await pilot.pause()
        button = app.chat.query_one(CitationButton)
        assert str(button.label).startswith("[1] notes.md:1-")
        # Under the answer, as under `xgen ask`: every passage given, the cited one marked.
        sources = str(replies(app)[0].query_one(".sources").render())
        assert sources.startswith("Sources (2 of 2 passages given to the model; * cited): * [1] notes.md:1-11 · "
                                  "[2] notes.md:")
        await pilot.click(CitationButton)
        await wait_for(pilot, lambda: isinstance(app.screen, PassageScreen), what="the passage")
        text = passage_text(app.screen)
        assert "Line 2: the shipment of widgets number 2" in text
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is app.chat)
    meta = store.messages(app.conversation.session_id)[1].meta
    assert meta["citations"][0]["number"] == 1 and "Line 2:" in meta["citations"][0]["text"]


@sync
async def test_copy_the_last_answer(store):
    app = app_with(FakeEngine(["Copy **me**."]), store)
    async with app.run_test(size=SIZE) as pilot:
        await wait_idle(pilot, app)
        await send(pilot, "Question")
        await wait_idle(pilot, app)
        await pilot.press("ctrl+g")
        assert app.clipboard == "Copy **me**."


@sync
async def test_context_full_is_a_notification_not_a_traceback(store):
    engine = FakeEngine(n_ctx=256)
    app = app_with(engine, store)
    async with app.run_test(size=SIZE) as pilot:
        await wait_idle(pilot, app)
        composer(app).text = "why " * 400
        await pilot.click(Composer)
        await pilot.press("end", "enter")
        await wait_for(pilot, lambda: notifications(app) and not app.chat.busy)
        note = notifications(app)[-1]
        assert note.severity == "error" and "context holds 256" in note.message
        assert "shorten the question" in note.message
        # Refused before anything was saved: no session, and the question is back to edit.
        assert replies(app) == [] and store.list_sessions() == []
        assert composer(app).text.strip() == ("why " * 400).strip()


@sync
async def test_context_used_grows_after_a_reply(store):
    engine = FakeEngine(["One.", "Two."])
    app = app_with(engine, store)
    async with app.run_test(size=SIZE) as pilot:
        await wait_idle(pilot, app)
        status = app.chat.status
        assert status.context_used == 0 and status.model.n_ctx == 2048
        assert "ctx 0/2,048" in str(app.chat.query_one("#context").render())
        await send(pilot, "First")
        await wait_idle(pilot, app)
        first = status.context_used
        assert first > 0 and f"ctx {first:,}/2,048" in str(app.chat.query_one("#context").render())
        assert status.speed > 0
        await send(pilot, "Second")
        await wait_for(pilot, lambda: len(replies(app)) == 2 and not app.chat.busy)
        assert status.context_used > first


@pytest.mark.parametrize("separator", ["\x0c", "\u2028", "\x85"])
@sync
async def test_a_streamed_reply_draws_each_line_once(separator):
    """A form feed (PDF text), U+2028 (web pages) or NEL (Latin-1) in a reply made Textual's
    Markdown.append re-parse from a line too early while streaming, which drew the last line
    of the paragraph before again."""
    from textual.app import App
    from textual.containers import VerticalScroll
    from textual.widgets.markdown import MarkdownBlock

    class Host(App):
        def compose(self):
            yield VerticalScroll()

    text = (f"Page 1{separator}page 2{separator}page 3 ends here.\nThe last line of it.\n\n"
            "Next paragraph.\n\nThird one.")
    app = Host()
    async with app.run_test(size=SMALL) as pilot:
        reply = ReplyMessage(1, streaming=True)
        await app.query_one(VerticalScroll).mount(reply)
        for start in range(0, len(text), 7):  # pieces as the relay sends them
            await reply.append(text[start:start + 7])
            await pilot.pause(0.02)
        await pilot.pause(0.2)
        shown = [str(block.render()) for block in reply.markdown.children if isinstance(block, MarkdownBlock)]
        assert shown == ["Page 1 page 2 page 3 ends here. The last line of it.", "Next paragraph.", "Third one."]
        await reply.finish(text, {})
        await pilot.pause()
        assert reply.text == text  # what is saved and exported is the model's text


@sync
async def test_page_keys_scroll_the_conversation_from_the_input(store):
    engine = FakeEngine(["\n\n".join(f"Paragraph {i}." for i in range(40))])
    app = app_with(engine, store)
    async with app.run_test(size=SMALL) as pilot:
        await wait_idle(pilot, app)
        await send(pilot, "A long answer please")
        await wait_for(pilot, lambda: replies(app) and not app.chat.busy)
        await pilot.pause(0.2)
        view = app.chat.query_one(ConversationView)
        bottom = view.scroll_y
        assert bottom > 0 and app.focused is composer(app)
        await pilot.press("pageup")
        await pilot.pause(0.3)
        assert view.scroll_y < bottom
        await pilot.press("pagedown")
        await pilot.pause(0.3)
        assert view.scroll_y == bottom


@sync
async def test_a_reply_cut_at_its_limit_says_so_once(store, monkeypatch):
    # The app keeps 512 tokens for a reply in a 2,048 context; 40 make the cut quick.
    monkeypatch.setattr("assistant.session.default_answer_tokens", lambda n_ctx: 40)
    app = app_with(FakeEngine([LONG_REPLY]), store)
    async with app.run_test(size=SMALL) as pilot:
        await wait_idle(pilot, app)
        await send(pilot, "Write a lot")
        await wait_for(pilot, lambda: replies(app) and not app.chat.busy)
        await pilot.pause()
        reply = replies(app)[0]
        assert reply.meta["finish"] == "length"
        details = str(reply.query_one(".meta").render())
        assert "the answer stopped at its limit of 40 tokens" in details  # the core's note, with the number
        assert details.count("limit") == 1


CODE_REPLY = ("Here is the loop:\n\n```python\nfor widget in warehouse.widgets_shipped_on_the_given_day(day=2, "
              "include_returns=False, include_damaged=False, sort_by='number'):  # END\n    print(widget)\n```\n")


@sync
async def test_a_long_code_line_scrolls_sideways_with_a_bar_on_its_own_background(store):
    from textual.widgets.markdown import MarkdownFence

    app = app_with(FakeEngine([CODE_REPLY]), store)
    async with app.run_test(size=SMALL) as pilot:
        await wait_idle(pilot, app)
        await send(pilot, "Show the loop")
        await wait_for(pilot, lambda: replies(app) and not app.chat.busy and app.chat.query(MarkdownFence))
        await pilot.pause()
        fence = app.chat.query_one(MarkdownFence)
        reply = replies(app)[0]
        assert fence.region.right <= reply.region.right  # inside the reply, not cut at the screen's edge
        assert fence.max_scroll_x > 0 and fence.show_horizontal_scrollbar
        assert fence.scrollbar_size_horizontal == 1  # a bar the user sees (and can drag)
        longest = max(len(line) for line in fence.code.splitlines())
        assert fence.virtual_size.width >= longest  # the whole line is there, to scroll to
        assert fence.styles.background != reply.styles.background
        assert fence.styles.background.a > 0 and fence.styles.background != app.chat.query_one(ConversationView).background_colors[1]


# A hard-wrapped text as files often are: a line break every 50 or so columns.
WRAPPED = ("The warehouse shipped the widgets on the second day\nof the month, after the inspection of the\n"
           "loading bay had been signed off.\n\nThe inspector noted:\n- the doors were repaired\n"
           "- the ramp was\n  repainted\n\nNo other findings.\n")


def test_a_passage_is_reflowed_by_paragraph_with_its_lines():
    from assistant.tui.screens.passage import line_range, reflow

    paragraphs = reflow(WRAPPED)
    assert [p.text for p in paragraphs] == [
        "The warehouse shipped the widgets on the second day of the month, after the inspection of the "
        "loading bay had been signed off.",
        "The inspector noted:\n- the doors were repaired\n- the ramp was\n  repainted",  # structure keeps its breaks
        "No other findings."]
    assert [(p.first, p.last) for p in paragraphs] == [(1, 3), (5, 8), (10, 10)]
    assert [line_range(p, 40) for p in paragraphs] == ["40-42", "44-47", "49"]
    assert line_range(paragraphs[0], None) == ""


@sync
async def test_the_passage_viewer_shows_paragraphs_with_their_line_numbers(store, tmp_path):
    notes = write(tmp_path, "notes.md", "Title line\n\n" + WRAPPED)
    app = app_with(FakeEngine(["The widgets left on the second day [1]."]), store, files=[str(notes)])
    async with app.run_test(size=SMALL) as pilot:
        await wait_idle(pilot, app)
        await wait_for(pilot, lambda: app.conversation.documents)
        await send(pilot, "When did the widgets leave?")
        await wait_for(pilot, lambda: replies(app) and not app.chat.busy and app.chat.query(CitationButton))
        await pilot.pause()
        app.chat.query_one(CitationButton).press()
        await wait_for(pilot, lambda: isinstance(app.screen, PassageScreen), what="the passage")
        await pilot.pause()
        rows = passage_rows(app.screen)
        assert rows[0] == ("1", "Title line")
        assert rows[1] == ("3-5", "The warehouse shipped the widgets on the second day of the month, after the "
                                  "inspection of the loading bay had been signed off.")
        assert rows[-1] == ("12", "No other findings.")


@sync
async def test_a_stray_citation_is_flagged_and_uncited_passages_open(store, tmp_path):
    from assistant.tui.screens.picker import PickerScreen
    from assistant.tui.widgets.messages import GivenButton

    notes = write(tmp_path, "notes.md", NOTES)
    app = app_with(FakeEngine(["Widget 2 left on day 2 [1], widget 17 too [17]."]), store, files=[str(notes)])
    async with app.run_test(size=SMALL) as pilot:
        await wait_idle(pilot, app)
        await wait_for(pilot, lambda: app.conversation.documents)
        await send(pilot, "When did widget 2 leave?")
        await wait_for(pilot, lambda: replies(app) and not app.chat.busy and app.chat.query(GivenButton))
        await pilot.pause()
        reply = replies(app)[0]
        details = reply.query_one(".meta")
        assert "cites [17], which was not given to the model" in str(details.render())
        assert details.has_class("-problem")  # in the warning colour
        # [2] was given but not cited: one button away.
        given = reply.query_one(GivenButton)
        assert str(given.label) == "also given: [2]…"
        given.press()
        await wait_for(pilot, lambda: isinstance(app.screen, PickerScreen), what="the list of passages")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, PassageScreen), what="the passage")
        assert app.screen.citation["number"] == 2 and "Line 11:" in passage_text(app.screen)
        # Its lines in the file: "Line 11" is on line 13 (a blank line follows every fifth).
        assert passage_rows(app.screen)[0][0].startswith("13-")
