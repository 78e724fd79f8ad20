"""A tiny random causal LM + word-level tokenizer for the XMEI tests (no downloads)."""
from __future__ import annotations

import re

import torch

WORDS = ("the user's emotion is intent underlying reason angry happy sad neutral greeting "
         "question answer statement opinion , . : \" ' - video audio features description "
         "utterance emotions intents what are and why ? you are an expert in affective "
         "computing given descriptions of speaker answer with speaker's then user assistant "
         "he she shouts smiles hello how why is this because loud voice").split()


def tiny_tokenizer(extra=()):
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders
    from transformers import PreTrainedTokenizerFast
    vocab = {"<pad>": 0, "<unk>": 1, "<s>": 2, "</s>": 3}
    for w in list(WORDS) + [w for t in extra for w in re.findall(r"\w+|[^\w\s]", t.lower())]:
        vocab.setdefault(w, len(vocab))
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.normalizer = __import__("tokenizers").normalizers.Lowercase()
    tk.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                                pre_tokenizers.Punctuation()])
    tk.decoder = decoders.WordPiece(prefix="##")
    return PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", unk_token="<unk>",
                                   bos_token="<s>", eos_token="</s>")


def tiny_lm(vocab_size: int, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=1024, pad_token_id=0, bos_token_id=2,
                      eos_token_id=3, tie_word_embeddings=False)
    return LlamaForCausalLM(cfg)


def tiny_pair(extra=(), seed: int = 0):
    tok = tiny_tokenizer(extra)
    return tok, tiny_lm(len(tok), seed)
