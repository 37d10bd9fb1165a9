"""Running a notebook headless: papermill executes it, nbconvert renders it, the run folder records it.

``run_notebook("notebooks/quickstart.ipynb", "runs/x", {"n_components": 16})`` (or
``python -m workbench run notebooks/quickstart.ipynb --out runs/x -p n_components 16``):

1. reads the notebook's cell tagged ``parameters``, whose annotated assignments
   (``n_components: int = 16  # help``) declare each parameter's type and default, and
   checks the given values against them before anything is written;
2. executes the notebook with papermill, the output folder injected as ``output_folder``;
3. writes the executed notebook, its widget views replaced by the panels' static snapshots
   (no kernel is left for them), and an HTML rendering (nbconvert) into the folder. The HTML
   loads nothing from the network: plotly.js is inlined once when the page has charts,
   the CDN scripts of nbconvert's template (RequireJS, MathJax) are left out, and the
   run's record is shown at the top;
4. records the notebook, its parameters (which were injected) and timings in ``run.json``.

Inside a notebook, :func:`check_parameters` checks the same declarations at run time, for
values injected by papermill directly.
"""

from __future__ import annotations

import ast
import contextlib
import logging
import math
import os
import re
import time
import types
import typing
from dataclasses import dataclass
from pathlib import Path

from ..core.environment import environment_variable
from ..core.arguments import user_path
from .. import report
from ..store.files import atomic_path, check_folder
from ..store.lock import exclusive_with_children
from .run_folder import RUN_RECORD, RunRecorder, check_new_run_folder, now, read_run_record, write_run_record

logger = logging.getLogger(__name__)

PARAMETERS_TAG = "parameters"
OUTPUT_PARAMETER = "output_folder"
#: A parameter of this name is where the notebook computes (checked as workbench.core.device checks devices).
DEVICE_PARAMETER = "device"
#: Set in the environment of the kernels that :func:`run_notebook` starts: no reader is watching a
#: headless run, so panels compute everything before they are displayed (their static snapshot, the
#: only view that is kept, then shows it all) instead of filling in on a thread.
HEADLESS_ENV = "NPEFF_WORKBENCH_HEADLESS"
_TYPE_NAMES = {"int": int, "float": float, "str": str, "bool": bool, "None": type(None)}


class NotebookError(RuntimeError):
    """A notebook run that failed; the message says where and which files show it."""


#: What a parameter's help says of a folder that must exist when the notebook starts.
EXISTING_FOLDER = "(an existing folder)"


@dataclass(frozen=True)
class NotebookParameter:
    """One parameter declared in a notebook's ``parameters`` cell."""

    name: str
    types: tuple[type, ...]
    default: object
    help: str = ""

    def describe(self) -> str:
        return " or ".join("None" if t is type(None) else t.__name__ for t in self.types)

    @property
    def bound(self) -> tuple[str, float] | None:
        """("at least" or "more than", N), where the help says "(at least N)" or "(more than N)"."""
        match = re.search(r"\((at least|more than) (-?\d+(?:\.\d+)?)\)", self.help)
        return (match.group(1), float(match.group(2))) if match else None

    @property
    def choices(self) -> list[str] | None:
        """The values allowed, where the help starts with them: ``"transform", "match" or "both"``."""
        match = re.match(r'^((?:"[^"]+", )*"[^"]+" or "[^"]+")', self.help)
        return re.findall(r'"([^"]+)"', match.group(1)) if match else None


@dataclass(frozen=True)
class NotebookRun:
    """What :func:`run_notebook` wrote."""

    folder: Path
    notebook: Path  # the executed notebook
    html: Path
    parameters: dict


# ---------------------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------------------


def _annotation_types(node: ast.expr, where: str) -> tuple[type, ...]:
    """``int``, ``str | None`` ... as a tuple of types; anything else is refused."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _annotation_types(node.left, where) + _annotation_types(node.right, where)
    if isinstance(node, ast.Constant) and node.value is None:
        return (type(None),)
    if isinstance(node, ast.Name) and node.id in _TYPE_NAMES:
        return (_TYPE_NAMES[node.id],)
    raise ValueError(f"{where}: annotate parameters with {' | '.join(_TYPE_NAMES)} (or unions of them), "
                     f"not {ast.unparse(node)!r}")


def _parameters_cell(notebook) -> str:
    for cell in notebook.cells:
        if cell.cell_type == "code" and PARAMETERS_TAG in cell.metadata.get("tags", []):
            return cell.source
    raise ValueError("the notebook has no code cell tagged 'parameters'; tag the cell holding its settings "
                     "(JupyterLab: property inspector > Cell Tags) so papermill can set them")


def notebook_parameters(path: str | os.PathLike) -> dict[str, NotebookParameter]:
    """The parameters declared in ``path``'s ``parameters`` cell, in order.

    Every assignment there must be annotated (``name: int = 1  # what it is``), so that
    values can be checked before the notebook runs.
    """
    import nbformat

    source = _parameters_cell(nbformat.read(path, as_version=4))
    lines = source.splitlines()
    parameters = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign):
            names = ", ".join(ast.unparse(t) for t in node.targets)
            raise ValueError(f"{path}: parameter {names} has no type annotation; write e.g. `{names}: int = ...`")
        if not isinstance(node, ast.AnnAssign) or not isinstance(node.target, ast.Name) or node.value is None:
            continue
        name = node.target.id
        line = lines[node.lineno - 1]
        help_text = line.split("#", 1)[1].strip() if "#" in line[node.value.end_col_offset:] else ""
        parameter = NotebookParameter(name, _annotation_types(node.annotation, f"{path}: {name}"),
                                      ast.literal_eval(node.value), help_text)
        check_value(parameter, parameter.default)
        parameters[name] = parameter
    return parameters


def check_value(parameter: NotebookParameter, value) -> None:
    """Raise TypeError when ``value`` is not of the parameter's declared type (ints pass as floats), and
    ValueError when it is not "(at least N)" or "(more than N)", or not one of the choices its help states."""
    allowed = parameter.types + ((int,) if float in parameter.types else ())
    if isinstance(value, bool) and bool not in parameter.types or not isinstance(value, allowed):
        raise TypeError(f"notebook parameter {parameter.name!r} must be {parameter.describe()}, "
                        f"got {value!r} ({type(value).__name__})"
                        + (f"; it is: {parameter.help}" if parameter.help else ""))
    # the bounds its help states, checked before the notebook runs: a bad value was found in the notebook's own
    # cells, after its files were written (an epsilon of -1 after the whole PEF run and fit)
    bound, choices = parameter.bound, parameter.choices
    if isinstance(value, float) and not math.isfinite(value):  # inf passed "(more than 0)", and failed in a late cell
        raise ValueError(f"notebook parameter {parameter.name!r} must be a finite number, got {value!r}"
                         + (f"; it is: {parameter.help}" if parameter.help else ""))
    if value is not None and bound is not None and not isinstance(value, str) and not (
            value >= bound[1] if bound[0] == "at least" else value > bound[1]):
        raise ValueError(f"notebook parameter {parameter.name!r} must be {bound[0]} {bound[1]:g}, got {value!r}; "
                         f"it is: {parameter.help}")
    if value is not None and choices is not None and value not in choices:
        raise ValueError(f"notebook parameter {parameter.name!r} must be one of {choices}, got {value!r}")



def check_parameters(namespace: dict) -> None:
    """In a notebook, right after the parameters cell: ``check_parameters(globals())``.

    Checks each annotated variable of the namespace against its annotation, so a value that
    papermill injected with the wrong type stops the notebook here, naming the parameter.
    """
    for name, annotation in namespace.get("__annotations__", {}).items():
        if name not in namespace:
            continue
        arguments = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
        kinds = tuple(type(None) if a is None else a for a in arguments)
        if all(isinstance(k, type) for k in kinds):
            check_value(NotebookParameter(name, kinds, None), namespace[name])


def parse_value(parameter: NotebookParameter, text: str):
    """A command-line string as a value of the parameter's type: ``16``, ``0.5``, ``none``, ``true``."""
    if type(None) in parameter.types and text.strip().lower() in ("none", "null"):
        return None
    for kind in parameter.types:
        if kind is bool and text.strip().lower() in ("true", "false", "yes", "no", "1", "0"):
            return text.strip().lower() in ("true", "yes", "1")
        if kind in (int, float):
            try:
                return kind(text)
            except ValueError:
                continue
        if kind is str:
            return text
    raise TypeError(f"notebook parameter {parameter.name!r} must be {parameter.describe()}, got {text!r}"
                    + (f"; it is: {parameter.help}" if parameter.help else ""))


def resolve_parameters(path: str | os.PathLike, given: dict) -> tuple[dict, dict[str, NotebookParameter]]:
    """The given values checked against the notebook's declarations: (values, declarations)."""
    declared = notebook_parameters(path)
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise ValueError(f"{Path(path).name} has no parameter(s) {unknown}; its parameters are {list(declared)}")
    for name, value in given.items():
        check_value(declared[name], value)
    for name, parameter in declared.items():  # given or not: a default folder may be missing too
        value = given.get(name, parameter.default)
        if isinstance(value, str) and EXISTING_FOLDER in parameter.help and not Path(value).is_dir():
            # found in the notebook's own cells, after its run folder and record were written
            raise ValueError(f"notebook parameter {parameter.name!r} must be an existing folder, got {value!r}, which "
                             f"{'is a file' if Path(value).exists() else 'does not exist'} (relative to {os.getcwd()}); "
                             f"it is: {parameter.help}" + ("" if name in given else f"; pass -p {name} FOLDER"))
    _check_device(given.get(DEVICE_PARAMETER, declared[DEVICE_PARAMETER].default) if DEVICE_PARAMETER in declared else None)
    return dict(given), declared


def _check_device(device) -> None:
    """A notebook's ``device`` checked before it runs: '5' failed in its fourth cell, 20 s in, after its run folder
    was written, as "'5' is not a device name", naming no parameter."""
    if device is None:
        return
    from ..core.device import resolve_device  # torch, which checking the other parameters does without

    try:
        resolve_device(device)
    except ValueError as err:
        raise ValueError(f"notebook parameter {DEVICE_PARAMETER!r}: {err}. Pass -p {DEVICE_PARAMETER} cpu (or cuda, "
                         f"cuda:N), or leave it out for CUDA when there is one") from None


# ---------------------------------------------------------------------------------------
# Running and rendering
# ---------------------------------------------------------------------------------------


def _check_kernel(name: str) -> None:
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    specs = KernelSpecManager()
    try:
        specs.get_kernel_spec(name)
    except NoSuchKernel:
        raise ValueError(f"no Jupyter kernel is named {name!r}; the kernels installed are "
                         f"{sorted(specs.find_kernel_specs())} (python -m ipykernel install --user --name NAME adds "
                         "one)") from None


def run_notebook(notebook: str | os.PathLike, out: str | os.PathLike, parameters: dict | None = None, *,
                 kernel_name: str | None = None, progress: bool = True, timeout: int | None = None) -> NotebookRun:
    """Execute ``notebook`` with ``parameters`` into the folder ``out`` and render it to HTML.

    Raises before writing anything when a parameter is unknown or of the wrong type, and
    :class:`NotebookError` (after writing the executed notebook and its HTML, which show the
    failing cell) when the notebook fails.
    """
    notebook, out = user_path(notebook, "notebook"), user_path(out, "out")
    if not notebook.is_file() or notebook.suffix != ".ipynb":
        raise FileNotFoundError(f"{notebook} is not a notebook file (.ipynb)")
    values, declared = resolve_parameters(notebook, dict(parameters or {}))
    check_folder(out, "the notebook's outputs")
    check_new_run_folder(out)  # its run.json, written next, would vouch for a folder of the user's files
    if kernel_name is not None:
        _check_kernel(kernel_name)
    if OUTPUT_PARAMETER in declared:
        given = values.setdefault(OUTPUT_PARAMETER, str(out))
        if user_path(given).resolve() != out.resolve():  # the run would go there, the record and the page here
            raise ValueError(f"the notebook's {OUTPUT_PARAMETER} is its out folder ({out}), got {given!r} as well: pass "
                             f"that folder as out (--out {given} on the command line) and leave {OUTPUT_PARAMETER} out")
    with exclusive_with_children(out, "a notebook run"):  # its kernel's pipeline writes here under this lock
        return _execute(notebook, out, values, declared, kernel_name, progress, timeout)


@contextlib.contextmanager
def _atomic_notebook_saves():
    """papermill saves the executed notebook at every cell by emptying the file, then writing it: a run
    killed in between left it empty (unreadable JSON), also over an earlier run's whole notebook. Its
    local writer writes aside and renames here (``atomic_path``), so each save is the last whole one."""
    from papermill.iorw import papermill_io

    local = papermill_io.get_handler("notebook.ipynb")  # the handler of local paths (an instance)

    def write(buf, path):
        folder = local._cwd if local._cwd is not None and not os.path.isabs(path) else ""
        with atomic_path(os.path.join(folder, path)) as tmp:
            Path(tmp).write_text(buf, encoding="utf-8")

    local.write = write
    try:
        yield
    finally:
        del local.write


def _execute(notebook: Path, out: Path, values: dict, declared: dict, kernel_name, progress, timeout) -> NotebookRun:
    """The rest of :func:`run_notebook`, once its arguments are checked and its folder is locked."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    injected = sorted(values)
    executed = out / notebook.name
    html = executed.with_suffix(".html")

    everything = {name: p.default for name, p in declared.items()} | values
    entry = {"source": str(notebook), "parameters": everything, "injected": injected, "status": "running",
             "executed": executed.name, "html": html.name, "papermill": papermill.__version__}
    # the record says "running" until the executed notebook and its HTML are whole: a run killed
    # in between leaves a record that says so, never one that vouches for a half-written page
    write_run_record(out, _with_notebook(out, notebook.stem, entry, everything))
    # the page of an earlier run of the notebook would read "complete" beside this run's files, with its
    # parameters, until this run writes its own; a run killed before that leaves none
    html.unlink(missing_ok=True)

    started = time.perf_counter()
    failure = None
    papermill_log = logging.getLogger("papermill")
    papermill_log.addFilter(_known_parameters)
    try:
        with environment_variable(HEADLESS_ENV, "1"), _atomic_notebook_saves():  # the kernel inherits the variable
            papermill.execute_notebook(
                _literal_path(notebook), _literal_path(executed), parameters=values, kernel_name=kernel_name,
                progress_bar=progress, cwd=os.getcwd(), execution_timeout=timeout,
            )
    except PapermillExecutionError as error:
        failure = error
    except BaseException as error:
        # papermill could not run it at all (no kernel, a path it cannot write, Ctrl-C): the record says
        # so, rather than "running" for ever
        entry.update(status="interrupted" if isinstance(error, KeyboardInterrupt) else "failed",
                     error=f"{type(error).__name__}: {error}")
        write_run_record(out, _with_notebook(out, notebook.stem, entry, everything, finished=True))
        if type(error).__name__ == "DeadKernelError":  # nbclient's, raw: killed by the system, often out of memory
            raise NotebookError(f"the kernel running {notebook.name} died ({error}): the system killed it, often for "
                                f"lack of memory; {executed} shows the cells it ran. Run the same command again (its PEF "
                                "store resumes where it stopped), with smaller settings or more memory") from error
        raise
    finally:
        papermill_log.removeFilter(_known_parameters)
    seconds = round(time.perf_counter() - started, 3)
    keep_static_views(executed)

    entry.update(status="failed" if failure else "complete", seconds=seconds)
    record = _with_notebook(out, notebook.stem, entry, everything, finished=True)
    started = time.perf_counter()
    export_notebook_html(executed, html, record)  # the page shows the record it is about to complete
    entry["html_seconds"] = round(time.perf_counter() - started, 3)
    write_run_record(out, record)
    if failure is not None:
        raise NotebookError(f"{notebook.name} failed in cell {failure.exec_count}: {failure.ename}: {failure.evalue}; "
                            f"{executed} and {html} show the cell and its error") from failure
    logger.info("ran %s in %.1f s: %s, %s", notebook.name, seconds, executed, html)
    return NotebookRun(out, executed, html, everything)


def _literal_path(path: Path) -> str:
    """A path papermill keeps as written: it fills ``{name}`` in paths from the parameters."""
    return str(path).replace("{", "{{").replace("}", "}}")


def _known_parameters(record: logging.LogRecord) -> bool:
    """Papermill's own parser skips annotations such as ``str | None`` and then calls those
    parameters unknown; they were checked against the declarations above, so the warning is wrong."""
    return not record.getMessage().startswith("Passed unknown parameter")


def _with_notebook(out: Path, name: str, entry: dict, parameters: dict, *, finished: bool = False) -> dict:
    """The folder's run record with the notebook run ``entry`` in it (not written). A folder
    without a record gets one of its own (a notebook that only reads another run, or one that
    fails before writing its run). Once ``finished``, a record still running (the notebook's
    own, or that of the pipeline it ran, whose stages are done) takes the notebook's status: "complete",
    "failed" or "interrupted"."""
    if not (out / RUN_RECORD).exists():
        RunRecorder(out, parameters)  # status "running", no stages
    record = read_run_record(out)
    record["notebooks"] = dict(record.get("notebooks", {}), **{name: entry})
    stages_done = all(stage.get("status") == "done" for stage in record.get("stages", {}).values())
    if finished and record.get("status") == "running" and (entry["status"] != "complete" or stages_done):
        record.update(status=entry["status"], finished=now())
    return record


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def keep_static_views(path: str | os.PathLike) -> None:
    """Drop the widget views and widget state from an executed notebook, keeping each output's
    static parts.

    After a headless run no kernel is left for a widget view to talk to: JupyterLab would show
    "model not found" in its place, and the saved state (plotly's widget code included) adds
    megabytes. The panels' ``text/html`` snapshots stay, and show everywhere; widgets without
    one (progress bars) go, since their text would be their first state, "0%".
    """
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    notebook.metadata.pop("widgets", None)
    for cell in notebook.cells:
        kept = []
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if WIDGET_VIEW in data:
                if "text/html" not in data:
                    continue  # a widget with no snapshot (a progress bar): its text is its first state
                del data[WIDGET_VIEW]
            kept.append(output)
        if cell.cell_type == "code":
            cell.outputs = kept
    with atomic_path(path) as tmp:  # a kill while it is rewritten keeps papermill's whole notebook
        nbformat.write(notebook, str(tmp))


_EXTERNAL_SCRIPT = re.compile(r'<script[^>]*\ssrc="https?://[^"]*"[^>]*>\s*</script>')
_BODY_OPEN = re.compile(r"<body[^>]*>")
#: nbconvert's code cells clip what is wider than their box: on a phone, or zoomed in, each line was cut at the
#: column's edge, with no way to read the rest. A long line scrolls in its cell; on paper, where nothing
#: scrolls, it wraps.
_CODE_CSS = ("<style>.jp-InputArea-editor .highlight pre { overflow-x: auto; }"
             " @media print { .jp-InputArea-editor .highlight pre { white-space: pre-wrap; overflow-wrap: anywhere; } }"
             "</style>")


def export_notebook_html(executed: str | os.PathLike, html_path: str | os.PathLike, record: dict | None = None) -> Path:
    """Render an executed notebook to one self-contained HTML file (see the module notes).

    The notebook holds no widget state, so nbconvert shows each panel's static ``text/html``
    snapshot in place of the live widget.
    """
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab")
    # the page's title names the notebook and the tool (nbconvert's default is "Notebook" for every page)
    body, _ = exporter.from_notebook_node(nbformat.read(executed, as_version=4),
                                          resources={"metadata": {"name": f"{Path(executed).stem} · NPEFF workbench"}})
    # Nothing in the page needs RequireJS or MathJax, and a <script src> to a CDN that cannot
    # be reached blocks the page on machines without network.
    body = _EXTERNAL_SCRIPT.sub("", body)
    body = body.replace("</head>", _CODE_CSS + "</head>", 1)
    if "npeff-plot" in body:
        body = body.replace("</head>", report.plotlyjs_script() + "</head>", 1)
    if record is not None:
        top = _BODY_OPEN.search(body)
        if top is not None:
            section = f'<div style="padding: 8px 24px">{report.run_section_html(record, heading=False)}</div>'
            body = body[: top.end()] + section + body[top.end():]
    with atomic_path(html_path) as tmp:  # never a truncated page under the real name
        tmp.write_text(body, encoding="utf-8")
    return Path(html_path)
