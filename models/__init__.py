"""The ground floor: model facts, tokenizer, checkpoints, GGUF files, the PyTorch model.

llama.cpp's CPU backend runs on OpenMP, whose threads by default spin for a while after
every graph, waiting for the next one. On a laptop or a shared 2-core machine that spin
takes the CPU from whatever else runs (the app's UI thread, a second process, the next
token's sampling): measured here, a tiny model's 100-token generations took 1.0 s with
passive waiting and 2.8-10.4 s with spinning while one other process was busy, and two
test modules ran in 39 s instead of 89 s. The variable is read when libgomp loads, so it
is set here, before anything can import llama_cpp; a value the user set is kept.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
