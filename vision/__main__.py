"""``python -m vision <verb>``: the offline face weights.

  prepare-weights   link the weight files from the installed face-recognition-models package into
                    DEEPFACE_HOME/.deepface/weights (nothing is downloaded)
  check-weights     exit 1 (with what is missing) unless the weights are in place
  embed FILE...     embed photos and print each face's box, quality and distance to the first photo (diagnostics)
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from core.log import configure_logging
from core.settings import Settings
from vision.setup import WeightsMissing, check_weights, missing_weights, prepare_weights, weights_dir


async def _embed(settings: Settings, files: list[str]) -> int:
    from vision import faces, runtime
    from vision.index import unit

    from vision.pool import EmbeddingPool
    from vision.setup import deepface_home

    check_weights(settings)  # no database: only the embedding process
    faces.configure(EmbeddingPool(str(deepface_home(settings)), workers=1, queue=len(files)), settings.face_max_bytes)
    first = None
    try:
        for name in files:
            try:
                vec = await faces.embed(Path(name).read_bytes())
            except faces.FaceError as exc:
                print(f"{name}: {exc.code} ({exc.message})")
                continue
            first = vec if first is None else first
            distance = 1.0 - float(unit(first) @ unit(vec))
            print(f"{name}: box={vec.box} quality={vec.quality} faces={vec.faces} distance_to_first={distance:.3f}")
    finally:
        await runtime.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vision", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="verb", required=True)
    sub.add_parser("prepare-weights")
    sub.add_parser("check-weights")
    embed = sub.add_parser("embed")
    embed.add_argument("files", nargs="+")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    configure_logging(settings.log_level)
    if args.verb == "prepare-weights":
        folder = prepare_weights(settings)
        missing = missing_weights(settings)
        if missing:
            print(f"still missing in {folder}: {', '.join(missing)} (install face-recognition-models)",
                  file=sys.stderr)
            return 1
        print(f"face weights ready in {folder}")
        return 0
    if args.verb == "check-weights":
        missing = missing_weights(settings)
        if missing:
            print(f"missing in {weights_dir(settings)}: {', '.join(missing)}", file=sys.stderr)
            return 1
        print(f"face weights present in {weights_dir(settings)}")
        return 0
    try:
        return asyncio.run(_embed(settings, args.files))
    except WeightsMissing as exc:
        print(exc, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
