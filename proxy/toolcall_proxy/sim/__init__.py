"""A simulated vLLM: the OpenAI API of ``vllm serve`` with a scripted model, no GPU and no weights.

:mod:`.engine` decides what the "model" writes for a prompt (pure functions); :mod:`.server`
serves it over HTTP with vLLM's command line, endpoints and response shapes. A family whose model
takes token ids (a dialect with a ``token_layout``: ChatGLM3) is served on ids once a tokenizer is
loaded: :mod:`.tokenization` is how vLLM turns text into ids and back with that tokenizer,
:mod:`.token_model` what the model reads in ids and the ids it writes.
"""
