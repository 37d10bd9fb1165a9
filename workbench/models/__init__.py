"""Where the data flow starts: classifiers and their examples.

- :mod:`.embedded`: the embedded default, a synthetic sentiment task with known processing
  strategies and a small BERT trained on it locally (nothing is downloaded);
- :mod:`.loading`: loading a classifier by name or path, offline by default;
- :mod:`.lm`: causal language models wrapped as zero-shot classifiers.

Nothing here depends on the rest of the workbench: any PyTorch classifier whose forward
returns class logits can be used instead.
"""
