"""The model: what a causal LM is made of and how it is loaded, sized and saved.

- `arch`: its parts, found generically (no module names assumed);
- `spec`: shapes, size and the memory formulas (what compression it admits is decided above, in
  `core.methods.assess`);
- `memory`: will it fit, and was a failure an out-of-memory (E003);
- `loading`: any causal LM (hub id, local folder, the embedded default) onto a device;
- `default_model`: the embedded SmolLM2-135M, and a GGUF turned back into a checkpoint;
- `gguf_files`, `gguf_tokenizer`: llama.cpp's GGUF files (convert, repack, quantize) and their vocabulary;
- `checkpoints`: save and reload a compressed variant through `core.formats`.
"""
