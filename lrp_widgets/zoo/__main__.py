"""``python -m lrp_widgets.zoo build [--only NAME ...]``, ``... list`` and ``... study [NAME ...]``."""
from __future__ import annotations

import argparse
import sys

from .build import RECIPES, build, read_manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lrp_widgets.zoo", description="The lrp_widgets model zoo.")
    commands = parser.add_subparsers(dest="command", required=True)
    build_command = commands.add_parser("build", help="retrain zoo models and write weights + manifest")
    build_command.add_argument("--only", nargs="+", metavar="NAME", help="rebuild only these models")
    build_command.add_argument("--no-progress", action="store_true", help="no progress bars")
    build_command.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    commands.add_parser("list", help="list the recipes and, where built, their test accuracy")
    study_command = commands.add_parser("study", help="compute measured findings over seeds (results/<name>.json)")
    study_command.add_argument("names", nargs="*", metavar="NAME", help="studies to run (default: all)")
    study_command.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    arguments = parser.parse_args(argv)

    if arguments.command == "study":
        from .studies import STUDIES, run_study

        for name in arguments.names or list(STUDIES):
            if name not in STUDIES:
                print(f"no study named {name!r}; known: {', '.join(STUDIES)}", file=sys.stderr)
                return 2
            document = run_study(name, threads=arguments.threads)
            print(f"{name:24s} {document['seconds']:7.1f} s  {document['description']}", flush=True)
        return 0

    if arguments.command == "list":
        manifest = read_manifest()
        for name, recipe in RECIPES.items():
            record = manifest.get(name)
            status = f"test accuracy {record['test_accuracy']:.3f}" if record else "not built"
            print(f"{name:28s} {status:22s} {recipe.description}")
        return 0

    try:
        built = build(only=arguments.only, progress=not arguments.no_progress, threads=arguments.threads)
    except KeyError as error:
        print(error.args[0], file=sys.stderr)
        return 2
    for name, record in built.items():
        print(
            f"{name:28s} test accuracy {record['test_accuracy']:.3f}  sparsity {record['sparsity']:.3f}  "
            f"({record['train_seconds']} s)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
