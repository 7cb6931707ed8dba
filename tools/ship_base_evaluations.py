"""The base model's evaluations a profile's main job needs, computed (or taken from the user's cache, where an earlier
run kept them) and copied into data/base-evaluations/, so that `python -m hwlib run` in a fresh clone reuses them.

    python tools/ship_base_evaluations.py --profile cpu

Each shipped folder holds metrics.json (with the key it was computed under) and examples.json; predictions stay in
the user's cache. A changed base, setting, prompt or data gives another key, and the run computes its own again.
"""

import argparse
import shutil
import tempfile
from pathlib import Path

from hwlib import pipeline
from hwlib.config import eval_config, train_config
from hwlib.runs import EVAL, shipped_adapter

SHIPPED = Path(__file__).resolve().parent.parent / "data" / pipeline.BASE_EVALUATIONS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="cpu", help="a profile that ships an adapter (default cpu)")
    parser.add_argument("--data-dir", help="local data folder (default: the bundled copy)")
    args = parser.parse_args()
    adapter = shipped_adapter(args.profile)
    if adapter is None:
        parser.error(f"profile {args.profile!r} ships no adapter: its base model is not embedded")
    config = train_config(args.profile, data_dir=args.data_dir)
    with tempfile.TemporaryDirectory() as scratch:
        run_dir = Path(scratch) / "run"  # the shipped run's record: the base model and its quantization
        shutil.copytree(adapter, run_dir, ignore=shutil.ignore_patterns(EVAL))
        for title, (who, settings) in pipeline.evaluation_plans(eval_config(args.profile)).items():
            if who != "base":
                continue
            pipeline.evaluate_one(run_dir, who, settings, config.data_dir)
            key = pipeline.base_evaluation_key(config.model, config.quantize, settings, config.data_dir)
            kept = pipeline.stored_base_evaluation(key)
            target = SHIPPED / pipeline.key_id(key)
            if kept.resolve() != target.resolve():
                target.mkdir(parents=True, exist_ok=True)
                for name in pipeline.BASE_EVALUATION_FILES[:2]:
                    shutil.copyfile(kept / name, target / name)
            print(f"{title}: {target.relative_to(SHIPPED.parent.parent)}")


if __name__ == "__main__":
    main()
