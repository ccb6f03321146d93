"""The chat screen's flows: widgets with nothing to draw that own a job of the screen
(sessions, files, asks and summaries), run its workers and post messages. They open
dialogs (screens/) and are composed by the chat screen (tui/chat.py)."""
