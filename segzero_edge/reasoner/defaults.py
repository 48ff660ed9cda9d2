"""The reasoner's defaults, one home each (imports nothing, so any module can use them).

``DEFAULT_N_CTX``: KV cells of the llama.cpp context (``llama_context_params.n_ctx``) when
neither the caller nor the bundle's manifest (``reasoner.n_ctx``) sets one: a 1030-cell
Qwen2.5-VL prompt (900 image tokens) plus a full thinking and answer budget fit.

``DEFAULT_MAX_NEW_TOKENS``: the generation budget of Seg-Zero's reference inference script
(``model.generate(max_new_tokens=1024, do_sample=False)``, Seg-Zero ``inference_scripts``);
the model families' ``max_new_tokens`` and the reasoner's default.

``DEFAULT_N_BATCH``: llama.cpp's logical batch (``llama_context_params.n_batch``, tokens per
``llama_decode`` call of the prefill; llama.cpp's own default).

``DEFAULT_KV_CACHE_TYPE``: the KV cache's ggml type (``type_k``/``type_v``), llama.cpp's default.

``DEFAULT_THINK_BUDGET``: tokens of free ``<think>`` text before ``</think>`` is forced when the
answer grammar is on.
"""

from __future__ import annotations

DEFAULT_N_CTX = 4096
DEFAULT_MAX_NEW_TOKENS = 1024
DEFAULT_THINK_BUDGET = 512
DEFAULT_N_BATCH = 512
DEFAULT_KV_CACHE_TYPE = "f16"
