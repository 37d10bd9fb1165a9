"""Tiny classifiers of the Hugging Face families, built from their configs (nothing downloaded).

:data:`ARCHITECTURES` names one small configuration per family; :func:`build` makes its
model (random weights, a fixed seed) and :func:`example_inputs` token ids with varied
padding. The test suite checks the fast PEFs against the plain loop on every one of
them, and ``python -m workbench.bench.architectures`` writes the table of
docs/architectures.md from them. A family the installed ``transformers`` lacks is
skipped (:func:`available`).

Sizes are tiny on purpose (hidden width 32, two layers): exactness does not depend on
size, and the suite must stay fast. :func:`llama_20m` is the speed case, a
Llama-shaped model of about 20 M parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

VOCAB = 96
PAD = 0


@dataclass(frozen=True)
class Architecture:
    """One family's tiny classifier: ``config`` and ``model`` are class names in transformers."""

    name: str
    config: str
    model: str
    settings: dict = field(default_factory=dict)
    padding: str = "right"  # where the inputs are padded
    wrap: Callable[[nn.Module], nn.Module] | None = None  # e.g. a causal LM read as a classifier

    def available(self) -> bool:
        import transformers

        return hasattr(transformers, self.config) and hasattr(transformers, self.model)


_ENCODER = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                max_position_embeddings=64, pad_token_id=PAD)
_DECODER = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                max_position_embeddings=64, pad_token_id=PAD)


_T5 = dict(vocab_size=VOCAB, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=4,
           relative_attention_num_buckets=8, feed_forward_proj="gated-gelu", pad_token_id=PAD, decoder_start_token_id=PAD,
           eos_token_id=1)


_GEMMA2_STACK = dict(_DECODER, num_key_value_heads=2, head_dim=8, sliding_window=4, query_pre_attn_scalar=8)


def _zero_shot(lm: nn.Module) -> nn.Module:
    """A causal LM read as a 3-way classifier through the next-token logits of three token ids."""
    from .lm import ZeroShotClassifier

    class _Words:  # a tokenizer whose label words are single, distinct tokens
        pad_token_id, eos_token_id = PAD, PAD

        def __call__(self, text, add_special_tokens=True):
            return {"input_ids": [10 + sum(map(ord, text)) % 50]}

    return ZeroShotClassifier(lm, _Words(), label_words=["a", "b", "c"])


ARCHITECTURES: dict[str, Architecture] = {a.name: a for a in [
    Architecture("BERT", "BertConfig", "BertForSequenceClassification", _ENCODER),
    Architecture("RoBERTa", "RobertaConfig", "RobertaForSequenceClassification", dict(_ENCODER, pad_token_id=1)),
    Architecture("XLM-RoBERTa", "XLMRobertaConfig", "XLMRobertaForSequenceClassification", dict(_ENCODER, pad_token_id=1)),
    Architecture("DistilBERT", "DistilBertConfig", "DistilBertForSequenceClassification",
                 dict(vocab_size=VOCAB, dim=32, n_layers=2, n_heads=4, hidden_dim=64, max_position_embeddings=64, pad_token_id=PAD)),
    Architecture("ALBERT", "AlbertConfig", "AlbertForSequenceClassification",
                 dict(_ENCODER, embedding_size=16, num_hidden_layers=3)),  # one shared layer, called three times
    Architecture("ELECTRA", "ElectraConfig", "ElectraForSequenceClassification", dict(_ENCODER, embedding_size=16)),
    Architecture("DeBERTa", "DebertaConfig", "DebertaForSequenceClassification",
                 dict(_ENCODER, relative_attention=True, pos_att_type=["c2p", "p2c"], max_relative_positions=16)),
    Architecture("DeBERTa-v2/v3", "DebertaV2Config", "DebertaV2ForSequenceClassification",
                 dict(_ENCODER, relative_attention=True, pos_att_type=["p2c", "c2p"], position_buckets=8,
                      norm_rel_ebd="layer_norm", share_att_key=True, position_biased_input=False)),
    Architecture("MPNet", "MPNetConfig", "MPNetForSequenceClassification", _ENCODER),
    Architecture("ModernBERT", "ModernBertConfig", "ModernBertForSequenceClassification",
                 dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                      max_position_embeddings=64, pad_token_id=PAD, global_attn_every_n_layers=2, local_attention=8,
                      reference_compile=False, attn_implementation="eager")),
    Architecture("GPT-2", "GPT2Config", "GPT2ForSequenceClassification",
                 dict(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=64, pad_token_id=PAD)),
    Architecture("GPT-Neo", "GPTNeoConfig", "GPTNeoForSequenceClassification",
                 dict(vocab_size=VOCAB, hidden_size=32, num_layers=2, num_heads=4, attention_types=[[["global", "local"], 1]],
                      window_size=8, max_position_embeddings=64, pad_token_id=PAD)),
    Architecture("GPT-NeoX", "GPTNeoXConfig", "GPTNeoXForSequenceClassification", _DECODER),
    Architecture("OPT", "OPTConfig", "OPTForSequenceClassification",
                 dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, ffn_dim=64,
                      word_embed_proj_dim=32, max_position_embeddings=64, pad_token_id=1)),
    Architecture("Llama", "LlamaConfig", "LlamaForSequenceClassification", dict(_DECODER, num_key_value_heads=2)),
    Architecture("Mistral", "MistralConfig", "MistralForSequenceClassification", dict(_DECODER, num_key_value_heads=2)),
    Architecture("Qwen2", "Qwen2Config", "Qwen2ForSequenceClassification", dict(_DECODER, num_key_value_heads=2)),
    Architecture("Gemma", "GemmaConfig", "GemmaForSequenceClassification", dict(_DECODER, num_key_value_heads=2, head_dim=8)),
    Architecture("T5 (Flan-T5 shape)", "T5Config", "T5ForSequenceClassification", _T5),
    Architecture("BART", "BartConfig", "BartForSequenceClassification",
                 dict(vocab_size=VOCAB, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                      decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64,
                      pad_token_id=1, eos_token_id=2, bos_token_id=0, decoder_start_token_id=2, scale_embedding=True)),
    Architecture("Llama as a zero-shot classifier", "LlamaConfig", "LlamaForCausalLM", dict(_DECODER, num_key_value_heads=2),
                 padding="left", wrap=_zero_shot),
    # more families: relative positions (Funnel, XLNet), T5's relatives, sparse attention,
    # time-major layers (XLNet, Longformer), 1-d convolutions (SqueezeBERT), ALiBi (BLOOM)
    Architecture("MT5", "MT5Config", "MT5ForSequenceClassification", _T5),
    Architecture("UMT5", "UMT5Config", "UMT5ForSequenceClassification", _T5),
    Architecture("Funnel", "FunnelConfig", "FunnelForSequenceClassification",
                 dict(vocab_size=VOCAB, d_model=32, n_head=4, d_head=8, d_inner=64, block_sizes=[1, 1],
                      num_decoder_layers=1, pad_token_id=PAD)),
    Architecture("XLNet", "XLNetConfig", "XLNetForSequenceClassification",
                 dict(vocab_size=VOCAB, d_model=32, n_layer=2, n_head=4, d_inner=64, pad_token_id=PAD), padding="left"),
    Architecture("BigBird", "BigBirdConfig", "BigBirdForSequenceClassification", dict(_ENCODER, attention_type="original_full")),
    Architecture("Longformer", "LongformerConfig", "LongformerForSequenceClassification",
                 dict(_ENCODER, attention_window=4, pad_token_id=1)),
    Architecture("SqueezeBERT", "SqueezeBertConfig", "SqueezeBertForSequenceClassification", dict(_ENCODER, embedding_size=32)),
    Architecture("Phi", "PhiConfig", "PhiForSequenceClassification", _DECODER, padding="left"),
    Architecture("Falcon", "FalconConfig", "FalconForSequenceClassification",
                 dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, pad_token_id=PAD), padding="left"),
    Architecture("BLOOM", "BloomConfig", "BloomForSequenceClassification",
                 dict(vocab_size=VOCAB, hidden_size=32, n_layer=2, n_head=4, pad_token_id=PAD), padding="left"),
    # newer decoders (multi-query attention, sliding windows, qk-norms, parallel residuals),
    # mixtures of experts, bottlenecked and convolutional encoders, rotary protein models
    Architecture("GPTBigCode", "GPTBigCodeConfig", "GPTBigCodeForSequenceClassification",
                 dict(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=64, pad_token_id=PAD, multi_query=True),
                 padding="left"),
    Architecture("Phi3", "Phi3Config", "Phi3ForSequenceClassification", dict(_DECODER, num_key_value_heads=2), padding="left"),
    Architecture("Gemma2", "Gemma2Config", "Gemma2ForSequenceClassification",
                 dict(_DECODER, num_key_value_heads=2, head_dim=8, sliding_window=4), padding="left"),
    Architecture("Qwen3", "Qwen3Config", "Qwen3ForSequenceClassification", dict(_DECODER, num_key_value_heads=2, head_dim=8),
                 padding="left"),
    Architecture("Starcoder2", "Starcoder2Config", "Starcoder2ForSequenceClassification",
                 dict(_DECODER, num_key_value_heads=2), padding="left"),
    Architecture("OLMo2", "Olmo2Config", "Olmo2ForSequenceClassification", dict(_DECODER, num_key_value_heads=2),
                 padding="left"),
    Architecture("StableLM", "StableLmConfig", "StableLmForSequenceClassification",
                 dict(_DECODER, num_key_value_heads=2, partial_rotary_factor=0.5, qk_layernorm=True,
                      use_parallel_residual=True), padding="left"),
    Architecture("Mixtral", "MixtralConfig", "MixtralForSequenceClassification",
                 dict(_DECODER, num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2), padding="left"),
    Architecture("Qwen2-MoE", "Qwen2MoeConfig", "Qwen2MoeForSequenceClassification",
                 dict(_DECODER, num_key_value_heads=2, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=16,
                      shared_expert_intermediate_size=32, decoder_sparse_step=1), padding="left"),
    Architecture("Cohere as a zero-shot classifier", "CohereConfig", "CohereForCausalLM",
                 dict(_DECODER, num_key_value_heads=2), padding="left", wrap=_zero_shot),
    Architecture("Mamba as a zero-shot classifier", "MambaConfig", "MambaForCausalLM",
                 dict(vocab_size=VOCAB, hidden_size=32, state_size=4, num_hidden_layers=2, expand=2, conv_kernel=4,
                      pad_token_id=PAD), padding="left", wrap=_zero_shot),  # a state-space model: no attention
    Architecture("MobileBERT", "MobileBertConfig", "MobileBertForSequenceClassification",
                 dict(_ENCODER, embedding_size=16, intra_bottleneck_size=16, true_hidden_size=16, num_feedforward_networks=2,
                      normalization_type="no_norm")),
    Architecture("ConvBERT", "ConvBertConfig", "ConvBertForSequenceClassification",
                 dict(_ENCODER, embedding_size=32, head_ratio=2, conv_kernel_size=3, num_groups=1)),
    Architecture("ESM", "EsmConfig", "EsmForSequenceClassification",
                 dict(_ENCODER, pad_token_id=1, position_embedding_type="rotary", token_dropout=False, mask_token_id=2)),
    Architecture("MBart", "MBartConfig", "MBartForSequenceClassification",
                 dict(vocab_size=VOCAB, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                      decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64,
                      pad_token_id=1, eos_token_id=2, bos_token_id=0, decoder_start_token_id=2, scale_embedding=True)),
    # a Llama-like encoder whose head has a dense at the model's top level; an encoder-decoder of Gemma 2 stacks
    # whose score head has its own out_proj (both were read wrong by the head pattern and the location rules)
    Architecture("EuroBERT", "EuroBertConfig", "EuroBertForSequenceClassification",
                 dict(_DECODER, num_key_value_heads=2, head_dim=8, bos_token_id=2, eos_token_id=3, mask_token_id=4)),
    Architecture("T5Gemma", "T5GemmaConfig", "T5GemmaForSequenceClassification",
                 dict(encoder=_GEMMA2_STACK, decoder=_GEMMA2_STACK, vocab_size=VOCAB, pad_token_id=PAD, eos_token_id=1,
                      bos_token_id=2)),
]}


def available() -> list[str]:
    """The names of :data:`ARCHITECTURES` the installed transformers can build."""
    return [name for name, a in ARCHITECTURES.items() if a.available()]


def build(name: str, n_classes: int = 3, seed: int = 0) -> nn.Module:
    """The tiny model of family ``name`` (random weights from ``seed``), in eval mode."""
    import transformers

    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; choose from {sorted(ARCHITECTURES)}")
    arch = ARCHITECTURES[name]
    if not arch.available():
        raise ValueError(f"the installed transformers {transformers.__version__} has no {arch.model}; upgrade it")
    settings = dict(arch.settings)
    attn = settings.pop("attn_implementation", "eager")  # eager: the same arithmetic per example and per batch
    config = getattr(transformers, arch.config)(**settings, num_labels=n_classes)
    config._attn_implementation = attn
    torch.manual_seed(seed)
    model = getattr(transformers, arch.model)(config)
    _randomise_norms(model, seed)
    model = arch.wrap(model) if arch.wrap is not None else model
    return model.eval()


def _randomise_norms(model: nn.Module, seed: int) -> None:
    """Norm weights start at one (or zero, for Gemma's 1 + w): random ones make their
    gradients differ from those of a plain normalisation, so a wrong rule shows."""
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1 and ("norm" in name.lower() or "ln" in name.lower()):
                p.add_(0.2 * torch.randn(p.shape, generator=g))


def example_inputs(name: str, n: int = 6, length: int = 7, seed: int = 0) -> dict[str, torch.Tensor]:
    """Token ids of n examples of varied length (padded as the family expects), and their mask."""
    arch = ARCHITECTURES[name]
    pad = arch.settings.get("pad_token_id", PAD)
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB, (n, length), generator=g)
    mask = torch.ones_like(ids)
    for i in range(n):
        used = length - (i % 3)
        if arch.padding == "left":
            mask[i, : length - used], ids[i, : length - used] = 0, pad
        else:
            mask[i, used:], ids[i, used:] = 0, pad
        if arch.padding == "right" and "eos_token_id" in arch.settings:
            ids[i, used - 1] = arch.settings["eos_token_id"]  # encoder-decoder classifiers read the last EOS
    return {"input_ids": ids, "attention_mask": mask}


def llama_20m(n_classes: int = 2, seed: int = 0) -> nn.Module:
    """A Llama-shaped classifier of about 20 M parameters (the speed case of the issue)."""
    from transformers import LlamaConfig, LlamaForSequenceClassification

    config = LlamaConfig(vocab_size=16000, hidden_size=384, num_hidden_layers=8, num_attention_heads=6,
                         num_key_value_heads=2, intermediate_size=1024, max_position_embeddings=256,
                         pad_token_id=PAD, num_labels=n_classes)
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    return LlamaForSequenceClassification(config).eval()
