"""Libraries: folders indexed once into one SQLite FTS5 index, kept current, searched.

- ``schema``: the index file, its tables (numbered migrations), checks on opening;
- ``names``: file names stored losslessly as bytes, shown printably;
- ``walk``: which files a folder holds for the library, and why others are left out;
- ``extract``: one file to passages (runs in worker processes);
- ``job``: ``update_library``, the indexing job (walk, read, commit per file, sweep);
- ``events``: what the job reports (Scanning, Progress, Skipped, Done) and its IndexReport;
- ``search``: the user's words to a bounded FTS5 query; ranked Hits;
- ``catalog``: the libraries held (list, forget, totals);
- ``retrieve``: passages for a question, libraries updated first (for ``ask``).
"""

from assistant.library.catalog import LibraryInfo, forget, list_libraries
from assistant.library.events import Done, Event, IndexReport, Progress, Scanning, Skipped
from assistant.library.job import update_library
from assistant.library.names import shown
from assistant.library.retrieve import question_query, retrieve
from assistant.library.schema import IndexDatabase, index_path
from assistant.library.search import Hit, search, snippet

__all__ = ["Done", "Event", "Hit", "IndexDatabase", "IndexReport", "LibraryInfo", "Progress", "Scanning",
           "Skipped", "forget", "index_path", "list_libraries", "question_query", "retrieve", "search", "shown",
           "snippet", "update_library"]
