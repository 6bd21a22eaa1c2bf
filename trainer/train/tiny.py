"""A tiny llama-architecture model and byte-level BPE tokenizer built offline, for tests and demos.

`build_tiny_llama(out_dir)` writes a `save_pretrained` directory (random weights, fixed seed) whose
tokenizer behaves like the MetaAligner checkpoints' (BOS `<s>` prepended, EOS `</s>`, pad = unk).
"""

from __future__ import annotations

from pathlib import Path

from metaaligner_chain.objectives import PROMPT_FORMATS, UNSEEN, catalogue
from metaaligner_chain.prompt import build_prompt

_SENTENCES = [
    "How do I bake bread at home? Mix flour, water, salt and yeast, knead, let it rise, then bake.",
    "What is the capital of France? The capital of France is Paris.",
    "Tell me a joke about cats. Why did the cat sit on the computer? To keep an eye on the mouse!",
    "I feel sad today. I am sorry to hear that. Talking to a friend or going for a walk may help.",
    "Explain photosynthesis simply. Plants use sunlight, water and carbon dioxide to make sugar.",
    "Give me three tips for sleeping better: keep a schedule, avoid screens, and limit caffeine.",
    "The response should be safe, helpful, honest, short, clear, and kind to the user.",
    "Human: Assistant: Question: Answer: Query: Context: Edit: better equal improve",
]


def _corpus() -> list[str]:
    texts = list(_SENTENCES)
    for prompt_format in PROMPT_FORMATS:
        keys = list(catalogue(prompt_format))
        for mode in ("better", "equal"):
            texts.append(build_prompt("q", "a", keys, prompt_format=prompt_format, mode=mode))
    texts.extend(UNSEEN.values())
    return texts


def build_tokenizer(vocab_size: int = 512):
    """A byte-level BPE `PreTrainedTokenizerFast` trained on a small built-in corpus."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<unk>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_corpus() * 4, trainer=trainer)
    bos = tokenizer.token_to_id("<s>")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<unk>",
        model_max_length=1024,
        clean_up_tokenization_spaces=False,
    )


def build_tiny_llama(
    out_dir: str | Path,
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    max_position_embeddings: int = 1024,
    seed: int = 0,
) -> Path:
    """Write a tiny random `LlamaForCausalLM` and its tokenizer to `out_dir`; return the path."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    out = Path(out_dir)
    tokenizer = build_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
    )
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
