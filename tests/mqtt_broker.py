"""A throwaway Mosquitto broker for the verdicts-out tests, on a free loopback port.

:func:`start_broker` runs Debian's ``mosquitto`` (``/usr/sbin/mosquitto``) with a config file in
a temporary directory: one listener on 127.0.0.1, anonymous clients allowed, nothing kept on
disk. :meth:`MqttBroker.stop` stops it and deletes the directory.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

MOSQUITTO_PATHS = ("/usr/sbin/mosquitto", "/usr/bin/mosquitto")
START_TIMEOUT_SECONDS = 10


def find_mosquitto() -> str | None:
    """The Mosquitto binary, or ``None`` when it is not installed."""
    for candidate in MOSQUITTO_PATHS:
        if Path(candidate).is_file():
            return candidate
    return shutil.which("mosquitto")


@dataclass
class MqttBroker:
    """A running broker: where it listens, and how to stop it."""

    host: str
    port: int
    process: subprocess.Popen[bytes]
    directory: Path

    def stop(self) -> None:
        """Stop the broker and delete its directory."""
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        shutil.rmtree(self.directory, ignore_errors=True)


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_broker(binary: str) -> MqttBroker:
    """Start Mosquitto on a free loopback port; return once it accepts connections.

    Raises:
        RuntimeError: The broker exited or did not listen within the timeout (its log says why).
    """
    directory = Path(tempfile.mkdtemp(prefix="loupe-mqtt-"))
    port = free_port()
    config = directory / "mosquitto.conf"
    config.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        f"log_dest file {directory / 'mosquitto.log'}\n",
        "utf-8",
    )
    # As root, Mosquitto drops to the `mosquitto` user, which must be able to write its log.
    shutil.chown(directory, user="mosquitto") if _has_user("mosquitto") else None
    process = subprocess.Popen(
        [binary, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            error = process.stderr.read().decode(errors="replace") if process.stderr else ""
            shutil.rmtree(directory, ignore_errors=True)
            raise RuntimeError(f"mosquitto exited at start: {error.strip()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return MqttBroker("127.0.0.1", port, process, directory)
        except OSError:
            time.sleep(0.05)
    process.kill()
    shutil.rmtree(directory, ignore_errors=True)
    raise RuntimeError(f"mosquitto did not listen on port {port} within {START_TIMEOUT_SECONDS} s")


def _has_user(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True
