"""``spotlight-sagemaker``: the local workflow from the command line (no Docker, no AWS).

Subcommands::

    spotlight-sagemaker prepare-movielens [--data-dir DIR] OUT.csv [--split TRAIN.csv TEST.csv]
    spotlight-sagemaker train DATA [--validation DATA] [-p name=value ...] [--root DIR]
    spotlight-sagemaker transform --model MODEL.tar.gz REQUESTS [--output DIR]
    spotlight-sagemaker recommend --model MODEL.tar.gz --user 685 --user 302 [--top-n 5]
    spotlight-sagemaker evaluate --model MODEL.tar.gz --train TRAIN.csv --test TEST.csv

``train`` and ``transform`` run SageMaker jobs in the embedded local mode
(:mod:`spotlight_sagemaker.local`): the real training toolkit and model server on this
machine. ``recommend`` and ``evaluate`` load the artifact in-process. Exit status: 0 done,
1 the job or command failed, 2 bad arguments, for every subcommand alike: a missing required
argument (argparse), an unknown option or choice, a ``--model`` or input path that does not
exist, a bad hyperparameter. The error goes to stderr as ``spotlight-sagemaker <command>:
error: <message>``, the line argparse writes after the usage for its own errors.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from . import __version__, defaults
from .contract import content_types

PROG = "spotlight-sagemaker"


class CommandError(Exception):
    """A failure to report in one line (exit status 1)."""


def _root(args: argparse.Namespace) -> Path | None:
    return Path(args.root).expanduser().resolve() if args.root else None


def cmd_prepare_movielens(args: argparse.Namespace) -> int:
    """Write MovieLens 100k ratings > 2 as user_id,item_id CSV (optionally the 80/20 split)."""
    from . import movielens

    folder = movielens.fetch_ml100k(args.data_dir, cache_dir=args.cache_dir)
    n = movielens.prepare_interactions(folder, args.out)
    print(f"{args.out}: {n} rows from {folder}")
    if args.split:
        from .core import Interactions, random_train_test_split

        train, test = random_train_test_split(
            Interactions.from_csv(args.out), args.test_fraction, random_state=args.seed
        )
        for part, path in zip((train, test), args.split, strict=True):
            part.to_csv(path)
            print(f"{path}: {len(part)} rows")
    return 0


def _hyperparameters(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"hyperparameter {pair!r} must look like name=value")
        out[name.strip()] = value.strip()
    return out


def cmd_train(args: argparse.Namespace) -> int:
    """Train with SpotlightEstimator in local mode; prints where model.tar.gz is."""
    from sagemaker.exceptions import UnexpectedStatusException

    from . import SpotlightEstimator
    from .local import local_session

    session = local_session(args.instance_type, mode="embedded", root=_root(args))
    estimator = SpotlightEstimator(
        instance_type=args.instance_type,
        sagemaker_session=session,
        hyperparameters=_hyperparameters(args.hyperparameter),
        base_job_name=args.job_name,
    )
    inputs: Any = args.data
    if args.validation:
        inputs = {"training": args.data, "validation": args.validation}
    try:
        estimator.fit(inputs, logs="All")
    except UnexpectedStatusException as exc:
        raise CommandError(str(exc)) from None
    print(f"model_data: {estimator.model_data}")
    return 0


def cmd_transform(args: argparse.Namespace) -> int:
    """Batch Transform a file or folder of JSON-lines requests with a local model server."""
    from sagemaker.exceptions import UnexpectedStatusException

    from . import SpotlightModel
    from .local import local_session

    model_path = _model_path(args.model, folder_ok=False)
    session = local_session(args.instance_type, mode="embedded", root=_root(args))
    assert session is not None  # only mode="docker" gives None
    model = SpotlightModel("file://" + str(model_path), sagemaker_session=session)
    kwargs: dict[str, Any] = {"strategy": args.strategy, "accept": args.accept}
    if args.max_payload is not None:
        kwargs["max_payload"] = args.max_payload
    if args.output:
        kwargs["output_path"] = "file://" + str(Path(args.output).expanduser().resolve())
    transformer = model.transformer(instance_type=args.instance_type, **kwargs)
    try:
        transformer.transform(args.data, wait=True, logs=False)
    except UnexpectedStatusException as exc:
        raise CommandError(str(exc)) from None
    print(f"output: {session.local_path(transformer.output_path)}")
    return 0


def _model_path(value: str, folder_ok: bool) -> Path:
    """The ``--model`` path; a usage error (exit status 2) when it is not there."""
    path = Path(value).expanduser().resolve()
    if path.is_file() or (folder_ok and path.is_dir()):
        return path
    if path.is_dir():
        raise FileNotFoundError(f"--model {value!r} is a folder: give a model.tar.gz")
    want = "a model.tar.gz or an artifact folder" if folder_ok else "a model.tar.gz"
    raise FileNotFoundError(f"--model {value!r} does not exist: give {want}")


def cmd_recommend(args: argparse.Namespace) -> int:
    """Top-N for users (or for a new visitor's --history) from a model.tar.gz, in-process; CSV
    user_id,item_id,score[,title]."""
    from .local.workflow import load_artifact

    if not args.user and args.history is None:
        raise ValueError("give --user (repeatable) or --history")
    if args.history is not None and args.user and len(args.user) > 1:
        raise ValueError("--history is one visitor: give at most one --user (its label)")
    model = load_artifact(_model_path(args.model, folder_ok=True))
    titles = {}
    if args.movielens_dir:
        from .movielens import load_titles

        titles = load_titles(args.movielens_dir)
    lists = {
        "items": args.items,
        "exclude_items": args.exclude_items,
        "include_items": args.include_items,
    }
    if args.history is not None:
        one = model.recommend_from_history(
            args.history,
            n=args.top_n or 10,
            exclude_history=not args.include_seen,
            unknown=args.unknown,
            query_id=args.user[0] if args.user else "",
            **lists,
        )
        recs = [] if one is None else [one]
    else:
        found = model.recommend(
            args.user,
            n=args.top_n,
            exclude_seen=True if args.exclude_seen else None if not args.include_seen else False,
            unknown=args.unknown,
            **lists,
        )
        assert isinstance(found, list)  # --user is a list (action="append"): one row per user
        recs = found
    for rec in recs:
        rows = [
            (item, f"{float(score):.6f}")
            for item, score in zip(rec.item_ids, rec.scores, strict=True)
        ]
        rows += [(item, "") for item in rec.unknown_items]  # candidates it cannot score: last
        for item, score in rows:
            row = [str(rec.query_id), str(item), score]
            if titles:
                row.append(titles.get(str(item), ""))
            print(",".join(_csv_field(v) for v in row))
    return 0


def _id_list(value: str) -> list[str]:
    """``--items 50,172,1``: comma-separated ids."""
    ids = [v.strip() for v in value.split(",")]
    if not all(ids):
        raise argparse.ArgumentTypeError(f"expected comma-separated ids, got {value!r}")
    return ids


def _csv_field(value: str) -> str:
    return f'"{value.replace(chr(34), chr(34) * 2)}"' if any(c in value for c in ',"\n') else value


def cmd_evaluate(args: argparse.Namespace) -> int:
    """The protocol metrics of a model.tar.gz and of popularity on a test file."""
    from .core import Interactions, random_train_test_split
    from .local.workflow import evaluate_against_popularity, format_table, load_artifact

    model = load_artifact(_model_path(args.model, folder_ok=True))
    if args.data:
        train, test = random_train_test_split(
            Interactions.from_csv(args.data), args.test_fraction, random_state=args.seed
        )
    elif args.train and args.test:
        train_raw, test_raw = Interactions.from_csv(args.train), Interactions.from_csv(args.test)
        train, test = _shared_vocabulary(train_raw, test_raw)
    else:
        raise ValueError("give --train and --test, or --data (split with --seed)")
    metrics = evaluate_against_popularity(model, train, test, k=args.k)
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        keys = [k for k in metrics["model"] if k != "users"]
        rows = [[name, *[m[k] for k in keys]] for name, m in metrics.items()]
        print(format_table(["model", *keys], rows))
        print(f"{int(metrics['model']['users'])} test users")
    return 0


def _shared_vocabulary(train: Any, test: Any) -> tuple[Any, Any]:
    from .core import IdMap, Interactions

    users = IdMap([*train.user_map.ids.tolist(), *test.user_map.ids.tolist()])
    items = IdMap([*train.item_map.ids.tolist(), *test.item_map.ids.tolist()])

    def remap(part: Any) -> Any:
        return Interactions.from_arrays(
            part.user_map.ids[part.user_ids],
            part.item_map.ids[part.item_ids],
            user_map=users,
            item_map=items,
        )

    return remap(train), remap(test)


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value!r}")
    return number


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("prepare-movielens", help=cmd_prepare_movielens.__doc__)
    p.add_argument("out", help="CSV to write (user_id,item_id)")
    p.add_argument("--data-dir", help="MovieLens 100k folder (default: download + cache)")
    p.add_argument("--cache-dir")
    p.add_argument(
        "--split",
        nargs=2,
        metavar=("TRAIN", "TEST"),
        help="also write the evaluation protocol's train/test split",
    )
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=42)
    p.set_defaults(func=cmd_prepare_movielens)

    for name, func in (("train", cmd_train), ("transform", cmd_transform)):
        p = sub.add_parser(name, help=func.__doc__)
        p.add_argument("--instance-type", choices=defaults.LOCAL_INSTANCE_TYPES, default="local")
        p.add_argument(
            "--root", help="local mode folder (default $SPOTLIGHT_LOCAL_DIR or ./spotlight-local)"
        )
        if name == "train":
            p.add_argument("data", help="CSV file or folder (user_id,item_id)")
            p.add_argument("--validation", help="validation CSV file or folder")
            p.add_argument(
                "-p",
                "--hyperparameter",
                action="append",
                metavar="NAME=VALUE",
                help="e.g. -p n_iter=10 -p loss=bpr (repeatable)",
            )
            p.add_argument("--job-name", default="spotlight", help="job name prefix")
        else:
            p.add_argument("data", help="JSON-lines request file or folder")
            p.add_argument("--model", required=True, help="model.tar.gz of a training job")
            p.add_argument("--output", help="output folder (default <root>/<job name>)")
            p.add_argument(
                "--strategy", choices=("MultiRecord", "SingleRecord"), default="MultiRecord"
            )
            p.add_argument(
                "--accept",
                default=content_types.CSV,
                choices=(content_types.CSV, content_types.JSONLINES),
            )
            p.add_argument("--max-payload", type=_positive_int, help="MaxPayloadInMB")
        p.set_defaults(func=func)

    p = sub.add_parser("recommend", help=cmd_recommend.__doc__)
    p.add_argument("--model", required=True, help="model.tar.gz or artifact folder")
    p.add_argument("--user", action="append", help="user id (repeatable)")
    p.add_argument(
        "--history",
        type=_id_list,
        help="a visitor the model does not know: the items they interacted with (comma-"
        "separated); recommends from a user vector folded in from them",
    )
    p.add_argument("--items", type=_id_list, help="rank exactly these candidates (comma-separated)")
    p.add_argument("--exclude-items", type=_id_list, help="never recommend these")
    p.add_argument("--include-items", type=_id_list, help="recommend only among these")
    p.add_argument(
        "--top-n",
        type=_positive_int,
        help="items per user (default 10; with --items every candidate)",
    )
    seen = p.add_mutually_exclusive_group()
    seen.add_argument(
        "--include-seen", action="store_true", help="keep items the user rated (or the history)"
    )
    seen.add_argument(
        "--exclude-seen",
        action="store_true",
        help="with --items: drop the candidates already rated",
    )
    p.add_argument(
        "--unknown",
        choices=("fallback", "skip", "error", "popular"),
        default="fallback",
        help="unknown users: the most popular items (fallback, the default; also spelled "
        "popular), skipped, or an error",
    )
    p.add_argument("--movielens-dir", help="add MovieLens titles from this folder's u.item")
    p.set_defaults(func=cmd_recommend)

    p = sub.add_parser("evaluate", help=cmd_evaluate.__doc__)
    p.add_argument("--model", required=True, help="model.tar.gz or artifact folder")
    p.add_argument("--train", help="the rows the model was trained on")
    p.add_argument("--test", help="held-out rows")
    p.add_argument("--data", help="or: all rows, split here with --seed/--test-fraction")
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("-k", type=_positive_int, default=10)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_evaluate)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the console script; returns the exit status."""
    os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse's usage errors (2), --help and --version (0)
        return 0 if exc.code is None else exc.code if isinstance(exc.code, int) else 2
    try:
        return args.func(args)
    except CommandError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    except (ValueError, TypeError, FileNotFoundError, KeyError) as exc:
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
