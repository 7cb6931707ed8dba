"""Command line: `python -m hwlib {train,evaluate,predict,run} ...` (`--help` on each)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import types
import typing

from .config import PROFILES, ConfigError, EvalConfig, HwlibError, TrainConfig, eval_config, train_config
from .runs import RUN_CONFIG

DATA_DIR_HELP = "local data folder (default $HWLIB_DATA_DIR, else the bundled copy, else the Hub)"

TRAIN_SKIP = {"profile", "output_dir"}


def _field_type(field: dataclasses.Field):
    """The argparse type of a dataclass field (`int | None` → int, tuples → comma-separated strings)."""
    hint = typing.get_type_hints(TrainConfig)[field.name] if field.name in TrainConfig.__dataclass_fields__ \
        else typing.get_type_hints(EvalConfig)[field.name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    base = args[0] if isinstance(hint, types.UnionType) and args else hint
    if typing.get_origin(base) is tuple:
        return str
    if base is bool:
        return _strict_bool
    return base


def _strict_bool(text: str) -> bool:
    """true/false, yes/no, on/off or 1/0; anything else is refused (a typo must not silently mean False)."""
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not a boolean: use true or false")


def _add_fields(parser: argparse.ArgumentParser, cls, skip: set[str]) -> None:
    group = parser.add_argument_group(f"{cls.__name__} overrides (default: the profile's value)")
    for field in dataclasses.fields(cls):
        if field.name in skip:
            continue
        flag = "--" + field.name.replace("_", "-")
        group.add_argument(flag, dest=field.name, type=_field_type(field), default=None,
                           help=f"{field.metadata['help']} (default {field.default!r})")


def _output(args: argparse.Namespace) -> dict:
    """`--output` as the config's output_dir, only when given (the profile's default otherwise)."""
    return {"output_dir": args.output} if args.output else {}


def _overrides(args: argparse.Namespace, cls, skip: set[str] = frozenset()) -> dict:
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
            if f.name not in skip and getattr(args, f.name, None) is not None}


PREDICT_OUTPUT = """output: one row per message, in input order, with the columns
  row         the message's position in the input, counting from 0: the first argument, line of a text file
              or stdin, or data row of a .csv, .jsonl or .parquet file is row 0 (line N of a text file is row
              N-1); errors about a message name it by the same number
  text        the message (from a .csv, .jsonl or .parquet file: every column of the input, in its order, the
              messages' column under its own name)
  predicted   negative, neutral or positive (empty with --allow-empty for an empty message)
  p_negative, p_neutral, p_positive   the three labels' probabilities (they sum to 1)
--json prints these as one JSON object per line; the plain output prints predicted, the probabilities and the
text on one line, with newlines in the text escaped as \\n.

A --file is read twice: once to check and count it before the model loads (bad rows are refused then), once in
chunks of --chunk-rows appended to --output, with a progress bar on stderr; the messages are scored 256 rows at a
time from the file's first row, so neither --chunk-rows, nor a resume, nor the number of processes changes a label
or a probability. If the run stops (Ctrl-C, a kill, a closed lid), the same command continues after the last
complete chunk; a changed input, adapter or setting is refused (--overwrite starts again). One process writes an
output at a time (a lock beside it); the input is never the output. `accelerate launch --num_processes N -m hwlib
predict` splits the scoring between N processes; one output, in input order."""


def parser() -> argparse.ArgumentParser:
    from .predict import CHUNK_ROWS

    root = argparse.ArgumentParser(prog="python -m hwlib", description=__doc__)
    commands = root.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="fine-tune an adapter with TRL's SFTTrainer")
    train.add_argument("--profile", choices=list(PROFILES), help="default: gpu with CUDA, else cpu")
    train.add_argument("--output", help="run folder (default runs/PROFILE)")
    train.add_argument("--resume", action="store_true", help="continue an interrupted run from its last checkpoint")
    train.add_argument("--overwrite", action="store_true", help="replace a run already in the output folder")
    _add_fields(train, TrainConfig, TRAIN_SKIP)

    run = commands.add_parser("run", help="train, evaluate before and after, write the model card")
    run.add_argument("--profile", choices=list(PROFILES), help="default: gpu with CUDA, else cpu")
    run.add_argument("--output", help="run folder (default runs/PROFILE)")
    run.add_argument("--resume", action="store_true", help="continue an interrupted run (training or evaluation)")
    run.add_argument("--overwrite", action="store_true", help="replace a run already in the output folder")
    run.add_argument("--generate-limit", type=int, help="seeded sample for the card's generate method (0: skip)")
    run.add_argument("--eval-limit", type=int, help="score a seeded sample instead of the whole split")
    _add_fields(run, TrainConfig, TRAIN_SKIP)

    evaluate = commands.add_parser("evaluate", help="predict a split and write metrics, predictions and plots")
    who = evaluate.add_mutually_exclusive_group(required=True)
    who.add_argument("--adapter", help="a trained run folder")
    who.add_argument("--model", help="a base model alone: preset, local folder or Hub id")
    evaluate.add_argument("--profile", choices=list(PROFILES))
    evaluate.add_argument("--output", required=True, help="folder for predictions.csv, metrics.json, PNGs")
    evaluate.add_argument("--base", help=f"the base model, for an adapter folder without {RUN_CONFIG}")
    evaluate.add_argument("--quantize", default="nf4", help="base model weights: nf4 (default) or none")
    evaluate.add_argument("--data-dir", help=DATA_DIR_HELP)
    _add_fields(evaluate, EvalConfig, set())

    commands.add_parser("profiles", help="the named profiles (what each changes, why, how long it takes), the "
                                     "variants and the base models")

    search = commands.add_parser("search", help="the validation search behind the cpu profile (never reads test)")
    search.add_argument("--output", default="runs/search", help="folder for the trials and search.json")
    search.add_argument("--data-dir", help=DATA_DIR_HELP)

    curve = commands.add_parser("curve", help="learning curve: validation macro-F1 against training rows (never "
                                              "reads test)")
    curve.add_argument("--output", default="runs/curve", help="folder for the points and curve.json")
    curve.add_argument("--sizes", default="600,1500,3000", help="training rows per point, comma-separated")
    curve.add_argument("--sampling", default="balanced,stratified", help="balanced, stratified or both")
    curve.add_argument("--seeds", default="42", help="seeds, comma-separated (several give mean ± sd)")
    curve.add_argument("--wide", action="store_true", help="LoRA on every attention and MLP projection")
    curve.add_argument("--data-dir", help=DATA_DIR_HELP)

    variants = commands.add_parser("variants", help="one-change variants of the cpu recipe, scored on validation "
                                                     "(never reads test)")
    variants.add_argument("--profile", choices=list(PROFILES), default="cpu", help="the recipe varied (default cpu)")
    variants.add_argument("--output", default="runs/variants", help="folder for the runs and variants.json")
    variants.add_argument("--names", help="variants, comma-separated (default: all; `profiles` lists them)")
    variants.add_argument("--seeds", default="42", help="seeds, comma-separated")
    variants.add_argument("--data-dir", help=DATA_DIR_HELP)

    predict = commands.add_parser(
        "predict", help="classify messages given as arguments, in a file, or on stdin",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=PREDICT_OUTPUT)
    predict.add_argument("texts", nargs="*", help="messages (none: read --file, else lines from stdin)")
    predict.add_argument("--adapter", required=True,
                         help="a trained run folder, or a shipped adapter by name (smollm2-135m-cpu), from any folder")
    predict.add_argument("--base", help=f"the base model, for an adapter folder without {RUN_CONFIG}")
    predict.add_argument("--file", help="messages in a .csv, .jsonl or .parquet file (column --text-column), or a "
                                        "text file with one message per line")
    predict.add_argument("--text-column", default="text", help="the column that holds the messages (default text)")
    predict.add_argument("--output", help="write the predictions to a .csv or .jsonl file, chunk by chunk; an "
                                          "interrupted run resumes when run again")
    predict.add_argument("--allow-empty", action="store_true",
                         help="report empty messages as 'empty' instead of refusing the input")
    predict.add_argument("--max-length", type=int, default=256,
                         help="tokens of prompt + message + answer; longer messages are truncated (default 256)")
    predict.add_argument("--json", action="store_true", help="print one JSON object per message")
    predict.add_argument("--quiet", action="store_true", help="no progress bar on stderr (a --file shows one)")
    predict.add_argument("--overwrite", action="store_true",
                         help="replace an existing --output (an unfinished one resumes without it)")
    predict.add_argument("--chunk-rows", type=int, default=CHUNK_ROWS,
                         help=f"rows of --file scored and written at a time (default {CHUNK_ROWS})")
    return root


def main(argv: list[str] | None = None) -> int:
    root = parser()
    args, extra = root.parse_known_args(argv)
    if extra:  # a misspelled option: the subcommand's own usage, not the top-level one
        root._subparsers._group_actions[0].choices[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    _stop_cleanly_on_sigterm()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "urllib3", "datasets", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return COMMANDS[args.command](args)
    except HwlibError as error:
        if os.environ.get("HWLIB_TRACEBACK") == "1":
            raise
        print(f"hwlib: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"hwlib: stopped; {INTERRUPTED.get(args.command, 'nothing was kept')}", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`... | head -1`): stop quietly, as other command-line tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


# What an interrupted command leaves behind and how to carry on, by command.
INTERRUPTED = {
    "train": "an interrupted training continues with --resume from its last checkpoint",
    "run": "an interrupted run continues with --resume (training from its last checkpoint, finished evaluations kept)",
    "predict": "an unfinished --output continues when the same command is run again; messages given as arguments "
               "or on stdin are scored again",
    "evaluate": "nothing was written; run the same command again",
    **dict.fromkeys(("search", "variants", "curve"), "finished trials are kept, and the same command continues with "
                    "the unfinished one from its last checkpoint"),
}


def _stop_cleanly_on_sigterm() -> None:
    """SIGTERM (a scheduler, `kill`) unwinds like Ctrl-C, so `finally` blocks remove temporary files."""
    import signal

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def _train(args) -> int:
    from .train import train

    config = train_config(args.profile, **_output(args), **_overrides(args, TrainConfig, TRAIN_SKIP))
    output = train(config, resume=args.resume, overwrite=args.overwrite)
    if os.environ.get("RANK", "0") == "0":  # under `accelerate launch`, one line, not one per process
        print(f"adapter saved in {output}")
    return 0


def _run(args) -> int:
    from .pipeline import run

    config = train_config(args.profile, **_output(args), **_overrides(args, TrainConfig, TRAIN_SKIP))
    given = {"limit": args.eval_limit, "generate_limit": args.generate_limit}
    evaluation = eval_config(config.profile, **{k: v for k, v in given.items() if v is not None})
    run(config, evaluation, resume=args.resume, overwrite=args.overwrite)
    return 0


def _evaluate(args) -> int:
    from .evaluate import evaluate
    from .models import adapter_base_model, load_adapter, load_model

    config = eval_config(args.profile, **_overrides(args, EvalConfig))
    if args.adapter:
        model, tokenizer = load_adapter(args.adapter, merged=config.merged, base=args.base)
        name = args.base or adapter_base_model(args.adapter)
    else:
        quantize = None if str(args.quantize).lower() == "none" else args.quantize
        model, tokenizer = load_model(args.model, quantize, merged=config.merged)
        name = args.model
    metrics = evaluate(model, tokenizer, config, args.output, name, args.adapter, args.data_dir)
    keys = ("macro_f1", "macro_recall", "accuracy", "invalid_rate", "rows", "method", "tweets_per_s")
    print(json.dumps({k: metrics[k] for k in keys}, indent=2))
    return 0


def _predict(args) -> int:
    import pandas as pd

    from .evaluate import EvalError, check_texts
    from .predict import (Classifier, check_output_path, count_languages, plan_file, prediction_settings, processes,
                          run_file, warn_if_not_english, write_predictions)
    from .runs import resolve_adapter

    if args.file and args.texts:
        raise EvalError(f"messages given both as arguments ({len(args.texts)}) and with --file: use one of the two")
    if args.output:
        check_output_path(args.output, args.file)
    adapter = resolve_adapter(args.adapter)
    job, rows = None, None
    if args.file:  # the whole file is checked and counted here, before the model loads
        job = plan_file(args.file, args.output, args.text_column, args.allow_empty, args.overwrite,
                        prediction_settings(adapter, args.base, args.max_length), args.chunk_rows)
    elif args.texts:
        rows = pd.DataFrame({"row": range(len(args.texts)), "text": args.texts})
    elif not sys.stdin.isatty():
        from .data import split_lines

        lines = split_lines(sys.stdin.read())
        rows = pd.DataFrame({"row": range(len(lines)), "text": lines})
    else:
        raise EvalError("no messages: pass them as arguments, with --file, or on stdin")
    if rows is not None:
        if rows.empty:
            raise EvalError("no messages: the input is empty")
        check_texts(rows["text"].tolist(), "report" if args.allow_empty else "refuse", rows["row"].tolist())
        warn_if_not_english(count_languages(rows["text"].tolist()))
    classifier = Classifier(adapter, base=args.base, max_length=args.max_length)
    if job is not None:
        for chunk in run_file(job, classifier, progress=not args.quiet):
            if not args.output:
                _print_predictions(chunk, job.text_column, args.json)
        if args.output and processes().is_main_process:
            print(f"predictions written to {job.output}")
        return 0
    table = classifier.label_rows(rows, "text", args.allow_empty)
    if args.output:
        print(f"predictions written to {write_predictions(table, args.output)}")
    else:
        _print_predictions(table, "text", args.json)
    return 0


def _print_predictions(table, text_column: str, as_json: bool) -> None:
    from .predict import processes

    if not processes().is_main_process:
        return
    for record in table.to_dict(orient="records"):
        if as_json:
            print(json.dumps({k: (None if isinstance(v, float) and v != v else v) for k, v in record.items()},
                             ensure_ascii=False, default=str))
        else:
            probs = "  ".join(f"{k[2:]} {v:.3f}" for k, v in record.items() if k.startswith("p_") and v == v)
            text = record[text_column].replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
            print(f"{record['predicted']:<8}  {probs}  {text}", flush=False)  # one line per message: newlines escaped
    sys.stdout.flush()


def _profiles(args) -> int:
    from .config import default_profile
    from .train import profile_note

    from .search import VARIANTS

    for name, settings in PROFILES.items():
        marker = "  (default here)" if name == default_profile() else ""
        print(f"{name}{marker}\n  {profile_note(name)}")
        print("  " + ", ".join(f"{k}={v}" for k, v in settings.items()) + "\n")
    print("variants of cpu, one change each, compared on validation (python -m hwlib variants --names NAME):")
    for name, changes in VARIANTS.items():
        print(f"  {name}: " + ", ".join(f"{k}={v}" for k, v in changes.items()))
    from .models import PRESETS

    print("\nbase models (--model NAME, or a local folder or Hub id), with the layers the card's LoRA adapts in each:")
    for preset in PRESETS.values():
        print(f"  {preset.name}: {preset.about}\n    LoRA on {', '.join(preset.lora_targets)}")
    return 0


def _variants(args) -> int:
    from .search import VARIANTS, card_recipe_point, run_variants, variants_table
    from .runs import shipped_adapter

    names = tuple(n.strip() for n in (args.names or ",".join(VARIANTS)).split(",") if n.strip())
    record = run_variants(args.output, names, _int_list(args.seeds, "seeds"), args.data_dir, profile=args.profile)
    recipe = json.loads((shipped_adapter("cpu") / "seeds.json").read_text())
    print(variants_table(record, recipe, card_recipe_point() if args.profile == "cpu" else None))
    return 0


def _search(args) -> int:
    from .search import run_search, search_table

    print(search_table(run_search(args.output, args.data_dir)))
    return 0


def _int_list(value: str, name: str) -> tuple[int, ...]:
    try:
        numbers = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        numbers = ()
    if not numbers or min(numbers) < 1:
        raise ConfigError(f"--{name} {value!r}: give positive whole numbers separated by commas, e.g. 600,1500")
    return numbers


def _curve(args) -> int:
    from .search import SAMPLINGS, curve_table, run_curve

    samplings = tuple(s.strip() for s in args.sampling.split(",") if s.strip())
    if not samplings or set(samplings) - set(SAMPLINGS):
        raise ConfigError(f"--sampling {args.sampling!r}: choose from {', '.join(SAMPLINGS)}, comma-separated")
    rows = run_curve(args.output, _int_list(args.sizes, "sizes"), samplings, _int_list(args.seeds, "seeds"),
                     args.wide, args.data_dir)
    print(curve_table(rows))
    return 0


COMMANDS = {"train": _train, "run": _run, "evaluate": _evaluate, "predict": _predict, "search": _search,
            "variants": _variants,
            "curve": _curve, "profiles": _profiles}

if __name__ == "__main__":
    sys.exit(main())
