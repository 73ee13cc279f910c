"""python -m valueharms.estimate: the cost estimate of a planned run (see the package)."""

from __future__ import annotations

import argparse
import json
import logging
import sys

EPILOG = """\
How it is computed (docs/estimate.md):
  training tokens = examples x epochs x tokens per example (cut at max_length); FLOPs =
  4 x params x tokens for a LoRA step (+2 with gradient checkpointing, +2 for DPO's
  reference model), generation and judging 2 x params x tokens; GPU-hours = FLOPs /
  (peak bf16 FLOP/s x MFU) / 3600. Generated tokens assume every reply runs to
  max_new_tokens: an upper bound. Dollars come from a dated price table: check it.

Calibrating the MFU: time real steps on your GPU, e.g.
  python bench/train_throughput.py --device cuda --model llama-1b --steps 64 --peak-tflops 989
and take MFU = 4 x params x (real tokens/s) / peak FLOP/s: the bench prints MFU with the
6 x params convention of a full fine-tune, so multiply its figure by 4/6. For generation,
divide 2 x params x (tokens/s of a generate job's log) by the peak. Then pass --mfu-training
/ --mfu-generation or set estimate.mfu in a config file.
"""


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m valueharms.estimate",
        description="Tokens, GPU-hours, API cost and disk of a planned run, before launch.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--configfile",
        nargs="+",
        action="extend",
        default=[],
        help="config files, merged in order like snakemake's --configfile "
        "(default: config/demo.yaml)",
    )
    ap.add_argument(
        "--gpu", help="GPU of resources/estimate/gpus.yaml (default: estimate.gpu, h100)"
    )
    ap.add_argument("--format", choices=("text", "json"), default="text")
    ap.add_argument("--mfu-training", type=float, help="MFU of training (default 0.35)")
    ap.add_argument("--mfu-generation", type=float, help="MFU of generation (default 0.15)")
    ap.add_argument("--chars-per-token", type=float, help="characters per token (default 4)")
    ap.add_argument(
        "--tokenizer", help="a local tokenizer directory to measure lengths with, instead"
    )
    ap.add_argument("--out", help="also write the output to this file")
    return ap


def main(argv: list[str] | None = None) -> int:
    from valueharms.config import ConfigError
    from valueharms.data.sources import DataError
    from valueharms.estimate import EstimateError, load_config, run

    args = parser().parse_args(argv)
    over: dict = {}
    mfu = {"training": args.mfu_training, "generation": args.mfu_generation}
    if any(v is not None for v in mfu.values()):
        over["mfu"] = {k: v for k, v in mfu.items() if v is not None}
    if args.chars_per_token is not None:
        over["chars_per_token"] = args.chars_per_token
    # The loaders log every dropped or kept row; the estimate needs only the counts. The
    # level is restored after: main() also runs inside other programs (and tests).
    quiet = logging.getLogger("valueharms")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        config = load_config(args.configfile, over)
        est = run(config, args.configfile or ["config/demo.yaml"], args.gpu, args.tokenizer)
    except (ConfigError, DataError, EstimateError) as err:
        print(f"valueharms.estimate: {err}", file=sys.stderr)
        return 2
    finally:
        quiet.setLevel(level)
    out = json.dumps(est.as_dict(), indent=2) + "\n" if args.format == "json" else est.text()
    sys.stdout.write(out)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
