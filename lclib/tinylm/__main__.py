"""Train or evaluate TinyLM.

    python -m lclib.tinylm train [--max-copy-steps N] [--task-steps N] [--out DIR] [--seed S]
    python -m lclib.tinylm eval [--dir DIR]
"""

from __future__ import annotations

import argparse
import json

from . import tasks
from .training import CHECKPOINT, load, metrics_for, save, train


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lclib.tinylm", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_train = sub.add_parser("train", help="train from scratch and save a checkpoint")
    p_train.add_argument("--max-copy-steps", type=int, default=3000,
                         help="most steps on repeated segments (stops once the induction head "
                              "has formed)")
    p_train.add_argument("--task-steps", type=int, default=500,
                         help="optimizer steps on the retrieval tasks")
    p_train.add_argument("--threads", type=int, help="CPU threads (default: torch's)")
    p_train.add_argument("--seed", type=int, default=0)
    p_train.add_argument("--out", default=str(CHECKPOINT), help="checkpoint folder")
    p_train.add_argument("--eval-samples", type=int, default=32,
                         help="samples per (task, length, depth) cell of the saved metrics")
    p_eval = sub.add_parser("eval", help="accuracy of a checkpoint over lengths x depths")
    p_eval.add_argument("--dir", default=str(CHECKPOINT), help="checkpoint folder")
    args = parser.parse_args(argv)
    if args.command == "train":
        model, losses, seconds = train(args.max_copy_steps, args.task_steps, seed=args.seed,
                                       threads=args.threads)
        metrics = metrics_for(model, losses, seconds, args.seed, args.task_steps,
                              args.eval_samples)
        print(json.dumps(metrics, indent=2))
        print(f"saved to {save(model, args.out, metrics)}")
    else:
        model = load(args.dir)
        n = model.config.max_position_embeddings
        for task in tasks.TASKS:
            acc = tasks.evaluate(model, task, lengths=(n, 2 * n, 4 * n))
            print(task, {k: round(v, 3) for k, v in acc.by_length().items()})


if __name__ == "__main__":
    main()
