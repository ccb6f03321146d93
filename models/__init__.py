"""The ground floor: model facts, tokenizer, checkpoints, GGUF files, the PyTorch model."""
