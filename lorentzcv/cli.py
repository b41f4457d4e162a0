"""``lorentzcv`` command line: ``train``, ``eval``, ``models``, ``datasets``, ``bench``.

Examples::

    lorentzcv train                                   # offline demo: HECNN+ ResNet on scikit-learn digits
    lorentzcv train configs/classification/table2/cifar100_hecnn_resnet18.yaml --set data.root=~/data
    lorentzcv train --resume runs/digits_hecnn_resnet18-20260101-120000
    lorentzcv train configs/metric/demo/digits_dml_lhier.yaml     # metric learning (LHIER), offline
    torchrun --nproc_per_node=2 -m lorentzcv train CONFIG      # DDP (gloo on CPU, nccl on CUDA)
    lorentzcv eval runs/<run>/best.pt --split test
    lorentzcv models 'hecnn*'
    lorentzcv datasets cifar10
    lorentzcv bench --help

Bad input (unknown config key, wrong type, missing dataset, corrupt checkpoint, unknown model) ends with a
one-line ``error: ...`` on stderr and exit status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import re
import runpy
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main", "build_parser", "find_benchmark"]

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
    else:
        print(f"{r['dataset']} {r['split']}: accuracy {100 * r['acc']:.2f} % ({r['n']} images), "
              f"loss {r['loss']:.4f}")
    for name, k in r["curvatures"].items():
        print(f"curvature K {name}: {k:.4f}")
    print(f"checkpoint: {r['checkpoint']} (epoch {r['epoch']})")
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from .models import list_models

    names = list_models(args.pattern)
    if not names:
        raise CLIError(f"no model matches {args.pattern!r}; run `lorentzcv models` for the full list")
    print("\n".join(names))
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
    """``benchmarks/compute.py`` of the source checkout (the current directory first, then the package's repo)."""
    for base in (Path.cwd(), Path(__file__).resolve().parents[1]):
        p = base / "benchmarks" / "compute.py"
        if p.is_file():
            return p
    return None


def _cmd_bench(args: argparse.Namespace) -> int:
    path = find_benchmark()
    if path is None:
        raise CLIError(
            "benchmarks/compute.py not found: it ships with the source repository, not the installed package; "
            "run `lorentzcv bench` from a checkout of lorentzcv (or `python benchmarks/compute.py` there)"
        )
    argv = list(args.bench_args)
    if argv[:1] == ["--"]:
        argv = argv[1:]
    old = sys.argv
    sys.argv = [str(path), *argv]
    try:
        runpy.run_path(str(path), run_name="__main__")
    except SystemExit as exc:  # the benchmark's own argparse/exit
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    finally:
        sys.argv = old
    return 0


# --------------------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    """The ``lorentzcv`` argument parser (subcommands ``train``, ``eval``, ``models``, ``datasets``, ``bench``)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show full tracebacks instead of one-line errors")

    parser = argparse.ArgumentParser(
        prog="lorentzcv", parents=[common],
        description="Hyperbolic (Lorentz) CNNs with curvature-aware optimization: train, evaluate, list, benchmark.",
        epilog="Run `lorentzcv COMMAND --help` for the options of a command. `lorentzcv train` with no arguments "
               "runs the offline digits demo.",
    )
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

    p = sub.add_parser("models", parents=[common], help="list the registered models",
                       description="List the registered model names (create_model names).")
    p.add_argument("pattern", nargs="?", default="*", metavar="PATTERN",
                   help="shell-style filter, e.g. 'hecnn*' (default: all)")
    p.set_defaults(func=_cmd_models)

    p = sub.add_parser("datasets", parents=[common], help="list the datasets with their expected layouts",
                       description="List the registered datasets with the on-disk layout each expects under "
                                   "data.root and how to get it.")
    p.add_argument("name", nargs="?", metavar="NAME", help="show only this dataset")
    p.set_defaults(func=_cmd_datasets)

    p = sub.add_parser("bench", help="run the compute benchmark (benchmarks/compute.py)",
                       description="Run benchmarks/compute.py of the source checkout; every argument after "
                                   "`bench` is passed to it (`lorentzcv bench --help` shows its options).",
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
