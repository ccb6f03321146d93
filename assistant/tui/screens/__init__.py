"""The app's screens: the chat, and the modal dialogs over it."""
