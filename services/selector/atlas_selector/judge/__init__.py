"""The LLM judge backend (``vllm``): prompt, per-trajectory JSON schema, answer parsing, transports.

Only the HTTP transport (any OpenAI-compatible server: ``vllm serve``, or GPT-4o as in the paper) is
built; the in-process ``vllm.LLM`` transport is not. Nothing here imports vLLM.
"""
