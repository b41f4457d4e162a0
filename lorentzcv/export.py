"""ONNX export of lorentzcv models, runs and configs (``lorentzcv export``).

>>> from lorentzcv.export import export_onnx, export_run
>>> export_onnx(create_model("hecnn_resnet18", num_classes=10, img_size=32), "hecnn.onnx", input_shape=(3, 32, 32))
>>> export_run("runs/RUN_DIR", "model.onnx")        # the run's weights (best.pt, else last.pt)

The graph is captured with PyTorch's ``torch.export``-based ONNX exporter (``torch.onnx.export(..., dynamo=True)``,
which needs the ``onnx`` and ``onnxscript`` packages: ``pip install 'lorentzcv[onnx]'``). Under it
``torch.compiler.is_compiling()`` is true, so the Lorentz layers trace their plain differentiable code (no fused
kernels, no ``out=`` writes into views) and the graph computes what the eager model computes, with the curvature
``k`` of every manifold (``K = -1/k``) frozen at its trained value. TorchScript tracing (``dynamo=False``) is not
used: it has no ONNX ``Sinh`` symbolic for ``aten::sinh`` and mis-traces the layers' in-place inference writes.

The graph has one input ``images`` ``(batch, C, H, W)`` float32 (the batch size is dynamic) and one output
``output``: logits ``(batch, num_classes)`` for classifiers, embeddings ``(batch, D)`` (Euclidean, Poincaré) or
Lorentz points ``(batch, 1 + D)`` with ``<x, x>_L = -k`` for embedding models. With ``onnxruntime`` installed the
export is checked by running the graph on a batch of another size and comparing with PyTorch; without it the file
is checked with ``onnx.checker``.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["export_onnx", "export_run", "model_from_source", "ONNX_EXTRA"]

#: What to install for the exporter (the ``onnx`` extra of the package).
ONNX_EXTRA = "pip install 'lorentzcv[onnx]' (onnx, onnxscript, onnxruntime)"


def _require_exporter() -> None:
    missing = [m for m in ("onnx", "onnxscript") if importlib.util.find_spec(m) is None]
    if missing:
        raise ModuleNotFoundError(f"ONNX export needs {' and '.join(missing)}: {ONNX_EXTRA}")


def export_onnx(model: nn.Module, path: str | os.PathLike[str], *, input_shape: tuple[int, int, int],
                batch: int = 2, opset: int | None = None, verify: bool = True, atol: float = 1e-4) -> dict[str, Any]:
    """Export ``model`` (evaluation mode, on the CPU) to the ONNX file ``path``.

    Args:
        model: any module taking one image batch ``(B, C, H, W)``; its training mode is restored afterwards.
        path: the ``.onnx`` file to write (parent folders are created).
        input_shape: ``(C, H, W)`` of one image.
        batch: batch size of the example input used for the capture (the exported batch stays dynamic).
        opset: ONNX opset version; ``None`` is the exporter's default.
        verify: compare onnxruntime's output with PyTorch's on a batch of ``batch + 1`` random images (when
            onnxruntime is installed; else run ``onnx.checker`` on the file).
        atol: largest absolute difference accepted by the comparison.

    Returns:
        ``{"path", "input": [None, C, H, W], "output": [None, ...], "opset", "checked_by": "onnxruntime" |
        "onnx.checker" | None, "max_abs_diff": float | None}``.

    Raises:
        ModuleNotFoundError: ``onnx``/``onnxscript`` are not installed (:data:`ONNX_EXTRA`).
        ValueError: the exporter failed (its first line), or the exported graph disagrees with PyTorch by more
            than ``atol``.
    """
    _require_exporter()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    device = next(iter(model.parameters()), torch.empty(0)).device
    model.cpu().eval()
    try:
        example = torch.randn(batch, *input_shape, generator=torch.Generator().manual_seed(0))
        kwargs: dict[str, Any] = {} if opset is None else {"opset_version": opset}
        try:
            program = torch.onnx.export(model, (example,), dynamo=True, verbose=False, input_names=["images"],
                                        output_names=["output"],
                                        dynamic_shapes=({0: torch.export.Dim("batch", min=1)},), **kwargs)
        except (RuntimeError, TypeError, ValueError, AssertionError) as exc:  # the exporter's long report
            cause = exc.__cause__ or exc
            first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
            raise ValueError(f"ONNX export of {type(model).__name__} failed: {first[:300]}") from exc
        program.save(str(path))
        test = torch.randn(batch + 1, *input_shape, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            expected = model(test).float().numpy()
    finally:
        model.to(device).train(was_training)
    out: dict[str, Any] = {"path": str(path), "input": [None, *input_shape], "output": [None, *expected.shape[1:]],
                           "opset": int(program.model.opset_imports.get("", 0)), "checked_by": None,
                           "max_abs_diff": None}
    if verify:
        out.update(_verify(path, test.numpy(), expected, atol))
    return out


def _verify(path: Path, images: Any, expected: Any, atol: float) -> dict[str, Any]:
    """Run ``path`` in onnxruntime (if installed) and compare with ``expected``; else ``onnx.checker``."""
    import numpy as np

    if importlib.util.find_spec("onnxruntime") is None:
        import onnx

        onnx.checker.check_model(str(path), full_check=True)
        return {"checked_by": "onnx.checker"}
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only (constant-folding notes are not problems)
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"images": images})
    diff = float(np.max(np.abs(got - expected))) if got.size else 0.0
    if got.shape != expected.shape or not diff <= atol:
        raise ValueError(f"the ONNX graph {path} disagrees with PyTorch: output {got.shape} vs {expected.shape}, "
                         f"max |difference| {diff:.3g} > {atol:g}")
    return {"checked_by": "onnxruntime", "max_abs_diff": diff}


def model_from_source(source: str | os.PathLike[str]) -> tuple[nn.Module, tuple[int, int, int], dict[str, Any]]:
    """The model of a run directory, checkpoint or YAML config, with its image shape ``(C, H, W)`` and facts.

    A run directory gives its ``best.pt`` (else ``last.pt``) weights; a ``.pt`` file its weights; a YAML config
    a freshly initialised model (no pretrained weights are fetched). Returns ``(model, input_shape, info)`` with
    ``info = {"source", "task", "epoch" (None for a config)}``.
    """
    from .train import build_inference_model, find_checkpoint, load_checkpoint, load_config

    p = Path(source)
    if p.is_dir() or p.suffix in (".pt", ".pth"):
        path = find_checkpoint(p, "best.pt")
        state = load_checkpoint(path, map_location="cpu")
        model, shape, task = build_inference_model(state["config"], state.get("meta", {}), state)
        return model, shape, {"source": str(path), "task": task, "epoch": int(state["epoch"])}
    cfg = load_config(p)
    model, shape, task = build_inference_model(cfg, {}, None)
    return model, shape, {"source": str(p), "task": task, "epoch": None}


def export_run(source: str | os.PathLike[str], out: str | os.PathLike[str] | None = None, *,
               batch: int = 2, opset: int | None = None, verify: bool = True) -> dict[str, Any]:
    """Export the model of a run directory, checkpoint or config (:func:`model_from_source`) to ONNX.

    ``out`` defaults to ``RUN_DIR/model.onnx`` for a run directory or checkpoint, ``<config stem>.onnx`` for a
    config. Returns :func:`export_onnx`'s dict plus ``"source"``, ``"task"`` and ``"epoch"``.
    """
    _require_exporter()  # before a model is built
    model, shape, info = model_from_source(source)
    if out is None:
        src = Path(info["source"])
        out = src.parent / "model.onnx" if info["epoch"] is not None else Path(f"{src.stem}.onnx")
    return {**export_onnx(model, out, input_shape=shape, batch=batch, opset=opset, verify=verify), **info}
