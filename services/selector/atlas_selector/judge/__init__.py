"""The LLM judge backend (``vllm``): prompt, per-trajectory JSON schema, answer parsing, transports.

``common`` holds what every transport shares (settings, the request, reading the answer); ``http``
talks to any OpenAI-compatible server (``vllm serve``, or GPT-4o as in the paper); ``engine`` runs
``vllm.LLM`` in this process. Only ``engine`` imports vLLM, and only when an engine is built.
"""
