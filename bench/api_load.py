"""Load on the inspection API: N concurrent stations posting 256 px parts for a fixed time.

For each backend (SQLite, PostgreSQL on a throwaway local cluster) the script seeds the ELPV
demo into a fresh data directory (``loupe demo``: its PatchCore is the model that scores),
creates an ``inspect`` key, starts ``loupe api`` (uvicorn, one process) on a free loopback
port, and lets each of N client threads post distinct ELPV cells, resized to 256 x 256 PNG,
back to back for ``--seconds``. It reports images per second, p50/p95/p99 latency, the API
process's CPU use, and the raw scoring rate of the same model in this process on the same
parts (batches of one: the ceiling). Then it checks that nothing was lost: every 2xx answer
has its station_inspections row and its prediction.

Verdicts out are on during the load, as a line would run: the project's webhook points at a
receiver in this script, and the API process sends each verdict while it scores. The script
counts the 2xx answers whose verdict reached the receiver (after the load, waiting at most 60 s
for the outbox to drain) and the delay from the API's answer to the webhook's arrival. Then it
switches the webhook off and runs 2 clients once more: the difference is what verdicts out
cost.

Then the hot folder: ``loupe watch`` (its own process) takes the parts a dropper writes into
its folder at 10 files a second for ``--seconds`` (every 25th file is not an image), and is
killed (SIGKILL) and restarted halfway, as after a crash. Then the script waits (at most 300 s)
for the folder to empty and checks: every file dropped is in processed/ or refused/ with a
``hot_folder_files`` row of that status, and no file was scored twice (predictions of folder
images = processed files).

    .venv/bin/python bench/api_load.py [--clients 1,2,4] [--seconds 60] [--write-results]

Targets (issue 15): p99 <= 300 ms for one 256 px part at 2 concurrent clients; nothing lost.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import psutil
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "support"))
from webhook_receiver import Receiver, receiving  # noqa: E402 - the tests' receiver

RESULTS = ROOT / "bench" / "RESULTS_api.md"
P99_TARGET_MS = 300.0
DROP_RATE = 10.0
"""Files a second the hot-folder dropper writes (a station's pace)."""
DRAIN_SECONDS = 300.0
"""How long the script waits, after the last drop, for the watcher to empty the folder."""
SIDE = 256


def parts(n: int) -> list[bytes]:
    """``n`` distinct ELPV cells as 256 x 256 PNG files (cycling with a marker if needed)."""
    from elpv_dataset.utils import load_dataset

    images, *_ = load_dataset()
    out = []
    for i in range(n):
        pixels = np.asarray(images[i % len(images)], dtype=np.uint8)
        if i >= len(images):  # make the bytes differ: one pixel carries the round
            pixels = pixels.copy()
            pixels[0, 0] = (i // len(images)) % 256
        buffer = io.BytesIO()
        Image.fromarray(pixels).convert("RGB").resize((SIDE, SIDE)).save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def database(backend: str, data_dir: Path) -> Iterator[str]:
    """A database URL for the run: SQLite in the data directory, or a throwaway PostgreSQL."""
    if backend == "sqlite":
        yield f"sqlite:///{data_dir / 'loupe.db'}"
        return
    sys.path.insert(0, str(ROOT / "tests"))
    from postgres_cluster import find_postgres_bin_dir, start_cluster

    server = start_cluster(find_postgres_bin_dir())
    name, url = server.create_database()
    try:
        yield url
    finally:
        server.drop_database(name)
        server.stop()


@contextmanager
def api_server(env: dict[str, str], port: int) -> Iterator[psutil.Process]:
    """``loupe api`` on a loopback port; yields its process once it answers."""
    loupe = Path(sys.executable).with_name("loupe")
    process = subprocess.Popen(
        [str(loupe), "api", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            raise SystemExit("loupe api did not start within 60 s")
        yield psutil.Process(process.pid)
    finally:
        process.terminate()
        process.wait(timeout=20)


def load(url: str, key: str, images: list[bytes], clients: int, seconds: float, first: int) -> dict:
    """N threads posting back to back for ``seconds``; the answers and their latencies.

    Part ids are ``bench-<first + i>``: unique over the whole run, so no post is answered as a
    duplicate of an earlier one.
    """
    lock, taken = threading.Lock(), iter(range(len(images)))
    answers: list[tuple] = []  # (latency s, status, inspection id, duplicate, answered at)
    stop_at = time.monotonic() + seconds

    def station(number: int) -> None:
        with httpx.Client(timeout=30) as client:
            while time.monotonic() < stop_at:
                with lock:
                    index = next(taken, None)
                if index is None:
                    return
                start = time.perf_counter()
                reply = client.post(
                    f"{url}?part_id=bench-{first + index}",
                    content=images[index],
                    headers={"Authorization": f"Bearer {key}", "Content-Type": "image/png"},
                )
                latency = time.perf_counter() - start
                body = reply.json() if reply.status_code < 300 else {}
                with lock:
                    answers.append(
                        (
                            latency,
                            reply.status_code,
                            body.get("id"),
                            body.get("duplicate"),
                            time.time(),
                        )
                    )

    threads = [threading.Thread(target=station, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"answers": answers, "wall": time.perf_counter() - started}


def raw_rate(data_dir: Path, db_url: str, images: list[bytes], n: int = 40) -> float:
    """Images per second of the same model scoring the parts one at a time, in this process."""
    import db
    from adcore.detectors.registry import load_detector

    engine = db.init_db(db_url)
    with db.make_session_factory(engine)() as session:
        artifact = db.get_project(session, 1).active_model_version.artifact_path
    engine.dispose()
    path = Path(artifact) if Path(artifact).is_absolute() else ROOT / artifact
    detector = load_detector(path, device="cpu")
    pixels = [np.asarray(Image.open(io.BytesIO(data)).convert("RGB")) for data in images[:n]]
    detector.predict(pixels[:2])  # warm up
    start = time.perf_counter()
    for one in pixels:
        detector.predict([one])
    return len(pixels) / (time.perf_counter() - start)


def lost(db_url: str, ids: list[int]) -> int:
    """How many answered inspections lack their row or their prediction."""
    from sqlalchemy import func, select

    import db
    from db.models import Prediction, StationInspection

    engine = db.init_db(db_url)
    with db.make_session_factory(engine)() as session:
        found = session.scalar(
            select(func.count())
            .select_from(StationInspection)
            .join(Prediction, Prediction.id == StationInspection.prediction_id)
            .where(StationInspection.id.in_(ids))
        )
    engine.dispose()
    return len(set(ids)) - int(found or 0)


def point_webhook(db_url: str, url: str | None) -> None:
    """Switch project 1's webhook on, at ``url``, or off (straight in its settings)."""
    import db
    from db.outbound_messages import OUTBOUND_KEY, OutboundConfig, WebhookConfig
    from services.project_settings import store_option

    engine = db.init_db(db_url)
    with db.make_session_factory(engine)() as session, session.begin():
        config = OutboundConfig(webhook=WebhookConfig(url is not None, url or ""))
        store_option(session, 1, OUTBOUND_KEY, config.to_json())
    engine.dispose()


def outbox_left(db_url: str) -> int:
    """Messages not yet delivered (pending, being sent or dead)."""
    from sqlalchemy import func, select

    import db
    from db.models import OutboundMessage

    engine = db.init_db(db_url)
    with db.make_session_factory(engine)() as session:
        left = session.scalar(
            select(func.count())
            .select_from(OutboundMessage)
            .where(OutboundMessage.status != "delivered")
        )
    engine.dispose()
    return int(left or 0)


def verdicts_out(db_url: str, answered: dict[int, float], receiver: Receiver) -> dict:
    """How many answered posts had their verdict delivered, and how long after the answer."""
    deadline = time.monotonic() + 60
    while outbox_left(db_url) and time.monotonic() < deadline:
        time.sleep(0.5)
    arrivals = {
        body.get("inspection_id"): at
        for at, body in zip(receiver.times, receiver.bodies(), strict=False)
        if body.get("event") == "verdict"
    }
    delays = sorted(
        (arrivals[i] - answered_at) * 1000 for i, answered_at in answered.items() if i in arrivals
    )
    return {
        "delivered": sum(1 for i in answered if i in arrivals),
        "answered": len(answered),
        "delay_p50": float(np.percentile(delays, 50)) if delays else float("nan"),
        "delay_p99": float(np.percentile(delays, 99)) if delays else float("nan"),
        "left": outbox_left(db_url),
    }


def hot_folder_run(env: dict[str, str], db_url: str, images: list[bytes], seconds: float) -> dict:
    """Drop parts into a watched folder for ``seconds``, crash the watcher halfway, check."""
    from sqlalchemy import func, select

    import db
    from db.models import HotFolderFile, Prediction

    folder = Path(env["LOUPE_DATA_DIR"]) / "incoming" / "hot-folder"  # under the default root
    folder.mkdir()
    loupe = str(Path(sys.executable).with_name("loupe"))

    def watcher() -> subprocess.Popen:
        return subprocess.Popen(
            [loupe, "watch", "--project", "1", "--folder", str(folder)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    began = datetime.now(UTC)
    process = watcher()
    dropped: list[str] = []
    started = time.monotonic()
    restarted = False
    index = 0
    while time.monotonic() - started < seconds:
        if not restarted and time.monotonic() - started >= seconds / 2:
            process.send_signal(signal.SIGKILL)  # a crash: no chance to tidy up
            process.wait(timeout=10)
            process = watcher()
            restarted = True
        name = f"part-{index:05d}" + (".txt" if index % 25 == 24 else ".png")
        data = b"not an image" if name.endswith(".txt") else images[index % len(images)]
        temporary = folder / f".{name}.part"  # written aside, then renamed: a whole file appears
        temporary.write_bytes(data)
        temporary.rename(folder / name)
        dropped.append(name)
        index += 1
        time.sleep(1 / DROP_RATE)  # a station's pace
    drop_seconds = time.monotonic() - started
    deadline = time.monotonic() + DRAIN_SECONDS
    while time.monotonic() < deadline and in_folder(folder):
        time.sleep(0.2)
    done_seconds = time.monotonic() - started
    still_waiting = set(in_folder(folder))
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
    processed = {p.name for p in (folder / "processed").iterdir()}
    refused = {p.name for p in (folder / "refused").iterdir() if not p.name.endswith(".reason.txt")}
    engine = db.init_db(db_url)
    with db.make_session_factory(engine)() as session:
        rows = dict(
            session.execute(
                select(HotFolderFile.name, HotFolderFile.status).where(
                    HotFolderFile.folder == str(folder.resolve())
                )
            ).all()
        )
        # Predictions of the images the watcher stored, made since the run began: one per
        # processed file unless a file was scored twice.
        folder_predictions = session.scalar(
            select(func.count())
            .select_from(Prediction)
            .where(
                Prediction.image_id.in_(
                    select(HotFolderFile.image_id).where(
                        HotFolderFile.folder == str(folder.resolve())
                    )
                ),
                Prediction.created_at >= began,
            )
        )
    engine.dispose()
    unaccounted = [
        name
        for name in dropped
        if name not in still_waiting
        and not (
            (name in processed and rows.get(name) == "processed")
            or (name in refused and rows.get(name) == "refused")
        )
    ]
    return {
        "dropped": len(dropped),
        "processed": len(processed),
        "refused": len(refused),
        "rows": len(rows),
        "unaccounted": len(unaccounted),
        "waiting": len(still_waiting),
        "scored_twice": max(0, int(folder_predictions or 0) - len(processed)),
        "drop_seconds": drop_seconds,
        "files_per_s": (len(dropped) - len(still_waiting)) / done_seconds,
        "done_seconds": done_seconds,
    }


def in_folder(folder: Path) -> list[str]:
    """The files still waiting in the hot folder (not the hidden ones being written)."""
    return [p.name for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]


def run_backend(
    backend: str, clients: list[int], seconds: float, images: list[bytes]
) -> tuple[list, dict, dict]:
    """Seed, serve and load one backend: per client count, verdicts out, the hot folder."""
    rows = []
    answered: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="loupe-api-bench-") as tmp:
        data_dir = Path(tmp)
        with database(backend, data_dir) as url:
            env = {
                **os.environ,
                "LOUPE_DATA_DIR": str(data_dir),
                "LOUPE_DATABASE_URL": url,
                "LOUPE_MODELS_DIR": str(data_dir / "models"),
            }
            loupe = str(Path(sys.executable).with_name("loupe"))
            subprocess.run(
                [loupe, "demo", "--models-root", str(data_dir / "models")],
                cwd=ROOT,
                env=env,
                check=True,
                capture_output=True,
            )
            made = subprocess.run(
                [
                    loupe,
                    "api-key",
                    "create",
                    "--project",
                    "1",
                    "--station",
                    "bench",
                    "--scope",
                    "inspect",
                ],
                cwd=ROOT,
                env=env,
                check=True,
                capture_output=True,
                text=True,
            )
            key = next(line for line in made.stdout.splitlines() if line.startswith("loupe_"))
            ceiling = raw_rate(data_dir, url, images)
            port = free_port()
            with receiving() as receiver:
                point_webhook(url, receiver.url)
                with api_server(env, port) as process:
                    api_url = f"http://127.0.0.1:{port}/api/v1/projects/1/inspections"
                    offset = 0
                    for n in clients:
                        rows.append(
                            measure(process, api_url, key, images, n, seconds, offset, answered)
                        )
                        rows[-1].update(backend=backend, ceiling=ceiling, verdicts_out="on")
                        rows[-1]["lost"] = lost(url, rows[-1].pop("ids"))
                        offset += rows[-1]["posts"]
                        print(rows[-1], flush=True)
                    out = verdicts_out(url, answered, receiver)
                    print(out, flush=True)
                    point_webhook(url, None)  # the same load without verdicts out: its cost
                    rows.append(measure(process, api_url, key, images, 2, seconds, offset, {}))
                    rows[-1].update(backend=backend, ceiling=ceiling, verdicts_out="off")
                    rows[-1]["lost"] = lost(url, rows[-1].pop("ids"))
                    offset += rows[-1]["posts"]
                    print(rows[-1], flush=True)
            folder = hot_folder_run(env, url, images[offset:], seconds)
            print(folder, flush=True)
    return rows, out, folder


def measure(
    process: psutil.Process,
    api_url: str,
    key: str,
    images: list[bytes],
    clients: int,
    seconds: float,
    offset: int,
    answered: dict[int, float],
) -> dict:
    """One load at ``clients`` stations: throughput, latency, CPU; notes answer times."""
    process.cpu_percent(None)
    cpu_before = process.cpu_times()
    result = load(api_url, key, images[offset:], clients, seconds, offset)
    cpu_after = process.cpu_times()
    answers = result["answers"]
    ok = [a for a in answers if 200 <= a[1] < 300]
    answered.update({a[2]: a[4] for a in ok if a[2] is not None and not a[3]})
    latencies = sorted(a[0] * 1000 for a in ok)
    cpu = cpu_after.user + cpu_after.system - cpu_before.user - cpu_before.system
    p50, p95, p99 = np.percentile(latencies, [50, 95, 99]) if latencies else [float("nan")] * 3
    return {
        "clients": clients,
        "posts": len(answers),
        "ok": len(ok),
        "errors": len(answers) - len(ok),
        "duplicates": sum(1 for a in ok if a[3]),
        "images_per_s": len(ok) / result["wall"],
        "p50": float(p50),
        "p95": float(p95),
        "p99": float(p99),
        "cpu_cores": cpu / result["wall"],
        "ids": [a[2] for a in ok if a[2] is not None],
    }


def main(argv: list[str] | None = None) -> int:
    """Run the load, print it, and optionally write bench/RESULTS_api.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="1,2,4")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args(argv)
    clients = [int(n) for n in args.clients.split(",")]
    started = datetime.now(UTC).isoformat(timespec="minutes")
    load_before = os.getloadavg()
    images = parts(8000)
    rows, outs, folders = [], {}, {}
    for backend in args.backends.split(","):
        backend_rows, outs[backend], folders[backend] = run_backend(
            backend.strip(), clients, args.seconds, images
        )
        rows += backend_rows
    load_after = os.getloadavg()
    command = ".venv/bin/python bench/api_load.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    lines = [
        "# Inspection API under load (issue 15)",
        "",
        "Written by the script; nothing typed in by hand. Command:",
        "",
        f"    {command.strip()}",
        "",
        (__doc__ or "").split("\n\n", 1)[1].split("\n\n    .venv")[0].strip(),
        "",
        f"Run {started} UTC on {platform.node()} ({os.cpu_count()} cores), Python "
        f"{platform.python_version()}; load average "
        f"{', '.join(f'{v:.1f}' for v in load_before)} before and "
        f"{', '.join(f'{v:.1f}' for v in load_after)} after. Clients and server share the "
        "machine's two cores.",
        "",
        "| backend | clients | verdicts out | posts | errors | answered as duplicates "
        "| images/s | p50 ms "
        "| p95 ms | p99 ms "
        "| API CPU (cores) | raw scoring images/s (ceiling) | share of ceiling | lost |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['backend']} | {r['clients']} | {r['verdicts_out']} | {r['posts']} | "
            f"{r['errors']} | "
            f"{r['duplicates']} | "
            f"{r['images_per_s']:.1f} | {r['p50']:.0f} | {r['p95']:.0f} | {r['p99']:.0f} | "
            f"{r['cpu_cores']:.2f} | {r['ceiling']:.1f} | {r['images_per_s'] / r['ceiling']:.0%} "
            f"| {r['lost']} |"
        )
    lines.append("")
    for r in rows:
        if r["clients"] == 2:
            met = "met" if r["p99"] <= P99_TARGET_MS else "**not met**"
            lines.append(
                f"- {r['backend']}, verdicts out {r['verdicts_out']}: p99 at 2 clients "
                f"{r['p99']:.0f} ms: target <= {P99_TARGET_MS:.0f} ms {met}."
            )
    lines += [
        "",
        "Verdicts out during the load (webhook to a receiver in the script):",
        "",
        "| backend | 2xx answers | verdicts delivered | delay p50 ms | delay p99 ms "
        "| undelivered after 60 s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for backend, out in outs.items():
        lines.append(
            f"| {backend} | {out['answered']} | {out['delivered']} | {out['delay_p50']:.0f} | "
            f"{out['delay_p99']:.0f} | {out['left']} |"
        )
    lines += [
        "",
        "Hot folder (`loupe watch`, killed and restarted halfway):",
        "",
        "| backend | files dropped | in processed/ | in refused/ | rows | still waiting "
        "| lost | scored twice | files/s (first drop to empty folder) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for backend, f in folders.items():
        lines.append(
            f"| {backend} | {f['dropped']} | {f['processed']} | {f['refused']} | {f['rows']} | "
            f"{f['waiting']} | {f['unaccounted']} | {f['scored_twice']} | "
            f"{f['files_per_s']:.1f} |"
        )
    lost_any = (
        sum(r["lost"] for r in rows)
        + sum(o["answered"] - o["delivered"] for o in outs.values())
        + sum(f["unaccounted"] + f["waiting"] + f["scored_twice"] for f in folders.values())
    )
    lines += [
        "",
        f"- Zero lost (every 2xx with its rows and its verdict delivered; every dropped file "
        f"moved with its row, none scored twice): {'met' if lost_any == 0 else '**not met**'}.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.write_results:
        RESULTS.write_text(text)
        print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
