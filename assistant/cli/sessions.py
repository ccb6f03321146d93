"""`xgen sessions`: list, read, export and delete saved conversations."""

from __future__ import annotations

import shutil
from pathlib import Path

import click

from assistant.cli.output import write_stdout
from assistant.store import Message, Session, Store, citation_label, parse_time


def _local(stamp: str) -> str:
    return parse_time(stamp).astimezone().strftime("%Y-%m-%d %H:%M")


@click.group()
def sessions() -> None:
    """Saved conversations (kept in sessions.db in your data directory, nowhere else).

    ID can be any unique start of a session id, as shown by `xgen sessions list`.
    """


@sessions.command("list")
@click.option("-n", "--limit", type=click.IntRange(1, 1_000_000), default=50, show_default=True,
              help="How many sessions to show.")
def list_(limit: int) -> None:
    """List sessions, most recently used first."""
    with Store() as store:
        rows = store.list_sessions(limit=limit)
    if not rows:
        click.echo("no sessions yet")
        return
    header = f"{'ID':<8}  {'UPDATED':<16}  {'MSGS':>4}  TITLE"
    width = max(shutil.get_terminal_size().columns - len(header) + len("TITLE"), 20)
    click.echo(header)
    for s in rows:
        title = s.title or "(untitled)"
        if len(title) > width:
            title = title[: width - 1] + "…"
        click.echo(f"{s.short_id:<8}  {_local(s.updated_at):<16}  {s.message_count:>4}  {title}")


@sessions.command()
@click.argument("session_id", metavar="ID")
def show(session_id: str) -> None:
    """Print a conversation as plain text."""
    with Store() as store:
        session = store.get_session(session_id)
        files = store.files(session.id)
        messages = store.messages(session.id)
    click.echo(_plain_text(session, [f.name for f in files], messages), nl=False)


def _plain_text(session: Session, file_names: list[str], messages: list[Message]) -> str:
    lines = [session.title or "(untitled)"]
    details = [f"session {session.id}"]
    if session.model:
        details.append(session.model + (f" ({session.engine})" if session.engine else ""))
    details.append(f"started {_local(session.created_at)}")
    lines.append(", ".join(details))
    if file_names:
        lines.append("files: " + ", ".join(file_names))
    for message in messages:
        lines += ["", f"{message.role}:", message.content.strip()]
        for position, citation in enumerate(message.citations, 1):
            lines.append(f"  [{citation.get('number') or position}] {citation_label(citation)}")
    return "\n".join(lines) + "\n"


@sessions.command()
@click.argument("session_id", metavar="ID")
@click.option("-o", "--output", type=click.Path(path_type=Path),
              help="Write the Markdown to this file instead of the standard output.")
@click.option("--force", is_flag=True, help="Overwrite an existing output file.")
def export(session_id: str, output: Path | None, force: bool) -> None:
    """Export a conversation as Markdown, with its files and citations."""
    from models.atomic import write_text

    with Store() as store:
        text = store.export_markdown(session_id)
    if output is None:
        write_stdout(text)
        return
    write_text(output, text, force=force, private=True)  # a conversation: 0600
    click.echo(f"wrote {output}", err=True)


@sessions.command()
@click.argument("session_id", metavar="ID")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
def delete(session_id: str, yes: bool) -> None:
    """Delete a conversation with its messages, attached-file records and summaries."""
    with Store() as store:
        session = store.get_session(session_id)
        if not yes:
            click.confirm(f"delete session {session.short_id} {session.title or '(untitled)'!r} "
                          f"({session.message_count} messages)?", abort=True)
        store.delete_session(session.id)
    click.echo(f"deleted session {session.short_id}")


@click.group()
def cache() -> None:
    """The cache of partial summaries (in sessions.db; bounded, oldest used out first).

    Entries are keyed on the model file, its settings and the prompt, so another model or
    quantization never reuses them; deleting a session deletes those of its files.
    """


@cache.command("info")
def cache_info() -> None:
    """How many partial summaries are cached, and their size."""
    with Store() as store:
        entries, chars = store.cache_info()
    click.echo(f"{entries:,} cached partial summaries, {chars / 2**20:.1f} MiB of text, in {store.path}")


@cache.command("clear")
def cache_clear() -> None:
    """Delete every cached partial summary (sessions and finished summaries stay)."""
    with Store() as store:
        removed = store.cache_clear()
    click.echo(f"cleared {removed:,} cached partial summaries")
