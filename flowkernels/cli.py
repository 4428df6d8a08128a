"""The flowkernels command line: lossless image compression with integer discrete flows, training,
demonstrations and kernel benchmarks.

Examples:
  flowkernels compress photo.png -o photo.fkc          # the shipped model for the image's channels
  flowkernels decompress photo.fkc -o photo_back.png   # finds the model the file was made with
  flowkernels models                                   # the shipped models
  flowkernels train-idf --dataset digits --epochs 60 --qat-epochs 5 --out idf.pt
  flowkernels bench coupling --json results.json       # one kernel family against its peers
  flowkernels demo --quick

Exit status: 0 on success, 1 on any error (one line on stderr; --debug shows the traceback),
2 for a command line that does not parse, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import textwrap
from collections.abc import Sequence

import torch

_HELP_WIDTH = 95  # help text fits a 100-column terminal


class _DefaultsShownFormatter(argparse.HelpFormatter):
    """Appends an option's default to its help, unless the help already says it or there is none."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        nothing = action.default is None or action.default is False or action.default == argparse.SUPPRESS
        if "default" in text or nothing or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


class _ExamplesFormatter(_DefaultsShownFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown, and the epilog's examples kept on their own lines."""


def _examples(*lines: str) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


class _DefaultsShownParser(argparse.ArgumentParser):
    """A subcommand parser whose --help shows every option's default."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", _DefaultsShownFormatter)
        super().__init__(*args, **kwargs)


def _add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    from .benchmarks import SUITES

    parser.add_argument(
        "families",
        nargs="*",
        metavar="FAMILY",
        help=f"kernel families to benchmark (default: all of {', '.join(sorted(SUITES))})",
    )
    parser.add_argument("--quick", action="store_true", help="tiny shapes and short timings (a smoke run)")
    parser.add_argument("--device", default="cpu", help="device to benchmark on (cpu or cuda)")
    parser.add_argument(
        "--no-compile", action="store_true", help="skip the torch.compile peers (they take a minute to compile)"
    )
    parser.add_argument("--min-run-time", type=float, default=None, help="seconds of timing per contender and case")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")


def _bench(args: argparse.Namespace, *, compact: bool = False) -> int:
    from . import benchmarks

    if args.device.startswith("cuda") and not (torch.cuda.is_available() and _has_cuda_kernels()):
        print("flowkernels bench: --device cuda needs a GPU and a build with CUDA kernels", file=sys.stderr)
        return 2
    results = benchmarks.run(
        args.families or None,
        quick=args.quick,
        device=args.device,
        compile_peers=False if args.no_compile else None,
        min_run_time=args.min_run_time,
    )
    print(f"flowkernels microbenchmarks on {args.device}; ratio = reference time / kernel time")
    for line in benchmarks.machine.summary(benchmarks.machine.describe(args.device)).splitlines():
        print(textwrap.fill(line, _HELP_WIDTH, subsequent_indent="  "))
    table = benchmarks.format_compact_table if compact else benchmarks.format_table
    print(table(results, judge=not args.quick))
    if args.quick:
        print("(--quick: smoke-sized shapes and short timings, so targets are not judged; run without --quick)")
    if args.json:
        with open(args.json, "w") as handle:
            import os

            settings = [f"{k}={os.environ[k]}" for k in ("FLOWKERNELS_CPU_ISA", "OMP_NUM_THREADS") if k in os.environ]
            command = " ".join([*settings, "flowkernels", *(shlex.quote(arg) for arg in args.argv)])
            handle.write(benchmarks.results_to_json(results, args.device, judged=not args.quick, command=command))
        print(f"wrote {args.json}")
    args.bench_results = results
    return 0


def _has_cuda_kernels() -> bool:
    import flowkernels

    return flowkernels.has_cuda_kernels()


def _demo(args: argparse.Namespace) -> int:
    """Lossless compression of held-out data with the shipped IDF models against classical codecs
    (every round trip checked), then the kernel benchmarks."""
    from . import pretrained
    from .benchmarks.compression import compression_rows, format_compression_table

    models = None
    if "digits" not in pretrained.available():  # a trimmed installation: train the digits model (~40 s)
        import tempfile
        from pathlib import Path

        from .models.idf_training import train_idf

        models = Path(tempfile.mkdtemp(prefix="flowkernels-demo-"))
        print("flowkernels demo: no shipped digits model here; training one (about a minute on 2 cores)")
        train_idf(
            "digits", epochs=60, qat_epochs=5, batch_size=64, lr=2e-3, seed=0, checkpoint=models / "idf_digits.pt"
        )
    print(
        "flowkernels demo 1/2: lossless compression of held-out data with the shipped IDF models\n"
        "against classical codecs (bits per dimension; every file is decoded and checked)",
        flush=True,
    )
    rows = compression_rows(models, photos=0 if args.quick else 1, progress=lambda line: print(f"  {line}", flush=True))
    print(format_compression_table(rows, compact=True))
    print("\nflowkernels demo 2/2: the kernels against their pure-PyTorch references and outside peers\n", flush=True)
    status = _bench(args, compact=True)
    results = getattr(args, "bench_results", [])
    beats_png = sum(row["idf"]["coded"] < row["classical"]["PNG"] for row in rows)
    verdicts = [r.target_met() for r in results if r.target_met() is not None]
    targets = "targets not judged (--quick)" if args.quick else f"{sum(verdicts)} of {len(verdicts)} targets met"
    summary = (
        f"summary: {len(rows)} data sets compressed and decoded exactly; the IDF file is smaller than PNG on "
        f"{beats_png} of them; {len(results)} kernel benchmarks, {targets}. Every column: `flowkernels bench`; "
        "the full tables: README.md and benchmarks/results/ "
        "(`python benchmarks/experiments/idf_results.py` for all codecs)."
    )
    print("\n" + textwrap.fill(summary, _HELP_WIDTH))
    return status


def _train_glow(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .models.glow_training import save_sample_grid, train_glow

    model, history = train_glow(
        args.conv,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        device=args.device,
        steps_per_scale=args.steps_per_scale,
        hidden=args.hidden,
        kernel_size=args.kernel_size,
        progress=not args.no_progress,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # The one checkpoint format (models.checkpoint): Glow.from_checkpoint(path) loads it back.
    checkpoint = model.save(out / f"glow_{args.conv}.pt", train=history.config)
    grid = out / f"glow_{args.conv}_samples.png"
    save_sample_grid(model, grid, n=64, seed=args.seed)
    print(
        f"glow[{args.conv}]: test {history.final_test_bpd:.3f} bits/dim after {args.epochs} epochs "
        f"({history.train_time_s:.1f} s); wrote {checkpoint} and {grid}"
    )
    return 0


def _models(args: argparse.Namespace) -> int:
    """The shipped models: what they compress, their test bits/dim and the fingerprint files carry."""
    from . import pretrained
    from .codec.container import model_fingerprint
    from .codec.registry import load_checkpoint
    from .models.checkpoint import read_checkpoint

    rows = [("name", "channels", "patch", "arithmetic", "trained on", "test bits/dim", "fingerprint")]
    for name in pretrained.available():
        path = pretrained.checkpoint_path(name)
        checkpoint = read_checkpoint(path)
        config, train = checkpoint["config"], checkpoint.get("train", {})
        model = load_checkpoint(path)
        bpd = train.get("test_bpd")
        rows.append(
            (
                name,
                str(config["in_channels"]),
                f"{config['height']}x{config['width']}",
                config.get("arithmetic", "float"),
                str(train.get("dataset", "?")),
                "?" if bpd is None else f"{bpd:.3f}",
                model_fingerprint(model).hex()[:16],
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    if len(rows) == 1:
        print("(no shipped models in this installation)")
    return 0


def _codec_error(command: str, error: Exception) -> int:
    print(f"flowkernels {command}: error: {error}", file=sys.stderr)
    return 1


def _batch(args: argparse.Namespace, action, default_suffix: str) -> int:
    """Run ``action(source, target, codecs)`` on every input: one file (or ``-``) to ``args.output``, or files
    and folders into the folder ``args.output``; then a summary table. Exit status 1 if any file failed."""
    from pathlib import Path

    from .codec.files import STDIO, CodecCache, image_files, summary_table

    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    codecs = CodecCache(getattr(args, "lanes", None))
    single = len(args.inputs) == 1 and (args.inputs[0] == STDIO or not Path(args.inputs[0]).is_dir())
    if single and not Path(args.output).is_dir():
        jobs = [(args.inputs[0], args.output)]
    else:
        if STDIO in args.inputs or args.output == STDIO:
            raise ValueError("- (a pipe) stands for one file: give one input and one output")
        suffixes = (".fkc",) if default_suffix != ".fkc" else None
        found = image_files(args.inputs, recursive=args.recursive, **({"suffixes": suffixes} if suffixes else {}))
        if not found:
            raise ValueError(f"no {'.fkc' if suffixes else 'image'} files in {', '.join(args.inputs)}")
        folder = Path(args.output)
        jobs = [(str(file), str((folder / name).with_suffix(default_suffix))) for file, name in found]
    results, failures = [], 0
    quiet = args.output == STDIO  # standard output carries the data: messages go to standard error only
    for source, target in jobs:
        try:
            if len(jobs) > 1:
                Path(target).parent.mkdir(parents=True, exist_ok=True)
            result = action(source, target, codecs)
        except (ValueError, OSError) as error:
            if args.debug:
                raise
            failures += 1
            text = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
            text = text if source in text else f"{source}: {text}"
            print(f"flowkernels {args.command}: error: {text}", file=sys.stderr)
            continue
        results.append(result)
        if result.note:
            print(f"{source}: {result.note}", file=sys.stderr)
    if results:
        compressed = "output" if args.command == "compress" else "input"
        print(summary_table(results, compressed=compressed), file=sys.stderr if quiet else sys.stdout)
    if failures and len(jobs) > 1:
        print(f"flowkernels {args.command}: {failures} of {len(jobs)} files failed", file=sys.stderr)
    return 1 if failures else 0


def _compress(args: argparse.Namespace) -> int:
    from .codec.files import compress_file

    def action(source, target, codecs):
        return compress_file(
            source,
            target,
            model=args.model,
            method=args.method,
            layout=args.layout,
            verify=args.verify,
            force=args.force,
            progress=not args.no_progress,
            codecs=codecs,
        )

    return _batch(args, action, ".fkc")


def _decompress(args: argparse.Namespace) -> int:
    from .codec.files import decompress_file

    suffix = "." + args.format.lower() if args.format else None

    def action(source, target, codecs):
        return decompress_file(
            source,
            target,
            model=args.model,
            force=args.force,
            progress=not args.no_progress,
            output_format=suffix,
            codecs=codecs,
        )

    return _batch(args, action, suffix or ".png")


def _train_idf(args: argparse.Namespace) -> int:
    import os

    if args.init is not None and not os.path.isfile(args.init):
        return _codec_error("train-idf", FileNotFoundError(f"--init {args.init}: no such file"))
    try:
        model, history = _run_train_idf(args)
    except (ValueError, FileNotFoundError) as error:  # a bad checkpoint or argument, missing data: one line
        if args.debug:
            raise
        return _codec_error("train-idf", error)
    # Under torchrun every rank returns here; rank 0 wrote the checkpoint and speaks for all.
    if _rank() == 0:
        processes = f" on {history.world_size} processes" if history.world_size > 1 else ""
        qat = f" + {args.qat_epochs} quantization-aware" if args.qat_epochs else ""
        print(
            f"idf[{args.dataset}]: test {history.final_test_bpd:.4f} bits/dim after {args.epochs}{qat} epochs "
            f"({history.train_time_s:.1f} s{processes}); wrote {args.out}"
        )
        if history.integer_test_bpd is not None:
            change = 100 * (history.integer_test_bpd / history.float_test_bpd - 1)
            print(
                f"idf[{args.dataset}]: integer model {history.integer_test_bpd:.4f} bits/dim, float model before "
                f"quantization-aware training {history.float_test_bpd:.4f} ({change:+.2f}%)"
            )
    return 0


def _run_train_idf(args: argparse.Namespace):
    from .models.idf_training import train_idf

    return train_idf(
        args.dataset,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        device=args.device,
        progress=not args.no_progress,
        checkpoint=args.out,
        patch_size=args.patch_size,
        num_scales=args.num_scales,
        steps_per_scale=args.steps_per_scale,
        hidden=args.hidden,
        blocks=args.blocks,
        num_mixtures=args.num_mixtures,
        net=args.net,
        max_train=args.max_train,
        init=args.init,
        qat_epochs=args.qat_epochs,
        qat_lr=args.qat_lr,
        resume=args.resume,
    )


def _rank() -> int:
    import os

    return int(os.environ.get("RANK", "0"))


def _add_training_arguments(parser: argparse.ArgumentParser, *, batch_help: str | None, device_help: str | None):
    """The options every training command has (epochs, batch, learning rate, seed, device)."""
    parser.add_argument("--epochs", type=int, default=60, help="passes over the training data")
    parser.add_argument("--batch-size", type=int, default=64, help=batch_help or "images per step")
    parser.add_argument("--lr", type=float, default=2e-3, help="peak learning rate of Adam (warm-up, cosine decay)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights, batch order and noise")
    parser.add_argument("--device", default="cpu", help=device_help or "cpu or cuda")


def build_parser() -> argparse.ArgumentParser:
    import flowkernels
    from flowkernels.codec.image_file import METHODS

    parser = argparse.ArgumentParser(
        prog="flowkernels", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"flowkernels {flowkernels.__version__} (torch {torch.__version__}, CPU path {flowkernels.cpu.isa()}, "
        f"CUDA kernels {'built' if _has_cuda_kernels() else 'not built'})",
    )
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error instead of one line")
    # Every subcommand shows its defaults in --help.
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_DefaultsShownParser)
    models = sub.add_parser(
        "models",
        help="list the shipped models: channels, training data, test bits/dim",
        epilog=_examples("flowkernels models", "flowkernels compress photo.png -o photo.fkc --model photos-gray"),
        formatter_class=_ExamplesFormatter,
    )
    models.set_defaults(handler=_models)
    demo = sub.add_parser(
        "demo",
        help="the main demonstration: lossless compression with the shipped models vs classical codecs, "
        "then the kernel benchmarks",
        epilog=_examples("flowkernels demo", "flowkernels demo --quick --no-compile   # a smoke run, seconds"),
        formatter_class=_ExamplesFormatter,
    )
    _add_bench_arguments(demo)
    demo.set_defaults(handler=_demo)
    bench = sub.add_parser(
        "bench",
        help="microbenchmarks: kernel vs reference vs peers, with targets",
        epilog=_examples(
            "flowkernels bench                                  # every family",
            "flowkernels bench rans hex --json results.json     # two families, results with the machine",
            "FLOWKERNELS_CPU_ISA=baseline flowkernels bench hex  # as on a CPU without AVX2",
        ),
        formatter_class=_ExamplesFormatter,
    )
    _add_bench_arguments(bench)
    bench.set_defaults(handler=_bench)
    glow = sub.add_parser(
        "train-glow",
        help="train a Glow (1x1, emerging or periodic convolutions) on the digits; save it and a sample grid",
        epilog=_examples("flowkernels train-glow --conv emerging --epochs 60 --out glow-run"),
        formatter_class=_ExamplesFormatter,
    )
    from .models.glow import CONV_KINDS

    glow.add_argument("--conv", choices=CONV_KINDS, default="emerging", help="the invertible convolution")
    _add_training_arguments(glow, batch_help=None, device_help=None)
    glow.add_argument("--steps-per-scale", type=int, default=4, help="flow steps per scale")
    glow.add_argument("--hidden", type=int, default=64, help="channels of the coupling networks")
    glow.add_argument("--kernel-size", type=int, default=3, help="of the emerging / periodic convolutions")
    glow.add_argument("--out", default="glow-run", help="folder for the checkpoint and the sample grid")
    glow.add_argument("--no-progress", action="store_true", help="no progress bar")
    glow.set_defaults(handler=_train_glow)
    idf = sub.add_parser(
        "train-idf",
        help="train an Integer Discrete Flow (digits or scikit-image photo patches) and save a checkpoint; "
        "runs unchanged under torchrun (DistributedDataParallel)",
        epilog=_examples(
            "flowkernels train-idf --dataset digits --epochs 60 --qat-epochs 5 --out idf.pt",
            "flowkernels train-idf --init idf_float.pt --epochs 0 --qat-epochs 5 --out idf_int.pt",
            "torchrun --nproc_per_node=2 -m flowkernels.cli train-idf --dataset photos-gray --out idf.pt",
        ),
        formatter_class=_ExamplesFormatter,
    )
    from .models.idf import NETS
    from .models.idf_training import IDF_DATASETS

    idf.add_argument(
        "--dataset",
        choices=sorted(IDF_DATASETS),
        default="digits",
        metavar="NAME",
        help=f"training data, from installed packages: {', '.join(sorted(IDF_DATASETS))}",
    )
    _add_training_arguments(
        idf,
        batch_help="images per step, over all processes",
        device_help="cpu or cuda (under torchrun: cuda:LOCAL_RANK)",
    )
    idf.add_argument("--patch-size", type=int, default=32, help="of the photo patches")
    idf.add_argument("--num-scales", type=int, default=None, help="squeeze-and-split scales (default: per dataset)")
    idf.add_argument("--steps-per-scale", type=int, default=None, help="couplings per scale (default: per dataset)")
    idf.add_argument("--hidden", type=int, default=None, help="channels of the networks (default: per dataset)")
    idf.add_argument("--blocks", type=int, default=None, help="residual blocks / dense layers per network")
    idf.add_argument("--num-mixtures", type=int, default=5, help="logistic components of every prior")
    idf.add_argument("--net", choices=NETS, default="resnet", help="coupling network (only resnet has an integer form)")
    idf.add_argument("--max-train", type=int, default=None, help="train on a seeded subset of this many images")
    idf.add_argument("--init", default=None, help="start from this float IDF checkpoint (e.g. a shipped float model)")
    idf.add_argument(
        "--qat-epochs",
        type=int,
        default=0,
        help="then fine-tune this many epochs with fake quantization and save the integer model, whose files "
        "decode on any machine (default: 0, a float model)",
    )
    idf.add_argument("--qat-lr", type=float, default=None, help="learning rate of those epochs (default: lr / 10)")
    idf.add_argument("--out", default="idf-run/idf.pt", help="checkpoint file (written at every evaluation)")
    idf.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run from OUT.resume.pt (written after every float epoch); same weights as an "
        "uninterrupted run",
    )
    idf.add_argument("--no-progress", action="store_true", help="no progress bar")
    idf.set_defaults(handler=_train_idf)
    compress = sub.add_parser(
        "compress",
        help="compress images losslessly (an adaptive context coder, PNG, or an integer discrete flow, "
        "whichever is smallest)",
        description=textwrap.fill(
            "Compress 8-bit images losslessly. Each image is coded with every method tried and the smallest file "
            "is kept: by default the classical ones (an adaptive context coder with rANS, PNG level 9, stored); "
            "--model adds an integer discrete flow (IDF), --method uses one method only. "
            "One input: OUT is the .fkc file (- for standard output). "
            "Several inputs or a folder: OUT is a folder, which gets one .fkc per image (same relative names). "
            "Prints a table: bytes, bits per pixel and per subpixel, size against PNG (level 9), time.",
            _HELP_WIDTH,
        ),
        epilog="examples:\n  flowkernels compress photo.png -o photo.fkc\n"
        "  flowkernels compress shots/ -r -o packed/          # every image under shots/\n"
        "  cat photo.png | flowkernels compress - -o - > photo.fkc\n"
        "  flowkernels compress photo.png -o photo.fkc --model photos-gray   # the flow competes too\n\n"
        "exit status: 0 when every file was compressed, 1 when any failed (one line on stderr each)",
        formatter_class=_ExamplesFormatter,
    )
    compress.add_argument(
        "inputs",
        nargs="+",
        metavar="IN",
        help="images (.png, .tif, .pgm/.ppm, .webp, .jpg (its decoded pixels), .npy uint8 [H, W], [H, W, C] or "
        "[C, H, W]), folders of them, or - for standard input",
    )
    compress.add_argument("-o", "--output", metavar="OUT", required=True, help="the .fkc file, a folder, or -")
    compress.add_argument("-r", "--recursive", action="store_true", help="also the images in sub-folders")
    compress.add_argument(
        "--model",
        metavar="NAME|PATH",
        help="also try this flow: a shipped model's name (flowkernels models) or a checkpoint file (with "
        "--method flow, default: the shipped photograph model for each image's channel count)",
    )
    compress.add_argument(
        "--method",
        choices=METHODS,
        default=None,
        help="use only this coding method (default: the smallest of context, png, stored, and flow with --model)",
    )
    compress.add_argument(
        "--layout", type=str.upper, choices=("HWC", "CHW"), help="layout of a 3-D .npy array (default: guessed)"
    )
    compress.add_argument("--lanes", type=int, default=None, help="patches per model call (default: automatic)")
    compress.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's choice)")
    compress.add_argument("--verify", action="store_true", help="decode each result and check it (twice the time)")
    compress.add_argument("--no-progress", action="store_true", help="no progress bar")
    compress.add_argument("--force", action="store_true", help="replace outputs that exist")
    compress.set_defaults(handler=_compress)
    decompress = sub.add_parser(
        "decompress",
        help="decompress files made by `flowkernels compress`",
        description=textwrap.fill(
            "Decompress .fkc files. One input: OUT is the image (its suffix names the format; - for standard "
            "output, PNG unless --format). Several inputs or a folder: OUT is a folder.",
            _HELP_WIDTH,
        ),
        epilog="examples:\n  flowkernels decompress photo.fkc -o photo.png\n"
        "  flowkernels decompress packed/ -r -o restored/ --format tif\n\n"
        "exit status: 0 when every file was decompressed, 1 when any failed",
        formatter_class=_ExamplesFormatter,
    )
    decompress.add_argument("inputs", nargs="+", metavar="IN", help=".fkc files, folders of them, or -")
    decompress.add_argument(
        "-o",
        "--output",
        metavar="OUT",
        required=True,
        help="the image file (.png, .tif, .pgm/.ppm, .webp, .npy), a folder, or -",
    )
    decompress.add_argument("-r", "--recursive", action="store_true", help="also the files in sub-folders")
    decompress.add_argument(
        "--format",
        type=str.lower,
        choices=("png", "tif", "tiff", "pgm", "ppm", "webp", "npy"),
        help="the images' format (default: OUT's suffix; png for a folder or -)",
    )
    decompress.add_argument(
        "--model",
        metavar="NAME|PATH",
        help="the model the files were compressed with (default: the shipped model whose fingerprint each holds)",
    )
    decompress.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's choice)")
    decompress.add_argument("--no-progress", action="store_true", help="no progress bar")
    decompress.add_argument("--force", action="store_true", help="replace outputs that exist")
    decompress.set_defaults(handler=_decompress)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line. Every error is one line on stderr and exit status 1 (130 when interrupted);
    ``--debug`` shows the traceback instead."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # recorded with benchmark results
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"flowkernels {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # the last line of defence: no traceback for any input
        if args.debug:
            raise
        message = str(error).strip().splitlines()[0] if str(error).strip() else "(no message)"
        print(
            f"flowkernels {args.command}: error: {type(error).__name__}: {message} (--debug shows the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
