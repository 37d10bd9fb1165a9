"""Where a classifier reads its class, asked of the model, and the card that says so of its strongest word."""

import numpy as np
import torch
from transformers import (BertConfig, BertForSequenceClassification, GPT2Config, GPT2ForSequenceClassification,
                          LlamaConfig, LlamaForSequenceClassification)

from workbench import report
from workbench.analysis.highlights import real_positions
from workbench.analysis.read_out import read_out_positions
from workbench.app.results import HighlightedExample

IDS = torch.tensor([[5, 6, 7, 8, 9, 0, 0], [5, 6, 7, 8, 9, 10, 11]])


def _positions(model, ids, mask):
    batch = {"input_ids": ids, "attention_mask": mask}
    found = read_out_positions(model.eval(), batch, [real_positions(batch, k) for k in range(len(ids))])
    return None if found is None else [np.flatnonzero(read).tolist() for read in found]


def test_a_decoder_reads_its_last_real_token_and_an_encoder_its_first():
    torch.manual_seed(0)
    mask = (IDS != 0).long()
    gpt2 = GPT2ForSequenceClassification(GPT2Config(vocab_size=40, n_positions=16, n_embd=16, n_layer=1, n_head=2,
                                                    pad_token_id=0, bos_token_id=1, eos_token_id=1))
    llama = LlamaForSequenceClassification(LlamaConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1,
                                                       num_attention_heads=2, intermediate_size=16, pad_token_id=0))
    bert = BertForSequenceClassification(BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1,
                                                    num_attention_heads=2, intermediate_size=16))
    assert _positions(gpt2, IDS, mask) == [[4], [6]]  # each example's own last token, not the batch's
    assert _positions(llama, IDS, mask) == [[4], [6]]
    assert _positions(bert, IDS, mask) == [[0], [0]]  # [CLS]
    # padded on the left, as decoders often are: still the last token, at its place among the real ones
    left = torch.tensor([[0, 0, 5, 6, 7, 8, 9], [5, 6, 7, 8, 9, 10, 11]])
    assert _positions(gpt2, left, (left != 0).long()) == [[4], [6]]


class _MeanPooled(torch.nn.Module):
    """A classifier that reads every token (mean pooling): no one place to name."""

    def __init__(self):
        super().__init__()
        self.embed, self.head = torch.nn.Embedding(40, 8), torch.nn.Linear(8, 2)

    def forward(self, input_ids, attention_mask=None, output_hidden_states=False):
        from transformers.modeling_outputs import SequenceClassifierOutput

        hidden = self.embed(input_ids)
        return SequenceClassifierOutput(logits=self.head(hidden.mean(dim=1)), hidden_states=(hidden,))


class _NoHiddenStates(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(40, 2)

    def forward(self, input_ids, attention_mask=None):
        return self.embed(input_ids).mean(dim=1)


def test_a_model_that_reads_every_token_or_tells_nothing_has_no_read_out():
    ones = torch.ones_like(IDS)
    assert _positions(_MeanPooled(), IDS, ones) is None
    assert _positions(_NoHiddenStates(), IDS, ones) is None  # takes no output_hidden_states


def _card(read_out):
    return HighlightedExample(example=3, rank=0, text="the plot was dull .", label=0, prediction=0, coefficient=0.5,
                              tokens=["the", "plot", "was", "dull", "."], scores=np.array([0.01, 0.02, 0.01, 0.1, 0.5]),
                              head_share=0.1, special=[False] * 5, spans=[(0, 3), (4, 8), (9, 12), (13, 17), (18, 19)],
                              visible=np.array([0.02, 0.03, 0.02, 0.16, 0.77]), visible_share=0.64, special_share=0.0,
                              read_out=read_out, words=[0, 1, 2, 3, 4])


def test_a_card_whose_strongest_word_is_the_read_out_says_so():
    card = _card([False, False, False, False, True])
    assert card.strongest_token == "." and card.strongest_is_read_out
    assert "the model reads its class here" in report.example_html(card)
    plain = _card(None)  # an encoder's card, or a model that tells nothing: no such note
    assert not plain.strongest_is_read_out and "reads its class" not in report.example_html(plain)


def _family(name):
    from workbench.models.architectures import build, example_inputs

    inputs = example_inputs(name)
    return _positions(build(name), inputs["input_ids"], inputs["attention_mask"])


def test_a_linear_probe_on_a_frozen_body_reads_its_class_where_its_head_does():
    """A head trained on a frozen body: its hidden states were untracked by autograd, and the read-out None."""
    from workbench.models.architectures import build, example_inputs

    for name, expected in (("BERT", [[0]] * 6), ("GPT-2", [[6], [5], [4]] * 2)):
        model, inputs = build(name), example_inputs(name)
        body = [p for n, p in model.named_parameters() if not n.startswith(("classifier", "score"))]
        for p in body:
            p.requires_grad_(False)
        assert _positions(model, inputs["input_ids"], inputs["attention_mask"]) == expected
        assert not any(p.requires_grad for p in body)  # frozen again


def test_an_encoder_decoder_reads_its_class_through_its_decoder_one_token_back():
    """BART and T5 read their decoder's state at the last EOS; the decoder's position t holds token t − 1, so the
    word read is the one before the EOS (the token scores place the decoder's mass alike). T5Gemma returns its
    decoder's states as hidden_states, and was read at the position after."""
    from workbench.models.architectures import available

    for name in ("BART", "T5 (Flan-T5 shape)", "MBart", "T5Gemma"):
        if name in available():
            # example_inputs ends each text with its EOS; T5Gemma reads one past the last real token, clamped
            expected = [[5], [5], [4]] * 2 if name == "T5Gemma" else [[5], [4], [3]] * 2
            assert _family(name) == expected, name


def test_longformer_reads_its_cls_though_its_states_are_cut_from_its_window():
    """Longformer pads the input to its attention window and returns its states cut back, a view the logits'
    graph never used: the read-out was None."""
    from workbench.models.architectures import available

    if "Longformer" in available():
        assert _family("Longformer") == [[0]] * 6


def test_a_zero_shot_classifier_reads_its_class_at_its_prompt_s_last_token():
    """Its forward returns class logits alone and takes no output_hidden_states: the read-out was None, though a
    template ending with the text ("{text}") reads the class at the text's last word."""
    assert _family("Llama as a zero-shot classifier") == [[6], [5], [4]] * 2  # padded on the left
