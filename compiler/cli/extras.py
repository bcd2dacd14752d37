"""Which optional extra a missing package belongs to, so a command can say what to install.

``pip install mtlc`` installs the compiler alone; training needs ``mtlc[train]``
(torch, numpy, pyarrow, scikit-learn, tqdm, matplotlib), the Triton kernels
``mtlc[kernels]``, ONNX export ``mtlc[export]``, the peers' converters
``mtlc[nextrec]`` or ``mtlc[rechub]``. A command that meets a missing package of
an extra prints one line naming the extra and exits 2 (``needs_extra``), instead
of a ``ModuleNotFoundError`` traceback.
"""

from __future__ import annotations

__all__ = ["EXTRAS", "extra_of", "needs_extra"]

# top-level module -> (extra, its words)
EXTRAS = {
    "torch": ("train", "the training extras"),
    "numpy": ("train", "the training extras"),
    "pyarrow": ("train", "the training extras"),
    "sklearn": ("train", "the training extras"),
    "tqdm": ("train", "the training extras"),
    "matplotlib": ("train", "the training extras"),
    "triton": ("kernels", "the kernels extra"),
    "pygls": ("lsp", "the lsp extra"),
    "lsprotocol": ("lsp", "the lsp extra"),
    "onnx": ("export", "the export extra"),
    "onnxruntime": ("export", "the export extra"),
    "onnxscript": ("export", "the export extra"),
    "nextrec": ("nextrec", "the NextRec extra"),
    "torch_rechub": ("rechub", "the torch-rechub extra"),
}


def extra_of(error: ModuleNotFoundError) -> tuple[str, str] | None:
    """The (extra, words) of the package ``error`` says is missing, if it is one of ours."""
    name = (error.name or "").split(".")[0]
    return EXTRAS.get(name)


def needs_extra(command: str, error: ModuleNotFoundError) -> str | None:
    """The one line to print for ``error`` raised by ``command``, or None if not an extra's."""
    found = extra_of(error)
    if found is None:
        return None
    extra, words = found
    return (
        f"mtlc: error: mtlc {command} needs {words}: pip install 'mtlc[{extra}]' "
        f"(missing: {error.name})"
    )
