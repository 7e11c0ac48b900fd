"""A tiny causal LM built offline, for tests that run trl's trainers on CPU.

Tests must never download weights, so the tokenizer is trained on the fly from the test's own texts
and the model is randomly initialised. Both are saved to a folder first because trl's trainers are
given the model *path*: they load the policy from it and re-create the reference model from it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

BOS, EOS, PAD = "<|bos|>", "<|im_end|>", "<|pad|>"
IM_START = "<|im_start|>"

# ChatML; trl renders `prompt` with add_generation_prompt=True, then `prompt + chosen` without, and
# takes the common prefix as the prompt, so the generation prompt must equal an assistant turn's start.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def build_tiny_causal_lm(folder: Path, texts: Iterable[str], seed: int = 0, vocab_size: int = 400,
                         initializer_range: float = 0.02) -> Path:
    """Train a byte-level BPE tokenizer on ``texts``, build a 2-layer Llama and save both to ``folder``.
    ``initializer_range``: the weights' init std; transformers' 0.02 suits large models, while a
    model this small learns a criterion/answer interaction in a few dozen steps only from ~0.2."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = Path(folder)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[PAD, BOS, EOS, IM_START],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD,
        additional_special_tokens=[IM_START], chat_template=CHAT_TEMPLATE,
    )

    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, intermediate_size=64, max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False, initializer_range=initializer_range,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
