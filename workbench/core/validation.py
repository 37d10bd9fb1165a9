"""Checks of what a user passes in, one function per kind of input, used by every entry point.

``compute_pefs``, ``write_pefs``, the sharded writer and the command line all reach these
through :func:`workbench.fisher.split_labels`, :class:`workbench.fisher.PefConfig` and
:meth:`workbench.runner.PefRun.prepare`, so the same input gets the same error wherever it
enters. Every error names the argument, what is wrong with it and how to fix it; they are
raised before anything is computed or written.

- labels: integers (whole floats are accepted, fractions and text are not), one per
  example, -1 or more (the upper end needs the model: :func:`check_label_range`);
- examples: at least one, none of length 0, none longer than the model's positions;
- parameter filters (``include``/``exclude``): strings, compiled patterns, lists of them or
  a predicate, each a valid regular expression;
- models: parameters that hold weights (not on the meta device); a forward that fails on tensors of two
  dtypes (a float16 encoder under a float32 head) is named so, with the fix (:func:`mixed_dtypes`);
- indices and counts (a component, an example, ``n_top``, ``page_size``, ``batch_size``...):
  :mod:`workbench.core.arguments`, which the panels use too (it imports no torch).

Devices are :func:`workbench.core.device.resolve_device`'s; paths are checked where files are
written (:mod:`workbench.store.files`), since their errors are the store's.
"""

from __future__ import annotations

import inspect
import re
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np
import torch

from .arguments import not_a_model
from .callers import user_stacklevel

_SHOWN = 5  # offending examples named in a message


def as_labels(labels, n_examples: int) -> torch.Tensor:
    """``labels`` as (n_examples,) int64, -1 for unknown; None: all unknown."""
    if labels is None:
        return torch.full((n_examples,), -1, dtype=torch.long)
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    if isinstance(labels, Iterator):  # a generator: numpy would make it one object, "shape ()"
        labels = list(labels)
    if isinstance(labels, (str, bytes, Mapping)):  # "labels has shape ()" named no fix
        raise TypeError(f"labels must be one class index per example, got {type(labels).__name__} {str(labels)[:40]!r}"
                        + (" (a column's name? pass the column itself, e.g. examples['label'])"
                           if isinstance(labels, str) else ""))
    try:
        array = np.asarray(labels)
    except (ValueError, TypeError) as err:
        raise TypeError(f"labels cannot be read as an array ({err}); pass one integer class index per example") from err
    if array.ndim != 1 or array.shape[0] != n_examples:
        hint = " (one-hot or probability rows? pass labels.argmax(1))" if array.ndim == 2 else ""
        raise ValueError(f"labels has shape {array.shape}; expected ({n_examples},), one class index per example{hint}")
    if array.dtype == object and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in array):
        array = np.array([int(v) for v in array])  # a pandas object column of ints: they are class indices
    if array.dtype == bool or not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        shown = ", ".join(repr(v) for v in array[:3].tolist())
        raise TypeError(
            f"labels must be integer class indices, got {array.dtype} values ({shown}, ...); map them to 0..n_classes-1 "
            "first, e.g. codes, names = pandas.factorize(labels), or [label_ids[name] for name in labels]"
        )
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            bad = np.flatnonzero(~np.isfinite(array))
            raise ValueError(f"labels of examples {bad[:_SHOWN].tolist()} are NaN or infinite; use -1 for an unknown label")
        fractional = np.flatnonzero(array != np.round(array))
        if fractional.size:
            i = int(fractional[0])
            raise ValueError(
                f"labels must be integer class indices; label {array[i].item()!r} of example {i} is not a whole number "
                f"({fractional.size} labels are not). Labels are never rounded: pass the class index of each example"
            )
    array = array.astype(np.int64)
    below = np.flatnonzero(array < -1)
    if below.size:
        i = int(below[0])
        raise ValueError(f"label {array[i]} of example {i} is negative ({below.size} labels are below -1); "
                         "labels are class indices 0..n_classes-1, or -1 for unknown")
    return torch.from_numpy(array)


def check_label_range(labels: torch.Tensor, n_classes: int, start: int = 0) -> None:
    """Every label is a class of a model with ``n_classes`` outputs (or -1, unknown);
    ``start``: the index of ``labels[0]`` among all examples."""
    bad = (labels < -1) | (labels >= n_classes)
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        raise ValueError(
            f"label {int(labels[i])} of example {start + i} is out of range for a model with {n_classes} classes "
            f"({int(bad.sum())} labels are); labels must be in 0..{n_classes - 1}, or -1 for unknown. "
            "Check the label encoding, or that the model's classifier head has as many outputs as the task has classes."
        )


def example_count(inputs) -> int:
    """The number of examples of ``inputs`` (a tensor, or a dict of tensors with one row per
    example), refusing none, the wrong types and examples of length 0."""
    if isinstance(inputs, Sequence) and not isinstance(inputs, (str, bytes)) and len(inputs) == 0:
        raise ValueError("the data set is empty (no examples were given): pass at least one example")
    if isinstance(inputs, (str, bytes)) or (isinstance(inputs, Sequence) and inputs and isinstance(inputs[0], str)):
        raise TypeError("inputs are text: tokenize them first, e.g. tokenizer(texts, padding=True, truncation=True, "
                        "return_tensors='pt'), and pass the result")
    if isinstance(inputs, Sequence) and inputs and isinstance(inputs[0], Mapping):  # a dataset's rows, uncollated
        raise TypeError(f"inputs are a list of {len(inputs)} examples' dicts: collate them into one dict of padded "
                        "tensors first, e.g. tokenizer.pad(examples, return_tensors='pt')")
    if isinstance(inputs, torch.Tensor):
        tensors = {"inputs": inputs}
    elif isinstance(inputs, Mapping) and inputs:
        tensors = dict(inputs)
    else:
        raise TypeError(f"inputs must be a tensor or a non-empty dict of tensors with one row per example, "
                        f"got {type(inputs).__name__}")
    for name, value in tensors.items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(_not_a_tensor(name, value))
        if value.ndim == 0:
            raise ValueError(f"inputs[{name!r}] is a scalar; every input needs one row per example")
        if value.is_meta:  # torch's "Cannot copy out of meta tensor" when the batch moved to the model's device
            raise ValueError(f"inputs[{name!r}] is on the meta device: it has a shape but no values; tokenize the texts "
                             "again (tensors on the CPU)")
    sizes = {k: int(v.shape[0]) for k, v in tensors.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"every input must have one row per example; got first dimensions {sizes}")
    n = next(iter(sizes.values()))
    if n == 0:
        raise ValueError("the data set is empty (the inputs have no rows): pass at least one example")
    widths = {k: int(v.shape[1]) for k, v in tensors.items() if k in _PER_TOKEN and v.ndim >= 2}
    if len(set(widths.values())) > 1:
        raise ValueError(f"the per-token inputs have different lengths ({widths}): tokenize them in one call "
                         "(tokenizer(texts, padding=True, return_tensors='pt')) so that each has one column per token")
    lengths = example_lengths(tensors)
    if lengths is not None and (lengths == 0).any():
        empty = np.flatnonzero(lengths == 0)
        raise ValueError(
            f"{empty.size} examples have length 0 (no tokens; first: {empty[:_SHOWN].tolist()}): a model cannot "
            "score an empty sequence. Drop them, or check the texts and the tokenizer call"
        )
    return n


def _not_a_tensor(name: str, value) -> str:
    """Why ``inputs[name]`` is refused, and the fix: torch.as_tensor fails on rows of several lengths
    (a tokenizer's output without padding), and a dataset's text column is no input at all."""
    rows = value if isinstance(value, (list, tuple)) else ()
    if rows and all(isinstance(row, str) for row in rows):
        return (f"inputs[{name!r}] holds text, which no model takes: leave it out and pass the tokenizer's tensors "
                "(with the labels as labels=, or as inputs['labels'])")
    lengths = {len(row) for row in rows if isinstance(row, (list, tuple)) or getattr(row, "ndim", 0) >= 1}
    if len(lengths) > 1:
        return (f"inputs[{name!r}] is a list of rows of {min(lengths)} to {max(lengths)} values, not a tensor: pad "
                "them, e.g. tokenizer(texts, padding=True, return_tensors='pt'), or tokenizer.pad(inputs, "
                "return_tensors='pt') for a tokenizer's output")
    return (f"inputs[{name!r}] is a {type(value).__name__}, not a tensor; tokenize with return_tensors='pt', or pass "
            "torch.as_tensor(...)")


#: Inputs with one column per token, which must agree in length.
_PER_TOKEN = ("input_ids", "attention_mask", "token_type_ids", "position_ids")


def check_token_ids(model: torch.nn.Module, inputs) -> None:
    """``input_ids`` are integers the model's embedding table holds: a wrong tokenizer's ids would
    otherwise fail deep inside the model, in whichever batch first holds one."""
    try:
        vocabulary = int(model.get_input_embeddings().num_embeddings)
    except (AttributeError, NotImplementedError, TypeError):  # not a transformers model, or no embedding table
        vocabulary = None
    # a bare tensor is a transformers model's input_ids (its first argument); another model's own input
    ids = inputs.get("input_ids") if isinstance(inputs, Mapping) else inputs if vocabulary is not None else None
    if not isinstance(ids, torch.Tensor):
        return
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise TypeError(f"input_ids are {ids.dtype}: token ids must be integers; tokenize with return_tensors='pt', "
                        "or pass input_ids.long()")
    if vocabulary is None:  # a model of one's own may read its ids otherwise (an EmbeddingBag's flat ids)
        return
    if ids.ndim == 3:  # "add the batch axis" was no advice for these
        raise ValueError(f"input_ids have shape {tuple(ids.shape)}, three axes, as a multiple-choice model takes them "
                         "(examples, choices, tokens); PEFs read one sequence per example, (n_examples, n_tokens): wrap "
                         "the model so that its forward takes those and returns (examples, classes) logits")
    if ids.ndim != 2:
        raise ValueError(f"input_ids have shape {tuple(ids.shape)}; a batch of token ids is (n_examples, n_tokens): "
                         "for one example add the batch axis, ids.unsqueeze(0)")
    _check_token_types(model, inputs)
    outside = (ids < 0) | (ids >= vocabulary)
    if bool(outside.any()):
        rows = torch.nonzero(outside.any(dim=-1) if ids.ndim > 1 else outside).flatten()
        raise ValueError(
            f"{rows.numel()} examples hold token ids outside the model's vocabulary of {vocabulary} (first: example "
            f"{int(rows[0])}, id {int(ids[rows[0]][outside[rows[0]]].flatten()[0])}): tokenize with this model's own "
            "tokenizer")


def _check_token_types(model: torch.nn.Module, inputs) -> None:
    """``token_type_ids`` within the model's token types: another tokenizer's (or a pair's) failed deep in the
    embedding with torch's "index out of range in self"."""
    types = getattr(getattr(model, "config", None), "type_vocab_size", None)
    ids = inputs.get("token_type_ids") if isinstance(inputs, Mapping) else None
    if not isinstance(types, int) or not isinstance(ids, torch.Tensor) or ids.is_floating_point() or ids.numel() == 0:
        return
    if int(ids.min()) < 0 or int(ids.max()) >= types:
        raise ValueError(f"token_type_ids hold {int(ids.max()) if int(ids.max()) >= types else int(ids.min())}, but the "
                         f"model has {types} token types (0 to {types - 1}): tokenize with this model's own tokenizer, "
                         "or leave token_type_ids out")


def token_sequence(inputs) -> torch.Tensor | None:
    """The batch's tokens: its input ids (n, T) or its input embeddings (n, T, d); None for
    inputs that are not sequences."""
    if not isinstance(inputs, Mapping):
        return None
    for name, ndim in (("input_ids", 2), ("inputs_embeds", 3)):
        value = inputs.get(name)
        if isinstance(value, torch.Tensor) and value.ndim == ndim:
            return value
    return None


def example_lengths(inputs) -> np.ndarray | None:
    """Each example's number of tokens, where the inputs say it: its attention mask, or the
    width of its input ids or embeddings; None for inputs that are not sequences."""
    mask = inputs.get("attention_mask") if isinstance(inputs, Mapping) else None
    if isinstance(mask, torch.Tensor) and mask.ndim == 2:
        return mask.detach().sum(dim=1).cpu().numpy()
    tokens = token_sequence(inputs)
    return None if tokens is None else np.full(tokens.shape[0], tokens.shape[1])


def max_positions(model: torch.nn.Module) -> int | None:
    """The longest sequence the model's position embeddings hold, where its config says it."""
    config = getattr(model, "config", None)
    for name in ("max_position_embeddings", "n_positions"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _compiled_module(model: torch.nn.Module) -> tuple[str, str] | None:
    """(which module is compiled, how to pass it uncompiled), or None: torch.compile(model) wraps a module
    (OptimizedModule, the original in ._orig_mod); model.compile() compiles its forward in place."""
    for name, module in model.named_modules():
        where = "the model" if not name else f"the model's submodule {name!r}"
        if type(module).__name__ == "OptimizedModule" and hasattr(module, "_orig_mod"):
            return where, ("pass the model before compiling: model._orig_mod" if not name else
                           "put the uncompiled module (its ._orig_mod) back in its place first")
        if getattr(module, "_compiled_call_impl", None) is not None:
            return where, "load it again, or pass it before calling .compile() on it"
    return None


#: transformers' problem types whose outputs are no logits of one distribution over the classes
_NOT_ONE_DISTRIBUTION = {
    "multi_label_classification": "a multi-label classifier (config.problem_type='multi_label_classification'): its "
                                  "outputs are independent sigmoids",
    "regression": "a regression model (config.problem_type='regression'): its outputs are the numbers it predicts",
}


def check_run_head(model, source) -> int:
    """The classes a run's model tells apart (a classifier's, or a language model's read through its label words).
    A run (run_model, run_embedded) reads one distribution over them per example, in its PEFs, predictions and
    purities: a regression or multi-label head is refused before the run folder is made. Of several outputs they
    ran with a warning from inside the PEF stage, and a folder of readings of a softmax the model never computes;
    run_embedded wrote a failed run folder before refusing a single output."""
    n_classes = getattr(model, "n_classes", None) or model.config.num_labels
    problem = getattr(getattr(model, "config", None), "problem_type", None)
    if n_classes < 2:
        raise ValueError(f"{source} holds a model with {n_classes} output (problem_type {problem!r}): NPEFF reads a "
                         "classifier's distribution over its classes, and a regression head has none; pass a sequence "
                         "classifier of two classes or more")
    if problem in _NOT_ONE_DISTRIBUTION:
        raise ValueError(f"{source} holds {_NOT_ONE_DISTRIBUTION[problem]}, and a run reads a classifier's one "
                         "distribution over its classes (PEFs, predictions, label purities), which it does not give: "
                         "pass a sequence classifier. To read its outputs as softmax logits anyway, knowing the PEFs "
                         "are not its Fisher, use compute_pefs or write_pefs, which warn of it")
    return n_classes


def check_weights(model: torch.nn.Module) -> None:
    """The model's parameters hold their weights: none on the meta device (no weights loaded, or offloaded by
    accelerate), which every reading of the model (its fingerprint included) failed on deep inside torch."""
    meta = [name for name, p in model.named_parameters() if p.is_meta]
    if meta and any(hasattr(m, "_hf_hook") for m in model.modules()):
        raise ValueError(
            f"{len(meta)} of the model's parameters are offloaded (accelerate's hooks bring them in for each "
            f"forward; e.g. {meta[0]}), and PEFs need them whole: load the model on one device, from_pretrained(path) "
            "without device_map, or call accelerate.hooks.remove_hook_from_module(model, recurse=True) once its "
            "weights are loaded"
        )
    if meta:
        raise ValueError(
            f"{len(meta)} of the model's parameters are on the meta device (no weights loaded; e.g. {meta[0]}): "
            "load the model with its weights, e.g. from_pretrained(path) without device_map='meta' or init_empty_weights"
        )


def check_model(model: torch.nn.Module, inputs) -> None:
    """The model holds weights, its token ids are in its vocabulary, and no example is longer
    than its positions."""
    if not isinstance(model, torch.nn.Module):
        raise not_a_model(model)
    compiled = _compiled_module(model)
    if compiled is not None:
        # its backward frees the graph that one backward per class slot reuses: a raw RuntimeError after compiling
        # ("donated buffers"); a compiled submodule also renamed the parameters include= patterns were written for
        where, fix = compiled
        raise TypeError(f"{where} is compiled (torch.compile), and PEFs need torch.autograd's own backward of its "
                        f"forward, one per class; {fix}")
    params = list(model.parameters())
    if not params:
        raise ValueError("the model has no parameters: there is no Fisher information to compute")
    check_weights(model)
    made_in_inference = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.is_inference()]
    if made_in_inference:  # autograd cannot save them for a backward: "Inference tensors cannot be saved"
        raise ValueError(f"{len(made_in_inference)} of the model's tensors were made under torch.inference_mode() "
                         f"(e.g. {made_in_inference[0]}), which the backward of a PEF cannot use: load or build the model "
                         "outside the inference_mode() block (torch.no_grad() is fine)")
    broken = [name for name, p in model.named_parameters() if p.is_floating_point() and not torch.isfinite(p).all()]
    if broken:
        raise ValueError(f"{len(broken)} of the model's parameters hold NaN or infinite values (e.g. {broken[0]}): the "
                         "model diverged in training or its file is damaged; load a checkpoint from before that")
    config = getattr(model, "config", None)
    problem = getattr(config, "problem_type", None)
    # a regression of several outputs ran as a classifier without a word; one output is refused with its own message
    if problem in _NOT_ONE_DISTRIBUTION and getattr(config, "num_labels", 2) != 1:
        warnings.warn(f"the model is {_NOT_ONE_DISTRIBUTION[problem]}, but PEFs read its outputs as the logits of one "
                      "softmax distribution over the classes (the method's Fisher of a categorical prediction), so they "
                      "are not this model's Fisher", stacklevel=user_stacklevel())
    warn_ignored_inputs(model, inputs)
    check_token_ids(model, inputs)
    limit = max_positions(model)
    tokens = token_sequence(inputs)
    if limit is None or tokens is None or tokens.shape[1] <= limit:
        return
    lengths = example_lengths(inputs)
    long = np.flatnonzero(lengths > limit)
    if long.size:
        raise ValueError(
            f"{long.size} examples are longer than the model's {limit} positions (first: {long[:_SHOWN].tolist()}, "
            f"{int(lengths[long[0]])} tokens): "
            + (f"tokenize with truncation=True, max_length={limit}" if tokens.ndim == 2 else
               f"cut the input embeddings (and the mask) to {limit} positions, e.g. inputs_embeds[:, :{limit}]")
        )


def forward_inputs(model: torch.nn.Module) -> tuple[list[str], bool] | None:
    """The inputs ``model.forward`` names, and whether it swallows others unread (``**kwargs``, as
    Hugging Face forwards do); None where it passes every input on (a wrapper's ``forward(**inputs)``
    or ``(*args, **kwargs)``, which names no ``input_ids``) or has no signature to read."""
    try:
        parameters = inspect.signature(model.forward).parameters
    except (TypeError, ValueError, AttributeError):
        return None
    kinds = {p.kind for p in parameters.values()}
    if inspect.Parameter.VAR_POSITIONAL in kinds or not {"input_ids", "inputs_embeds"} & set(parameters):
        return None
    named = [n for n, p in parameters.items() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    return named, inspect.Parameter.VAR_KEYWORD in kinds


def warn_ignored_inputs(model: torch.nn.Module, inputs) -> None:
    """Warn about inputs the model's forward would swallow unread: Hugging Face forwards take
    ``**kwargs``, so a misspelt ``attention_masks`` runs without a mask (padded batches then read
    their padding) and raises nothing. A forward without ``**kwargs`` refuses them (TypeError) with the fix."""
    reads = forward_inputs(model) if isinstance(inputs, Mapping) else None
    if reads is None:
        return  # the wrapper passes every input on
    named, swallows = reads
    unread = sorted(set(inputs) - set(named))
    if unread and not swallows:  # the model's own TypeError named no fix
        raise TypeError(f"inputs {unread} are not arguments of {type(model).__name__}.forward({', '.join(named[:8])}): "
                        f"pass only the inputs it takes ({{k: inputs[k] for k in {sorted(set(inputs) & set(named))}}}), "
                        "or add them to its forward")
    if unread:
        warnings.warn(f"inputs {unread} are not arguments of {type(model).__name__}.forward, which would ignore them "
                      f"(its arguments: {', '.join(named[:8])}, ...): check their names, or leave them out",
                      stacklevel=user_stacklevel())


#: torch's dtype errors name a floating dtype ("mat1 and mat2 must have the same dtype, but got Half and Float",
#: "expected scalar type Float but found Double", "Input type (torch.FloatTensor) and weight type (torch.DoubleTensor)")
_FLOAT_DTYPE_WORD = re.compile(r"\b(Half|BFloat16|Float|Double|float16|bfloat16|float32|float64)\b")
#: masks every transformers model casts to its own dtype: no cause of a mismatch
_CAST_BY_THE_MODEL = ("attention_mask",)


def dtype_name(dtype: torch.dtype) -> str:
    """'float16', not 'torch.float16': as a user writes it after torch."""
    return str(dtype).removeprefix("torch.")


def mixed_dtypes(model: torch.nn.Module, inputs, error: Exception) -> str | None:
    """Why the model's forward raised ``error``, where it is torch's refusal of two floating dtypes in one operation
    and the model's tensors (or its float inputs) hold several; else None. Asked only after the forward failed, so a
    model that casts between its dtypes itself (a float32 norm in a float16 stack) is never refused."""
    message = str(error)
    if not ("dtype" in message or "type" in message) or not _FLOAT_DTYPE_WORD.search(message):
        return None
    found: dict[torch.dtype, list[str]] = {}
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if tensor.is_floating_point():
            found.setdefault(tensor.dtype, []).append(name)
    given = {"inputs": inputs} if isinstance(inputs, torch.Tensor) else dict(inputs) if isinstance(inputs, Mapping) else {}
    floats = {name: t.dtype for name, t in given.items()
              if isinstance(t, torch.Tensor) and t.is_floating_point() and name not in _CAST_BY_THE_MODEL}
    if len(set(found) | set(floats.values())) < 2:
        return None
    parts = [f"{dtype_name(dtype)} ({len(names)} tensors, e.g. {names[0]})" for dtype, names in found.items()]
    held = f"the model's parameters and buffers are {' and '.join(parts)}" if len(found) > 1 else \
        f"the model's parameters are {dtype_name(next(iter(found)))}" if found else "the model holds no floating tensor"
    fed = "".join(f"; inputs[{name!r}] is {dtype_name(dtype)}" for name, dtype in floats.items())
    fix = " and the float inputs with .float()" if any(d != torch.float32 for d in floats.values()) else ""
    return (f"the model's forward failed on tensors of different dtypes (torch: {message.splitlines()[0][:160]}): "
            f"{held}{fed}. Cast the whole model to one dtype first, model.float(){fix} (PEFs are computed in float32)")


def name_filter(spec, argument: str):
    """``include``/``exclude`` checked and made recordable: None, a predicate, or a regular
    expression (a string, or a compiled pattern, turned into its text with its flags inline)
    or a list of them. ``argument`` names it in the errors."""
    if spec is None or (callable(spec) and not isinstance(spec, re.Pattern)):
        return spec
    if isinstance(spec, (str, re.Pattern)):
        return _pattern_text(spec, argument)
    if isinstance(spec, Sequence) and not isinstance(spec, bytes):
        if not spec:
            raise ValueError(f"{argument}=[] lists no pattern; pass None to {'keep' if argument == 'include' else 'drop'} "
                             "no parameter by name")
        return [_pattern_text(p, argument) for p in spec]
    raise TypeError(f"{argument} must be a regular expression (a string or re.compile(...)), a list of them, "
                    f"a function of the parameter name, or None; got {type(spec).__name__}")


def _pattern_text(pattern, argument: str) -> str:
    if isinstance(pattern, re.Pattern):
        if not isinstance(pattern.pattern, str):
            raise TypeError(f"{argument}: {pattern!r} is a bytes pattern; parameter names are text, use a str pattern")
        # the flags a str pattern can carry inline; re.UNICODE is the default anyway
        inline = "".join(c for flag, c in ((re.I, "i"), (re.M, "m"), (re.S, "s"), (re.X, "x")) if pattern.flags & flag)
        text = f"(?{inline}){pattern.pattern}" if inline else pattern.pattern
    elif isinstance(pattern, str):
        text = pattern
    else:
        raise TypeError(f"{argument} holds {pattern!r} ({type(pattern).__name__}); each pattern must be a string "
                        "or re.compile(...)")
    try:
        re.compile(text)
    except re.error as err:
        raise ValueError(f"{argument}={text!r} is not a valid regular expression ({err}); escape special characters "
                         f"with re.escape(...), e.g. {argument}=re.escape('layer.0')") from err
    return text


def name_predicate(spec, argument: str, default: bool) -> Callable[[str], bool]:
    """The parameter-name test of a checked filter (:func:`name_filter`)."""
    spec = name_filter(spec, argument)
    if spec is None:
        return lambda name: default
    if callable(spec):
        return spec
    compiled = [re.compile(p) for p in ([spec] if isinstance(spec, str) else spec)]
    return lambda name: any(p.search(name) for p in compiled)
