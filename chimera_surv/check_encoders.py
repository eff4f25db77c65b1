"""`python -m chimera_surv.check_encoders [NAME ...] [--model model]`: do encoder weights load (strictly, offline)?

Why: a missing or mismatched weight file is not fatal in the container (the case goes on without slides, logged as
DEGRADED), so it is checked here before training and before upload. NAME defaults to every encoder the bundles
under `--model` need. Each encoder gives one line, `NAME: weights OK (file)` or `error: NAME: cause`; exit 2 when
any fails. (Not `python -m chimera_surv.encoders`: that package imports torch before a path can be checked.)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from chimera_surv.cli import Parser, UserError, one_line, require_path, run_cli


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m chimera_surv.check_encoders", description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help="encoders to check (default: those the bundles "
                                                                 "under --model need)")
    parser.add_argument("--model", type=Path, default=Path("model"),
                        help="the model folder; weights are read from <model>/encoders/<name>/ (default: model)")
    parser.add_argument("--device", default="cpu", help="torch device to load on (default: cpu)")
    parser.add_argument("--debug", action="store_true", help="show the traceback of a user error")
    args = parser.parse_args(argv)
    return run_cli(lambda: _run(args), debug=args.debug)


def _run(args: argparse.Namespace) -> int:
    require_path(args.model, "--model", "dir")  # before torch is imported (seconds)
    from chimera_surv.model_dir import needed_encoders

    names = args.names or needed_encoders(args.model)
    if not names:
        raise UserError(f"--model: no bundle under {args.model} needs an encoder; name one (e.g. uni)")
    from chimera_surv.encoders import MissingWeights, WeightFileError, WeightMismatch, get_spec, load_encoder
    from chimera_surv.encoders.base import find_weight_file

    for name in names:
        try:
            get_spec(name)
        except KeyError as exc:
            raise UserError(f"NAME: {exc.args[0] if exc.args else name}") from exc
    failed = False
    root = args.model / "encoders"
    for name in names:
        if get_spec(name).seeded and find_weight_file(name, root) is None:
            print(f"{name}: the seeded test encoder, built without a file (demo only, never for upload)")
            continue
        try:
            load_encoder(name, root, args.device)
        except (MissingWeights, WeightMismatch, WeightFileError) as exc:
            print(f"error: {name}: {one_line(exc)}", file=sys.stderr)
            failed = True
            continue
        print(f"{name}: weights OK ({find_weight_file(name, root)})")
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
