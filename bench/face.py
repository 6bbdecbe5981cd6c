"""Face recognition on this CPU: embedding time per photo, 1:N search time, accuracy on the labelled photos.

    python bench/face.py                      # everything; photos from ../shared/conformance/faces/
    python bench/face.py --rounds 5 --compare # more timing rounds; also time DeepFace's own dlib-detector path
    python bench/face.py --faces DIR          # another labelled folder (labels.csv: image,identity,faces)

Run from the project root with the project's venv. Weights are linked into a scratch DEEPFACE_HOME from the
installed face-recognition-models package (never downloaded).

- Embedding: ``vision.engine.embed_photo`` (decode + 640 px + dlib HOG + 5-point chip + DeepFace Dlib) in this
  process, per labelled photo, after one warm-up pass; then the same through the process pool (``faces.embed``,
  what a request waits for, inter-process copying included). ``--compare``: DeepFace.represent with its own
  ``dlib`` detector on the same 640 px images (the path the issue measured at ~450 ms).
- Search: ``FaceIndex.nearest`` over 1,000 / 10,000 / 100,000 random unit vectors (fixed seed), 200 queries each,
  with one BLAS thread as in the server.
- Accuracy: gallery = the ``train/`` photos; every other single-face photo is a query. Closed set: the nearest is the
  right person within FACE_THRESHOLD. Open set: the same query against the gallery without that person must not be
  accepted (a false accept would log a patient in as someone else). Prints the same/different distance ranges the
  threshold is calibrated on.
Targets: embedding < 300 ms median; search < 5 ms at 100,000; no false accept.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from core.settings import Settings  # noqa: E402
from vision import engine, faces  # noqa: E402
from vision.index import FaceIndex, limit_blas_threads  # noqa: E402
from vision.pool import EmbeddingPool  # noqa: E402
from vision.setup import check_weights, deepface_home  # noqa: E402

DEFAULT_FACES = ROOT.parent / "shared" / "conformance" / "faces"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms" if seconds < 0.01 else f"{seconds * 1000:.1f} ms"


def summary(times: list[float], cpu: list[float] | None = None) -> str:
    """Wall-clock median and p95; with ``cpu`` also the CPU time this thread used (what the work costs when
    other programs share the cores, as on a busy build machine)."""
    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    text = f"median {ms(statistics.median(ordered))}, p95 {ms(p95)}, min {ms(ordered[0])}"
    if cpu:
        text += f"; CPU median {ms(statistics.median(cpu))}"
    return text + f", n={len(ordered)}"


def load_labels(folder: Path) -> list[dict]:
    rows = list(csv.DictReader((folder / "labels.csv").open(encoding="utf-8")))
    for row in rows:
        row["data"] = (folder / row["image"]).read_bytes()
    return rows


def bench_embedding(rows: list[dict], rounds: int) -> dict[str, dict]:
    results = {}
    for row in rows:  # warm-up, and the results for the accuracy part
        try:
            results[row["image"]] = engine.embed_photo(row["data"])
        except engine.PhotoRejected as exc:
            results[row["image"]] = {"rejected": exc.code}
    times, cpu = [], []
    for _ in range(rounds):
        for row in rows:
            started, started_cpu = time.perf_counter(), time.thread_time()
            try:
                engine.embed_photo(row["data"])
            except engine.PhotoRejected:
                pass
            times.append(time.perf_counter() - started)
            cpu.append(time.thread_time() - started_cpu)
    print(f"embedding, in process (decode + 640 px + HOG + chip + DeepFace Dlib): {summary(times, cpu)}")
    return results


def bench_deepface_detector(rows: list[dict], rounds: int) -> None:
    import io

    from deepface import DeepFace
    from PIL import Image

    images = []
    for row in rows:
        img = Image.open(io.BytesIO(row["data"])).convert("RGB")
        img.thumbnail((engine.LONG_SIDE, engine.LONG_SIDE))
        images.append(np.asarray(img)[:, :, ::-1])
    for img in images:
        DeepFace.represent(img, model_name="Dlib", detector_backend="dlib", enforce_detection=False)
    times, cpu = [], []
    for _ in range(rounds):
        for img in images:
            started, started_cpu = time.perf_counter(), time.thread_time()
            DeepFace.represent(img, model_name="Dlib", detector_backend="dlib", enforce_detection=False)
            times.append(time.perf_counter() - started)
            cpu.append(time.thread_time() - started_cpu)
    print(f"embedding, DeepFace.represent with detector_backend='dlib' (decoded already): {summary(times, cpu)}")


async def bench_pool(home: str, rows: list[dict], rounds: int) -> None:
    pool = EmbeddingPool(home, workers=1, queue=1)
    faces.configure(pool, 10 * 1024 * 1024)
    try:
        started = time.perf_counter()
        await pool.warm_up()
        print(f"embedding process start (spawn + import deepface + load models): {ms(time.perf_counter() - started)}")
        for process in pool._all:
            status = Path(f"/proc/{process.proc.pid}/status")
            if status.exists():
                rss = next(line.split()[1] for line in status.read_text().splitlines() if line.startswith("VmRSS"))
                print(f"embedding process memory (RSS): {int(rss) / 1024:.0f} MB")
        times = []
        for _ in range(rounds):
            for row in rows:
                started = time.perf_counter()
                try:
                    await faces.embed(row["data"])
                except faces.FaceError:
                    pass
                times.append(time.perf_counter() - started)
        print(f"embedding, through the process pool (what a request waits): {summary(times)}")
    finally:
        await pool.aclose()
        faces.configure(None, 0)


def bench_search(sizes: list[int], queries: int = 200) -> None:
    limit_blas_threads()  # as the server does (vision.runtime.start)
    rng = np.random.default_rng(6)
    for n in sizes:
        vectors = rng.standard_normal((n, 128)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        idx = FaceIndex()
        idx.replace(np.arange(1, n + 1), np.arange(1, n + 1), vectors)
        probes = vectors[rng.integers(0, n, queries)] + rng.normal(0, 0.01, (queries, 128)).astype(np.float32)
        for probe in probes[:10]:
            idx.nearest(probe)
        times, cpu = [], []
        for probe in probes:
            started, started_cpu = time.perf_counter(), time.process_time()  # BLAS may use several threads
            idx.nearest(probe)
            times.append(time.perf_counter() - started)
            cpu.append(time.process_time() - started_cpu)
        print(f"search 1:N at {n:>7,} enrolled: {summary(times, cpu)} ({n * 128 * 4 / 2**20:.0f} MB matrix)")


def accuracy(rows: list[dict], results: dict[str, dict], threshold: float) -> None:
    def vector(image):
        return np.frombuffer(results[image]["vector"], dtype=np.float32)

    gallery = [(r["identity"], vector(r["image"])) for r in rows
               if r["image"].startswith("train/") and "vector" in results[r["image"]]]
    people = sorted({identity for identity, _ in gallery})
    same, different = [], []
    for i, (a, va) in enumerate(gallery):
        for b, vb in gallery[i + 1:]:
            (same if a == b else different).append(1 - float(va @ vb))
    correct = false_accepts = total = 0
    print(f"\naccuracy: gallery {len(gallery)} photos of {len(people)} people; threshold {threshold}")
    for row in rows:
        if row["image"].startswith("train/"):
            continue
        result = results[row["image"]]
        if "rejected" in result:
            print(f"  {row['image']:<34} {row['faces']} face(s) labelled → refused: {result['rejected']}")
            continue
        identity = row["identity"].split(" ")[0]
        if identity not in people:
            continue
        total += 1
        query = vector(row["image"])
        scored = sorted((1 - float(query @ v), who) for who, v in gallery)
        best_distance, best = scored[0]
        ok = best == identity and best_distance <= threshold
        correct += ok
        same += [d for d, who in scored if who == identity]
        different += [d for d, who in scored if who != identity]
        others = [(d, who) for d, who in scored if who != identity]
        accepted_as = others[0][1] if others[0][0] <= threshold else None
        false_accepts += accepted_as is not None
        print(f"  {row['image']:<34} → {best:<15} {best_distance:.3f} {'ok' if ok else 'WRONG'}; "
              f"without {identity}: nearest {others[0][1]} {others[0][0]:.3f} "
              f"{'FALSE ACCEPT' if accepted_as else 'refused'}")
    print(f"identified {correct}/{total}; false accepts {false_accepts}/{total}")
    print(f"distances, same person:      min {min(same):.3f} median {statistics.median(same):.3f} max {max(same):.3f}"
          f" (n={len(same)})")
    print(f"distances, different people: min {min(different):.3f} median {statistics.median(different):.3f} "
          f"max {max(different):.3f} (n={len(different)})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=Path, default=DEFAULT_FACES)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--compare", action="store_true")
    parser.add_argument("--sizes", default="1000,10000,100000")
    args = parser.parse_args()
    print("command: python bench/face.py " + " ".join(sys.argv[1:]))
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
          f"load average {os.getloadavg()[0]:.1f} at start")
    settings = Settings.from_env().with_(var_dir=Path(tempfile.mkdtemp(prefix="face-bench-")), deepface_home="")
    check_weights(settings)
    home = str(deepface_home(settings))

    bench_search([int(s) for s in args.sizes.split(",")])
    if not (args.faces / "labels.csv").exists():
        print(f"no labelled photos at {args.faces}: embedding and accuracy skipped")
        return 0
    rows = load_labels(args.faces)
    engine.init_worker(home)
    results = bench_embedding(rows, args.rounds)
    if args.compare:
        bench_deepface_detector(rows, args.rounds)
    asyncio.run(bench_pool(home, rows, args.rounds))
    accuracy(rows, results, settings.face_threshold)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
