"""Summarization cost: prompt tokens evaluated per document token, real engine, 8K context.

Documents of 1x, 4x and 16x the context go through `Summarizer` on llama.cpp (a small
random XGen-shaped model with the full 8K context). Target: at most 1.15 evaluated
prompt tokens per document token, i.e. the map-reduce reads the document about once.

    .venv/bin/python -m bench.bench_summarize            # 1x, 4x, 16x
    .venv/bin/python -m bench.bench_summarize --quick    # 1x, 4x
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from assistant.documents import load_document
from assistant.engines.base import SamplingSettings
from assistant.engines.llama import LlamaEngine
from assistant.summarize import Summarizer
from bench.models import gguf

TARGET = 1.15
PARAGRAPH = ("Clause {n}. The supplier shall deliver batch {n} within {m} days of the order, and the "
             "buyer may withhold {n} percent of the price until the goods pass inspection.\n\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    opts = parser.parse_args()
    sizes = [1, 4] if opts.quick else [1, 4, 16]
    n_ctx = 8192
    engine = LlamaEngine(gguf("small", "q4_k_m"), n_ctx=n_ctx)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for contexts in sizes:
            per_paragraph = engine.count_tokens(PARAGRAPH.format(n=100, m=300))
            # 1x: a document that just fits one pass; larger ones are contexts x n_ctx tokens.
            fill = n_ctx - n_ctx // 4 - 200 if contexts == 1 else contexts * n_ctx
            n = int(fill / per_paragraph)
            path = Path(tmp) / f"contract-{contexts}x.txt"
            path.write_text("".join(PARAGRAPH.format(n=i, m=3 * i) for i in range(n)))
            summarizer = Summarizer(engine, settings=SamplingSettings(temperature=0.0, top_k=1, repeat_penalty=1.0))
            result = summarizer.summarize(load_document(path))
            s = result.stats
            rows.append((contexts, s))
    engine.close()
    print("| document | document tokens | parts | combine levels | model calls | prompt tokens evaluated "
          "| evaluated / document token | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    for contexts, s in rows:
        print(f"| {contexts}x {n_ctx} context | {s.document_tokens} | {s.parts} | {s.levels} | {s.model_calls} | "
              f"{s.prompt_tokens_evaluated} | {s.evaluated_per_document_token:.3f} | {s.seconds:.1f} |")
    worst = max(s.evaluated_per_document_token for _, s in rows)
    if worst > TARGET:
        print(f"FAILED: {worst:.3f} evaluated tokens per document token > {TARGET}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
