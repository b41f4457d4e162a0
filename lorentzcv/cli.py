"""``lorentzcv`` command line: ``train``, ``eval``, ``export``, ``plot``, ``config``, ``models``, ``datasets``,
``bench``.

Examples::

    lorentzcv train                                   # offline demo: HECNN+ ResNet on scikit-learn digits
    lorentzcv train configs/classification/table2/cifar100_hecnn_resnet18.yaml --set data.root=~/data
    lorentzcv train --resume runs/digits_hecnn_resnet18-20260101-120000
    lorentzcv train configs/metric/demo/digits_dml_lhier.yaml     # metric learning (LHIER), offline
    torchrun --nproc_per_node=2 -m lorentzcv train CONFIG      # DDP (gloo on CPU, nccl on CUDA)
    lorentzcv eval runs/<run>/best.pt --split test
    lorentzcv export runs/<run> --out model.onnx                # ONNX (pip install 'lorentzcv[onnx]')
    lorentzcv plot runs/<run-a> runs/<run-b> --out figures      # curves, curvature, Poincaré disk (PNG)
    lorentzcv config configs/demo/digits_hecnn.yaml --set optim.lr=0.05   # the resolved config as YAML
    lorentzcv models 'hecnn*'
    lorentzcv datasets cifar10
    lorentzcv bench --only layers --out bench.json               # a table; the JSON in bench.json
    lorentzcv --version

Bad input (unknown config key, wrong type, missing dataset, corrupt checkpoint, unknown model) ends with a
one-line ``error: ...`` on stderr and exit status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

__all__ = ["main", "build_parser", "find_benchmark", "format_bench", "version_string"]

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class CLIError(ValueError):
    """A problem with the command line itself (e.g. CONFIG and --resume together)."""


# ------------------------------------------------------------------------------------------ commands
def _cmd_train(args: argparse.Namespace) -> int:
    from .train import create_trainer, load_config, resume_config

    if args.resume is not None and args.config is not None:
        raise CLIError("pass either CONFIG or --resume RUN (a resumed run uses its own config.yaml; change "
                       "values with --set)")
    cfg = resume_config(args.resume, args.set) if args.resume is not None else load_config(args.config, args.set)
    trainer = create_trainer(cfg, resume=args.resume)  # Trainer, or MetricTrainer for `task: metric`
    try:
        trainer.run()
    except KeyboardInterrupt:
        run_dir = getattr(trainer, "run_dir", None)
        hint = f"; continue with: lorentzcv train --resume {run_dir}" if run_dir is not None else ""
        print(f"interrupted{hint}", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from .train import evaluate_checkpoint

    r = evaluate_checkpoint(args.checkpoint, data_root=args.data, split=args.split, device=args.device,
                            batch_size=args.batch_size, overrides=args.set)
    if args.json:
        import json

        print(json.dumps(r))
        return 0
    if r.get("task") == "metric":
        rec = "  ".join(f"R@{k} {100 * v:.2f} %" for k, v in r["recall"].items())
        mapr = f"  MAP@R {100 * r['map_at_r']:.2f} %" if r.get("map_at_r") is not None else ""
        print(f"{r['dataset']} {r['split']} ({r['protocol']}, {r['n']} queries): {rec}{mapr}")
        h = r.get("hierarchy")
        if h:  # the dataset has superclasses: superclass Recall@K and where the top-1 mistakes land
            srec = "  ".join(f"{key} {100 * v:.2f} %" for key, v in h.items() if key.startswith("SR@"))
            where = (f", {100 * h['mistake_in_super']:.2f} % of them in the query's superclass (mean LCA depth "
                     f"{h['mistake_depth']:.3f})") if h["mistake_rate"] > 0 else ""
            print(f"superclasses: {srec}  top-1 mistakes {100 * h['mistake_rate']:.2f} %{where}")
    else:
        print(f"{r['dataset']} {r['split']}: accuracy {100 * r['acc']:.2f} % ({r['n']} images), "
              f"loss {r['loss']:.4f}")
    for name, k in r["curvatures"].items():
        print(f"curvature K {name}: {k:.4f}")
    print(f"checkpoint: {r['checkpoint']} (epoch {r['epoch']})")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from .export import export_run

    try:
        r = export_run(args.source, args.out, batch=args.batch, opset=args.opset, verify=not args.no_verify)
    except ModuleNotFoundError as exc:  # onnx / onnxscript missing: one line, with the install command
        raise CLIError(str(exc)) from None
    if args.json:
        print(json.dumps(r))
        return 0
    shape = lambda dims: "(" + ", ".join("batch" if d is None else str(d) for d in dims) + ")"
    what = f"epoch {r['epoch']} of {r['source']}" if r["epoch"] is not None else f"{r['source']} (untrained)"
    print(f"wrote {r['path']}: {r['task']} model, {what}; opset {r['opset']}")
    print(f"input images {shape(r['input'])} float32 -> output {shape(r['output'])}")
    if r["checked_by"] == "onnxruntime":
        print(f"checked with onnxruntime: max |ONNX - PyTorch| = {r['max_abs_diff']:.2g}")
    elif r["checked_by"]:
        print(f"checked with {r['checked_by']} (install onnxruntime to compare outputs)")
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    try:
        from .plot import plot_runs
    except ModuleNotFoundError as exc:  # pragma: no cover - matplotlib is a dependency
        raise CLIError(f"`lorentzcv plot` needs {exc.name}: pip install matplotlib") from None

    runs = [Path(r) for r in args.runs]
    out = Path(args.out) if args.out else (runs[0] / "plots" if len(runs) == 1 else Path("plots"))
    written = plot_runs(runs, out, embeddings=not args.no_embeddings, split=args.split, limit=args.limit or None,
                        data_root=args.data, device=args.device,
                        log=lambda msg: print(f"note: {msg}", file=sys.stderr))
    for p in written:
        print(f"wrote {p}")
    return 0


def _cmd_config(args: argparse.Namespace) -> int:
    import yaml

    from .train import load_config, resume_config
    from .train.config import config_to_dict

    src = args.config
    if src is not None and Path(src).is_dir():
        cfg = resume_config(src, args.set)  # a run directory: the config its last.pt was trained with
    else:
        cfg = load_config(src, args.set)
    print(yaml.safe_dump(config_to_dict(cfg), sort_keys=False, default_flow_style=None), end="")
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from .models import list_embedding_models, list_models

    classifiers, embedders = list_models(args.pattern), list_embedding_models(args.pattern)
    if not classifiers and not embedders:
        raise CLIError(f"no model matches {args.pattern!r}; run `lorentzcv models` for the full list")
    if args.names:
        print("\n".join(classifiers + embedders))
        return 0
    sections = [
        ("classifiers (create_model(NAME); in timm also lorentzcv_NAME, and resnet18/50 only as "
         "lorentzcv_resnet18/50)", classifiers),
        ("embedding models (models.embedding.EMBEDDING_ENTRYPOINTS[NAME], or create_embedding_model)", embedders),
    ]
    blocks = [title + ":\n" + "\n".join(f"  {n}" for n in names) for title, names in sections if names]
    print("\n\n".join(blocks))
    return 0


def _cmd_datasets(args: argparse.Namespace) -> int:
    from .data import get_dataset_info, list_datasets

    names = [args.name] if args.name else list_datasets()
    for i, name in enumerate(names):
        info = get_dataset_info(name)
        classes = info.num_classes
        if isinstance(classes, dict):
            classes = "/".join(f"{k} {v}" for k, v in classes.items())
        if i:
            print()
        print(f"{info.name}  [{info.task}, {classes if classes is not None else '?'} classes, "
              f"{info.in_chans}x{info.img_size}x{info.img_size}, splits: {', '.join(info.splits)}]")
        if info.description:
            print(f"  {info.description}")
        print("  layout:")
        print("\n".join("    " + line for line in info.layout.rstrip().splitlines()))
        print("  how to get it:")
        print("\n".join("    " + line for line in info.how_to_get.rstrip().splitlines()))
    return 0


def find_benchmark() -> Path | None:
    """The compute benchmark's script, ``lorentzcv/bench.py`` of the installed package (``benchmarks/compute.py``
    of a checkout is a shim that runs it)."""
    p = Path(__file__).resolve().with_name("bench.py")
    return p if p.is_file() else None


_BENCH_COLUMNS = (
    ("time_ms", "ms"), ("time_ratio", "x time"), ("act_mem_mb", "act MB"), ("peak_extra_mb", "peak MB"),
    ("rss_peak_extra_mb", "RSS MB"), ("mem_ratio", "x mem"), ("kernel_ops", "kernel ops"),
    ("kernel_ops_ratio", "x ops"), ("launches", "launches"), ("launches_ratio", "x launches"),
    ("compile_s", "compile s"), ("eager_ms", "eager ms"), ("compiled_ms", "compiled ms"), ("speedup", "speedup"),
)


def _bench_tables(node: Any, path: list[str]) -> Iterator[tuple[list[str], dict[str, dict[str, Any]]]]:
    """The ``{contender: {metric: number}}`` groups of a benchmark result, with their paths."""
    if not isinstance(node, dict) or not node:
        return
    if all(isinstance(v, dict) and ("time_ms" in v or "launches" in v or "compile_s" in v) for v in node.values()):
        yield path, node
        return
    for k, v in node.items():
        yield from _bench_tables(v, [*path, str(k)])


def _num(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    return str(v) if isinstance(v, int) else f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"


def _row(cells: Sequence[str], widths: Sequence[int]) -> str:
    return "  ".join(x.ljust(w) if i == 0 else x.rjust(w) for i, (x, w) in enumerate(zip(cells, widths)))


def format_bench(result: dict[str, Any]) -> str:
    """Readable tables of a ``benchmarks/compute.py`` JSON result: one table per pass and suite (time, ratios to
    the Euclidean counterpart, memory, kernel ops), then the targets."""
    c = result.get("config", {})
    head = ", ".join(f"{k} {c[k]}" for k in ("device", "batch", "channels", "size", "threads", "timer") if c.get(k))
    lines = [f"lorentzcv bench: {head}" if head else "lorentzcv bench"]
    for section in ("layers", "models", "launches", "compile"):
        for path, group in _bench_tables(result.get(section), [section]):
            cols = [(k, t) for k, t in _BENCH_COLUMNS if any(k in e for e in group.values())]
            rows = [[name, *(_num(e.get(k)) for k, _ in cols)] for name, e in group.items()]
            header = ["/".join(path), *(t for _, t in cols)]
            widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
            lines += ["", _row(header, widths), "  ".join("-" * w for w in widths), *(_row(r, widths) for r in rows)]
    targets = result.get("targets") or {}
    if targets:
        lines += ["", "targets (ratio to Euclidean <= target):"]
        for name, t in targets.items():
            met = "met" if t.get("met") else "NOT met"
            lines.append(f"  {name}: {_num(t.get('ratio'))} (target {_num(t.get('target'))}) {met}")
    if result.get("wall_s") is not None:
        lines += ["", f"{result['wall_s']} s; ratios are to the Euclidean counterpart measured in the same run"]
    return "\n".join(lines)


def _split_bench_args(argv: list[str]) -> tuple[list[str], str | None, bool]:
    """Take ``--out FILE``/``--out=FILE`` and ``--json`` (ours) out of the arguments for compute.py."""
    rest, out, as_json, i = [], None, False, 0
    while i < len(argv):
        a = argv[i]
        if a == "--json":
            as_json = True
        elif a == "--out" and i + 1 < len(argv):
            out, i = argv[i + 1], i + 1
        elif a.startswith("--out="):
            out = a.split("=", 1)[1]
        else:
            rest.append(a)
        i += 1
    return rest, out, as_json


def _cmd_bench(args: argparse.Namespace) -> int:
    path = find_benchmark()
    if path is None:
        raise CLIError(
            "benchmarks/compute.py not found: lorentzcv/bench.py is missing from the installed package; "
            "reinstall lorentzcv"
        )
    argv = list(args.bench_args)
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if any(a in ("-h", "--help") for a in argv):
        print("lorentzcv bench [OPTIONS of benchmarks/compute.py] [--out FILE.json] [--json]\n"
              "  prints readable tables; --out also writes the full JSON, --json prints the JSON instead.\n"
              "  The benchmark's own stderr (profiler messages) is kept off the terminal unless it fails.\n")
        sys.stdout.flush()
        return subprocess.run([sys.executable, str(path), "--help"]).returncode
    argv, out, as_json = _split_bench_args(argv)
    with tempfile.TemporaryDirectory(prefix="lorentzcv-bench-") as tmp:
        json_path = Path(out) if out else Path(tmp) / "result.json"
        if out:
            json_path.parent.mkdir(parents=True, exist_ok=True)
        print(f"running {path} {' '.join(argv)} (this takes a while)", file=sys.stderr, flush=True)
        proc = subprocess.run([sys.executable, str(path), *argv, "--out", str(json_path)], capture_output=True,
                              text=True)
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
            print(tail, file=sys.stderr)
            print(f"error: benchmarks/compute.py failed (exit status {proc.returncode})", file=sys.stderr)
            return proc.returncode
        try:
            result = json.loads(json_path.read_text())
        except (OSError, ValueError) as exc:
            raise CLIError(f"benchmarks/compute.py wrote no readable JSON ({exc})") from None
    print(json.dumps(result, indent=1) if as_json else format_bench(result))
    if out:
        print(f"wrote {out}", file=sys.stderr)
    return 0


def version_string() -> str:
    """``lorentzcv X (torch Y, timm Z, Python W)``, for ``--version`` and bug reports."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    from . import __version__

    def ver(pkg: str) -> str:
        try:
            return version(pkg)
        except PackageNotFoundError:
            return "not installed"

    return f"lorentzcv {__version__} (torch {ver('torch')}, timm {ver('timm')}, Python {platform.python_version()})"


# --------------------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    """The ``lorentzcv`` argument parser (subcommands ``train``, ``eval``, ``export``, ``plot``, ``config``,
    ``models``, ``datasets``, ``bench``)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show full tracebacks instead of one-line errors")

    parser = argparse.ArgumentParser(
        prog="lorentzcv", parents=[common],
        description="Hyperbolic (Lorentz) CNNs with curvature-aware optimization: train, evaluate, plot, list, "
                    "benchmark.",
        epilog="Run `lorentzcv COMMAND --help` for the options of a command. `lorentzcv train` with no arguments "
               "runs the offline digits demo.",
    )
    parser.add_argument("--version", action="version", version=version_string())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "train", parents=[common],
        help="train a classifier or a metric-learning model (no arguments: the digits demo)",
        description="Train a classifier, or a metric-learning model (a YAML with `task: metric`: HIER/LHIER), "
                    "from a YAML config (default: the built-in digits demo, configs/demo/digits_hecnn.yaml). "
                    "Under torchrun it runs DDP.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  lorentzcv train                                   # the digits demo\n"
               "  lorentzcv train configs/classification/table2/cifar10_resnet18.yaml \\\n"
               "      --set data.root=~/data --set train.epochs=10\n"
               "  lorentzcv train configs/metric/demo/digits_dml_lhier.yaml   # LHIER metric learning\n"
               "  lorentzcv train --resume runs/RUN                 # continue an interrupted run\n"
               "  torchrun --nproc_per_node=2 -m lorentzcv train CONFIG   # DDP (gloo on CPU, nccl on CUDA)",
    )
    p.add_argument("config", nargs="?", metavar="CONFIG", help="YAML config file (default: the digits demo)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set optim.lr=0.05 --set model.learn_k=false "
                        "(values are YAML; repeatable)")
    p.add_argument("--resume", metavar="RUN", help="continue the run in this directory (or from this last.pt)")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("eval", parents=[common], help="evaluate a checkpoint",
                       description="Evaluate a checkpoint (or a run directory: its best.pt, else last.pt) on a "
                                   "split of the dataset it was trained on: accuracy for classifiers, Recall@K "
                                   "and MAP@R for metric-learning runs (test = the dataset's retrieval protocol).")
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="a .pt file or a run directory")
    p.add_argument("--data", metavar="ROOT", help="dataset root (default: the one in the run's config)")
    p.add_argument("--split", default="test", choices=["test", "val", "train"], help="split (default: test)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--batch-size", type=int, default=None, help="evaluation batch size")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    p.add_argument("--json", action="store_true", help="print the result as one JSON line")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("export", parents=[common], help="export a run's model (or a config's) to ONNX",
                       description="Write the model of a run directory (its best.pt, else last.pt), a checkpoint "
                                   "or a YAML config (untrained) as an ONNX graph: input `images` (batch, C, H, W) "
                                   "float32 with a dynamic batch, output logits or embeddings. Needs onnx and "
                                   "onnxscript (pip install 'lorentzcv[onnx]'); with onnxruntime installed the "
                                   "graph's output is compared with PyTorch's.")
    p.add_argument("source", metavar="RUN_DIR|CHECKPOINT|CONFIG", help="a run directory, a .pt file or a YAML config")
    p.add_argument("--out", metavar="FILE", help="the .onnx file (default: RUN_DIR/model.onnx, or CONFIG_NAME.onnx)")
    p.add_argument("--batch", type=int, default=2, help="batch size of the example input (default 2; the exported "
                   "batch is dynamic)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset version (default: the exporter's)")
    p.add_argument("--no-verify", action="store_true", help="skip the onnxruntime / onnx.checker check")
    p.add_argument("--json", action="store_true", help="print the result as one JSON line")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser(
        "plot", parents=[common], help="draw training curves, curvature and Poincaré-disk embeddings of runs",
        description="Write PNGs of one or several runs (one colour per run): curves.png (losses, accuracy, "
                    "Recall@1/MAP@R per epoch), curvature.png (K = -1/k of every manifold per epoch) and, for "
                    "metric-learning runs whose checkpoint and dataset are available, poincare.png (test "
                    "embeddings in the Poincaré disk by class and superclass).",
    )
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories written by `lorentzcv train`")
    p.add_argument("--out", metavar="DIR", help="output folder (default: RUN_DIR/plots for one run, else ./plots)")
    p.add_argument("--no-embeddings", action="store_true", help="skip the Poincaré disk (needs the data)")
    p.add_argument("--data", metavar="ROOT", help="dataset root for the Poincaré disk (default: the run's)")
    p.add_argument("--split", default="test", choices=["test", "train"],
                   help="embed the test (unseen classes) or training split (default: test)")
    p.add_argument("--limit", type=int, default=2000, help="at most N embedded images, spread over the split "
                   "(0 = all; default 2000)")
    p.add_argument("--device", default="cpu", help="device for the embeddings: cpu (default), cuda, auto")
    p.set_defaults(func=_cmd_plot)

    p = sub.add_parser("config", parents=[common], help="print the resolved config (YAML)",
                       description="Print the config a run would use, as YAML: CONFIG (default: the digits demo) "
                                   "or a run directory, with --set overrides applied and every default filled in.")
    p.add_argument("config", nargs="?", metavar="CONFIG", help="YAML config file or run directory")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    p.set_defaults(func=_cmd_config)

    p = sub.add_parser("models", parents=[common], help="list the registered models",
                       description="List the classifiers (create_model / timm.create_model names) and the "
                                   "metric-learning embedding models.")
    p.add_argument("pattern", nargs="?", default="*", metavar="PATTERN",
                   help="shell-style filter, e.g. 'hecnn*' (default: all)")
    p.add_argument("--names", action="store_true", help="only the names, one per line")
    p.set_defaults(func=_cmd_models)

    p = sub.add_parser("datasets", parents=[common], help="list the datasets with their expected layouts",
                       description="List the registered datasets with the on-disk layout each expects under "
                                   "data.root and how to get it.")
    p.add_argument("name", nargs="?", metavar="NAME", help="show only this dataset")
    p.set_defaults(func=_cmd_datasets)

    p = sub.add_parser("bench", help="run the compute benchmark (benchmarks/compute.py), print a table",
                       description="Run benchmarks/compute.py of the source checkout and print its result as "
                                   "tables; --out FILE also writes the JSON, --json prints it instead; the other "
                                   "arguments go to compute.py (`lorentzcv bench --help` shows them).",
                       add_help=False)
    p.add_argument("bench_args", nargs=argparse.REMAINDER, metavar="ARGS", help="arguments of compute.py")
    p.set_defaults(func=_cmd_bench)
    return parser


# ------------------------------------------------------------------------------------------------ main
def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    if isinstance(exc, KeyError) and len(exc.args) == 1:
        text = str(exc.args[0])
    lines = text.splitlines() or [type(exc).__name__]
    first = lines[0].rstrip()
    m = re.match(r"Dataset '([^']+)' not found", first)
    if m:
        first += (f" (set the root with --set data.root=DIR or $LORENTZCV_DATA; expected layout and how to get "
                  f"it: `lorentzcv datasets {m.group(1)}`)")
    return first


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lorentzcv`` command; returns the exit status."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    # `bench` forwards everything after it verbatim (argparse's REMAINDER would still parse leading options).
    head = 1 if argv[:1] == ["--debug"] else 0
    if argv[head:head + 1] == ["bench"]:
        args = argparse.Namespace(command="bench", func=_cmd_bench, bench_args=argv[head + 1:], debug=head == 1)
    else:
        args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    debug = getattr(args, "debug", False) or os.environ.get("LORENTZCV_DEBUG", "") not in ("", "0")
    with warnings.catch_warnings():  # restores the warning display on exit
        if not debug:  # one line per warning, without the source line that Python's default display adds
            warnings.showwarning = _show_warning
        try:
            return int(args.func(args) or 0)
        except (ValueError, OSError, KeyError) as exc:
            if debug:
                raise
            print(f"error: {_one_line(exc)}", file=sys.stderr)
            return EXIT_USAGE


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {_one_line(message) if isinstance(message, BaseException) else message}",
          file=file or sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
