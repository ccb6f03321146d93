"""Summarization cost: prompt tokens evaluated per document token, real engine (llama.cpp).

Documents of 1x, 4x and 16x the context go through `Summarizer` (a small random
XGen-shaped model with the full 8K context, greedy). Target: at most 1.15 evaluated
prompt tokens per document token, i.e. the map-reduce reads the document about once.

`--cut` runs the case where every partial summary is cut at its cap and redone tighter:
random weights never end a reply under the settings `xgen summarize` uses. It takes the
small model at 8K on a 4x document, and the demo model (the same shapes as `xgen demo`,
its 512-token context) on a 33K-token document, as issue 17 measured it.

    .venv/bin/python -m bench.bench_summarize            # 1x, 4x, 16x
    .venv/bin/python -m bench.bench_summarize --quick    # 1x, 4x
    .venv/bin/python -m bench.bench_summarize --cut      # every part cut
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from assistant.documents import load_document
from assistant.engines.base import SamplingSettings
from assistant.engines.llama import LlamaEngine
from assistant.session import SUMMARY_SETTINGS
from assistant.summarize import Summarizer
from bench.models import gguf

TARGET = 1.15
PARAGRAPH = ("Clause {n}. The supplier shall deliver batch {n} within {m} days of the order, and the "
             "buyer may withhold {n} percent of the price until the goods pass inspection.\n\n")
GREEDY = SamplingSettings(temperature=0.0, top_k=1, repeat_penalty=1.0)


def run(engine: LlamaEngine, folder: Path, label: str, fill: int, settings: SamplingSettings):
    """Summarize a document of about `fill` tokens; its stats."""
    per_paragraph = engine.count_tokens(PARAGRAPH.format(n=100, m=300))
    path = folder / f"contract-{label}.txt"
    path.write_text("".join(PARAGRAPH.format(n=i, m=3 * i) for i in range(int(fill / per_paragraph))))
    return Summarizer(engine, settings=settings).summarize(load_document(path)).stats


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--cut", action="store_true", help="every partial summary cut (see above)")
    opts = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        if opts.cut:
            # The target is stated at XGen's 8K; the demo's 512-token context is shown, not held to it.
            cases = [("small", 8192, "4x 8192 context, every part cut", 4 * 8192, True),
                     ("tiny", 512, "demo model, 512 context, every part cut", 33_000, False)]
            for shapes, n_ctx, label, fill, held in cases:
                engine = LlamaEngine(gguf(shapes, "q4_k_m"), n_ctx=n_ctx)
                rows.append((label, run(engine, Path(tmp), shapes, fill, SUMMARY_SETTINGS), held))
                engine.close()
        else:
            n_ctx = 8192
            engine = LlamaEngine(gguf("small", "q4_k_m"), n_ctx=n_ctx)
            for contexts in [1, 4] if opts.quick else [1, 4, 16]:
                # 1x: a document that just fits one pass; larger ones are contexts x n_ctx tokens.
                fill = n_ctx - n_ctx // 4 - 200 if contexts == 1 else contexts * n_ctx
                rows.append((f"{contexts}x {n_ctx} context", run(engine, Path(tmp), f"{contexts}x", fill, GREEDY), True))
            engine.close()
    print("| document | document tokens | parts | cut parts | combine levels | model calls | prompt tokens evaluated "
          "| evaluated / document token | seconds |")
    print("|---|---|---|---|---|---|---|---|---|")
    for label, s, _ in rows:
        print(f"| {label} | {s.document_tokens} | {s.parts} | {s.cut_parts} | {s.levels} | {s.model_calls} | "
              f"{s.prompt_tokens_evaluated} | {s.evaluated_per_document_token:.3f} | {s.seconds:.1f} |")
    worst = max(s.evaluated_per_document_token for _, s, held in rows if held)
    if worst > TARGET:
        print(f"FAILED: {worst:.3f} evaluated tokens per document token > {TARGET}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
