#!/usr/bin/env python3
"""The local demo/test host: a Debian 12 systemd container built offline.

    tools/local_host.py image        build the image if missing (debootstrap, cached)
    tools/local_host.py up           create/start container `toxic-local`, wait for systemd
    tools/local_host.py down         remove the container and its network
    tools/local_host.py status       container, systemd state, ports, how to log in
    tools/local_host.py probe-ports  which ports answer, seen from a second container
    tools/local_host.py molecule-config FILE   write molecule's instance config

The container is what a small cloud VM looks like to Ansible: systemd as PID 1,
sshd with a key injected for root at creation, published on 127.0.0.1 only.
Everything the container needs is read from this machine at run time (apt
mirror, CA certificates); nothing is pulled from a container registry.
Standard library only, plus the docker CLI.

Importable (the deploy and reliability suites and bench/ use it instead of
running this script): `Instance("toxic-fab", 18080, 18443, 12222).up()`.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".cache" / "local-host"
SSH_DIR = REPO / ".cache" / "ssh"
SSH_KEY = SSH_DIR / "id_ed25519"
KNOWN_HOSTS = SSH_DIR / "known_hosts"

SUITE = "bookworm"
IMAGE_REPO = "toxic-local-debian12"
CONTAINER = "toxic-local"  # the default instance's name; its network and probe container are named after it
# What a minimal cloud image offers Ansible; roles install everything else.
PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "python3",
    "python3-apt",
    "sudo",
    "iproute2",
    "ca-certificates",
    "procps",
)
# `make up`'s instance publishes 8080/8443/2222 on 127.0.0.1; `--name`/`--*-port` (or TOXIC_LOCAL_*, or
# Instance(...) when imported) run further instances side by side, e.g. for the deploy and reliability suites.
SSH_PORT = 2222
PROBE_PORTS = (22, 80, 443, 5000, 8000, 8080, 27017)
# Bump when the recipe below changes in a way the inputs do not show.
RECIPE_VERSION = "3"

# The container test host's flags (systemd as PID 1, no --privileged, no SYS_ADMIN). This list is the one place they live:
# molecule/local calls this script instead of repeating them.
RUN_FLAGS = (
    "--cgroupns=host",
    "--volume=/sys/fs/cgroup:/sys/fs/cgroup:rw",
    "--tmpfs=/run",
    "--tmpfs=/run/lock",
    "--cap-add=NET_ADMIN",
    "--cap-add=NET_RAW",
    "--memory=1g",
    "--stop-signal=SIGRTMIN+3",
)

# Units that make no sense in a container and only mark the system "degraded".
MASKED_UNITS = ("getty@tty1.service", "systemd-remount-fs.service", "sys-kernel-config.mount", "systemd-firstboot.service")

# sshd refuses to start without host keys; they are generated per container at
# boot (like cloud-init does) so no two containers share a host key.
SSH_HOSTKEY_DROPIN = """\
[Service]
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
"""


class LocalHostError(Exception):
    """A failure the user can act on; the message says how."""


@dataclass(frozen=True)
class AptSource:
    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]


# --------------------------------------------------------------------- helpers


def log(message: str) -> None:
    print(f"local_host: {message}", file=sys.stderr, flush=True)


def run(args: list[str], *, check: bool = True, capture: bool = True, input_bytes: bytes | None = None,
        timeout: float | None = None) -> subprocess.CompletedProcess[bytes]:
    try:
        proc = subprocess.run(args, input=input_bytes, capture_output=capture, timeout=timeout, check=False)
    except FileNotFoundError as exc:
        raise LocalHostError(f"{args[0]} is not installed (apt-get install -y docker.io debootstrap)") from exc
    if check and proc.returncode != 0:
        detail = (proc.stderr or b"").decode(errors="replace").strip()
        raise LocalHostError(f"`{' '.join(args[:4])} ...` failed (exit {proc.returncode}): {detail}")
    return proc


def docker(*args: str, check: bool = True, timeout: float | None = 120) -> str:
    return run(["docker", *args], check=check, timeout=timeout).stdout.decode().strip()


def require_docker() -> None:
    if shutil.which("docker") is None:
        raise LocalHostError("the docker CLI is missing: apt-get install -y docker.io")
    proc = run(["docker", "info", "--format", "{{.ServerVersion}}"], check=False, timeout=30)
    if proc.returncode != 0:
        raise LocalHostError(
            "the Docker engine is not running. Start it with `systemctl start docker`, or where there is no "
            "systemd: `nohup dockerd >/var/log/dockerd.log 2>&1 &` (ready in ~2 s), then retry."
        )


def container_state(name: str) -> dict | None:
    proc = run(["docker", "inspect", name], check=False, timeout=30)
    if proc.returncode != 0:
        return None
    return json.loads(proc.stdout)[0]


# ------------------------------------------------------------ apt sources


def parse_deb822(text: str) -> list[AptSource]:
    sources = []
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line.startswith((" ", "\t")):
                continue
            key, value = line.split(":", 1)
            fields[key.strip().lower()] = value.strip()
        if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes").lower() == "no":
            continue
        for uri in fields.get("uris", "").split():
            sources.append(AptSource(uri, tuple(fields.get("suites", "").split()), tuple(fields.get("components", "").split())))
    return sources


def parse_one_line(text: str) -> list[AptSource]:
    sources = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) < 3 or words[0] != "deb":
            continue
        if words[1].startswith("["):  # options such as [signed-by=...]
            while words and not words[1].endswith("]"):
                words.pop(1)
            words.pop(1)
        sources.append(AptSource(words[1], (words[2],), tuple(words[3:])))
    return sources


def host_apt_sources(apt_dir: Path = Path("/etc/apt")) -> list[AptSource]:
    """Debian 12 entries of this machine's apt configuration (the mirror we may use)."""
    found: list[AptSource] = []
    files = [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*"))]
    for path in files:
        if not path.is_file():
            continue
        if path.suffix == ".sources":
            found += parse_deb822(path.read_text())
        elif path.suffix == ".list" or path.name == "sources.list":
            found += parse_one_line(path.read_text())
    wanted = {SUITE, f"{SUITE}-updates", f"{SUITE}-security"}
    return [AptSource(s.uri, tuple(x for x in s.suites if x in wanted), s.components)
            for s in found if wanted.intersection(s.suites)]


def main_mirror(sources: list[AptSource]) -> str:
    override = os.environ.get("TOXIC_DEBIAN_MIRROR")
    if override:
        return override
    for source in sources:
        if SUITE in source.suites:
            return source.uri
    raise LocalHostError(
        f"no '{SUITE}' entry in this machine's apt sources (/etc/apt/sources.list[.d]); "
        "set TOXIC_DEBIAN_MIRROR to a Debian mirror URL you may use"
    )


def render_sources(sources: list[AptSource], mirror: str) -> str:
    if not sources:
        sources = [AptSource(mirror, (SUITE, f"{SUITE}-updates"), ("main",))]
    stanzas = []
    for source in sources:
        stanzas.append(
            "Types: deb\n"
            f"URIs: {source.uri}\n"
            f"Suites: {' '.join(source.suites)}\n"
            f"Components: {' '.join(source.components) or 'main'}\n"
            "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        )
    return "\n".join(stanzas)


def mirror_hosts(sources: list[AptSource], mirror: str) -> dict[str, str]:
    """name -> address, resolved here: containers do not see this machine's /etc/hosts."""
    hosts: dict[str, str] = {}
    for uri in {mirror, *(s.uri for s in sources)}:
        name = urlparse(uri).hostname
        if not name or name in hosts:
            continue
        try:
            hosts[name] = socket.getaddrinfo(name, None, socket.AF_INET)[0][4][0]
        except socket.gaierror:
            log(f"warning: cannot resolve apt mirror {name}; apt inside the container may fail")
    return hosts


def host_ca_certificates() -> list[Path]:
    """Locally added CAs (e.g. an egress proxy's); Debian's own bundle comes from the package."""
    return sorted(Path("/usr/local/share/ca-certificates").glob("**/*.crt"))


# ------------------------------------------------------------------- image


def recipe_hash(sources: list[AptSource], mirror: str) -> str:
    digest = hashlib.sha256()
    recipe = [RECIPE_VERSION, SUITE, PACKAGES, MASKED_UNITS, SSH_HOSTKEY_DROPIN, mirror, render_sources(sources, mirror)]
    digest.update(json.dumps(recipe).encode())
    for cert in host_ca_certificates():
        digest.update(cert.read_bytes())
    return digest.hexdigest()[:16]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def image_tag() -> str:
    sources = host_apt_sources()
    return f"{IMAGE_REPO}:{recipe_hash(sources, main_mirror(sources))}"


def image_exists(tag: str) -> bool:
    return run(["docker", "image", "inspect", tag], check=False, timeout=30).returncode == 0


def build_rootfs(rootfs: Path, mirror: str, sources: list[AptSource]) -> None:
    if os.geteuid() != 0:
        raise LocalHostError("debootstrap needs root: run `sudo tools/local_host.py image`")
    if shutil.which("debootstrap") is None:
        raise LocalHostError("debootstrap is missing: apt-get install -y debootstrap")
    keyring = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
    if not keyring.exists():
        raise LocalHostError(f"{keyring} is missing: apt-get install -y debian-archive-keyring")
    log(f"debootstrap {SUITE} from {mirror} (about a minute)")
    run(["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", f"--keyring={keyring}",
         SUITE, str(rootfs), mirror], timeout=1800)

    # Every container must get its own machine id (journald, D-Bus): empty file = generate at boot.
    (rootfs / "etc/machine-id").write_text("")
    (rootfs / "var/lib/dbus/machine-id").unlink(missing_ok=True)
    # Host keys are made per container at boot (drop-in below), never baked into the image.
    for key in (rootfs / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    dropin = rootfs / "etc/systemd/system/ssh.service.d"
    dropin.mkdir(parents=True, exist_ok=True)
    (dropin / "hostkeys.conf").write_text(SSH_HOSTKEY_DROPIN)

    (rootfs / "etc/apt/sources.list").unlink(missing_ok=True)
    (rootfs / "etc/apt/sources.list.d/debian.sources").write_text(render_sources(sources, mirror))
    for cert in host_ca_certificates():
        shutil.copy2(cert, rootfs / "usr/local/share/ca-certificates" / cert.name)
    run(["chroot", str(rootfs), "update-ca-certificates"], timeout=120)

    # A cloud image ships without package lists. Backdate the directory so that
    # apt's `cache_valid_time` sees a stale cache and refreshes it.
    lists = rootfs / "var/lib/apt/lists"
    for entry in lists.iterdir():
        if entry.is_file():
            entry.unlink()
    (rootfs / "var/lib/apt/periodic/update-success-stamp").unlink(missing_ok=True)
    os.utime(lists, (0, 0))
    shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
    (rootfs / "var/cache/apt/archives/partial").mkdir(parents=True)
    for unit in MASKED_UNITS:
        link = rootfs / "etc/systemd/system" / unit
        link.unlink(missing_ok=True)
        link.symlink_to("/dev/null")


def image() -> str:
    """The image's tag, built first if missing."""
    require_docker()
    sources = host_apt_sources()
    mirror = main_mirror(sources)
    digest = recipe_hash(sources, mirror)
    tag = f"{IMAGE_REPO}:{digest}"
    if image_exists(tag):
        log(f"image {tag} is present")
        return tag
    CACHE.mkdir(parents=True, exist_ok=True)
    tarball = CACHE / f"rootfs-{digest}.tar"
    started = time.monotonic()
    if not tarball.exists():
        with tempfile.TemporaryDirectory(dir=CACHE, prefix="rootfs-") as tmp:
            rootfs = Path(tmp) / "rootfs"
            build_rootfs(rootfs, mirror, sources)
            partial = tarball.with_suffix(".tar.partial")
            run(["tar", "--numeric-owner", "--xattrs", "-C", str(rootfs), "-cf", str(partial), "."], timeout=600)
            tarball.with_suffix(".sha256").write_text(file_sha256(partial) + "\n")
            partial.rename(tarball)  # only a complete tarball counts as cached
        for old in CACHE.glob("rootfs-*"):
            if old.stem != tarball.stem:
                old.unlink()
    else:
        log(f"reusing cached rootfs {tarball.name}")
    if not tarball.with_suffix(".sha256").exists() or tarball.with_suffix(".sha256").read_text().strip() != file_sha256(tarball):
        tarball.unlink()
        raise LocalHostError(f"cached {tarball.name} does not match its checksum and was removed; run `image` again")
    base = f"{tag}-import"
    with tarball.open("rb") as stream:
        proc = subprocess.run(
            ["docker", "import", "--change", 'CMD ["/sbin/init"]', "--change", "ENV container=docker", "-", base],
            stdin=stream, capture_output=True, check=False, timeout=600)
    if proc.returncode != 0:
        raise LocalHostError(f"docker import failed: {proc.stderr.decode(errors='replace').strip()}")
    # `docker import` cannot set STOPSIGNAL; a one-line build on the local image can (no registry involved).
    # systemd shuts down cleanly on SIGRTMIN+3; with SIGTERM every stop waits the full 10 s.
    run(["docker", "build", "--label", "toxic-local=1", "-t", tag, "-"],
        input_bytes=f"FROM {base}\nSTOPSIGNAL SIGRTMIN+3\n".encode(), timeout=300)
    docker("rmi", base)
    log(f"built image {tag} in {time.monotonic() - started:.0f} s")
    return tag


# --------------------------------------------------------------- container


def ensure_ssh_key() -> str:
    SSH_DIR.mkdir(parents=True, exist_ok=True)
    os.chmod(SSH_DIR, 0o700)
    if not SSH_KEY.exists():
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "toxic-local", "-f", str(SSH_KEY)])
    return SSH_KEY.with_suffix(".pub").read_text().strip()


def authorized_keys_tar(public_key: str) -> bytes:
    """/root/.ssh/authorized_keys as a tar stream for `docker cp` (modes sshd accepts)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        directory = tarfile.TarInfo(".ssh")
        directory.type, directory.mode = tarfile.DIRTYPE, 0o700
        tar.addfile(directory)
        data = (public_key + "\n").encode()
        entry = tarfile.TarInfo(".ssh/authorized_keys")
        entry.mode, entry.size = 0o600, len(data)
        tar.addfile(entry, io.BytesIO(data))
    return buffer.getvalue()


@dataclass(frozen=True)
class Instance:
    """One local test host: its container, its network and the loopback ports published for it.

    `Instance()` is `make up`'s toxic-local; the deploy and reliability suites and the benchmarks make their own
    (`Instance("toxic-fab", 18080, 18443, 12222)`) and call `up()` / `down()` directly instead of this script.
    """

    name: str = CONTAINER
    http_port: int = 8080
    https_port: int = 8443
    ssh_port: int = SSH_PORT

    def __post_init__(self) -> None:
        if not re.fullmatch(r"toxic-[a-z0-9-]+", self.name):
            raise LocalHostError(f"--name {self.name!r}: use toxic-<lowercase letters, digits, dashes>")
        ports = (self.http_port, self.https_port, self.ssh_port)
        if len(set(ports)) != 3:
            raise LocalHostError(f"the HTTP, HTTPS and SSH ports must differ (got {', '.join(map(str, ports))})")
        if not all(0 < port < 65536 for port in ports):
            raise LocalHostError(f"ports must be in 1..65535 (got {', '.join(map(str, ports))})")

    @property
    def network(self) -> str:
        return f"{self.name}-net"

    @property
    def probe_container(self) -> str:
        return f"{self.name}-probe"

    @property
    def published(self) -> dict[int, int]:
        """host port on 127.0.0.1 -> container port."""
        return {self.http_port: 80, self.https_port: 443, self.ssh_port: 22}

    def state(self) -> dict | None:
        """`docker inspect` of the container, None when there is none."""
        return container_state(self.name)

    def running(self) -> bool:
        return bool((self.state() or {}).get("State", {}).get("Running"))

    # ------------------------------------------------------------------ lifecycle

    def up(self) -> None:
        """Create (if absent) and start the container; return once systemd has booted and sshd answers."""
        tag = image()
        public_key = ensure_ssh_key()
        state = self.state()
        if state is not None and state["Config"]["Image"] != tag:
            log(f"{self.name} runs {state['Config']['Image']}, not {tag}; keeping it (run `down` then `up` to rebuild)")
        if state is None:
            if run(["docker", "network", "inspect", self.network], check=False, timeout=30).returncode != 0:
                docker("network", "create", "--label", "toxic-local=1", self.network)
            sources = host_apt_sources()
            add_hosts = [f"--add-host={name}:{addr}" for name, addr in mirror_hosts(sources, main_mirror(sources)).items()]
            ports = [f"--publish=127.0.0.1:{host}:{guest}" for host, guest in self.published.items()]
            docker("create", f"--name={self.name}", f"--hostname={self.name}", f"--network={self.network}",
                   "--label=toxic-local=1", *RUN_FLAGS, *ports, *add_hosts, tag)
            # Injected before first boot, as a cloud provider does: only root, only this key.
            run(["docker", "cp", "-", f"{self.name}:/root"], input_bytes=authorized_keys_tar(public_key), timeout=60)
            log(f"created {self.name}")
        if not (state or {}).get("State", {}).get("Running"):
            docker("start", self.name)
        started = time.monotonic()
        system_state = self.wait_for_systemd()
        self.wait_for_sshd()
        self.record_host_key()
        log(f"{self.name} is up (systemd {system_state}, {time.monotonic() - started:.1f} s); "
            f"ssh -i {SSH_KEY.relative_to(REPO)} -o UserKnownHostsFile={KNOWN_HOSTS.relative_to(REPO)} "
            f"-p {self.ssh_port} root@127.0.0.1")

    def down(self) -> None:
        """Remove the container, its probe container and its network; forget its host key."""
        require_docker()
        for name in (self.probe_container, self.name):
            if container_state(name) is not None:
                docker("rm", "--force", "--volumes", name)
                log(f"removed {name}")
        if run(["docker", "network", "inspect", self.network], check=False, timeout=30).returncode == 0:
            docker("network", "rm", self.network)
        self.forget_host_key()

    def wait_for_systemd(self, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        state = "unknown"
        while time.monotonic() < deadline:
            proc = run(["docker", "exec", self.name, "systemctl", "is-system-running"], check=False, timeout=15)
            state = proc.stdout.decode().strip() or "unknown"
            if state in ("running", "degraded"):
                return state
            time.sleep(0.2)
        raise LocalHostError(f"systemd in {self.name} did not finish booting within {timeout:.0f} s (state: {state}); "
                             f"see `docker logs {self.name}`")

    def wait_for_sshd(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.ssh_port), timeout=1) as sock:
                    sock.settimeout(2)
                    if sock.recv(4).startswith(b"SSH-"):
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise LocalHostError(f"sshd in {self.name} is not answering on 127.0.0.1:{self.ssh_port} after {timeout:.0f} s")

    def record_host_key(self) -> None:
        """Trust the host key read through docker (a trusted channel), as a provider's console shows it."""
        key = docker("exec", self.name, "cat", "/etc/ssh/ssh_host_ed25519_key.pub").split()
        self._edit_known_hosts(f"[127.0.0.1]:{self.ssh_port} {key[0]} {key[1]}\n")

    def forget_host_key(self) -> None:
        """Drop this instance's line; other instances' keys stay trusted."""
        self._edit_known_hosts(None)

    def _edit_known_hosts(self, line: str | None) -> None:
        """Replace this instance's line (None: drop it). Several instances start and stop at the same time and
        share the file: each edit holds a lock and replaces the file whole, so no edit loses another's line."""
        SSH_DIR.mkdir(parents=True, exist_ok=True)
        prefix = f"[127.0.0.1]:{self.ssh_port} "
        with (SSH_DIR / "known_hosts.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            lines = KNOWN_HOSTS.read_text().splitlines(keepends=True) if KNOWN_HOSTS.exists() else []
            kept = [x for x in lines if not x.startswith(prefix)] + ([line] if line else [])
            tmp = KNOWN_HOSTS.with_name(f"known_hosts.{os.getpid()}.tmp")
            tmp.write_text("".join(kept))
            os.replace(tmp, KNOWN_HOSTS)

    # ------------------------------------------------------------------ looking at it

    def address(self) -> str:
        """The container's address on its own network (where the probe container reaches it)."""
        state = self.state()
        if state is None or not state["State"]["Running"]:
            raise LocalHostError(f"{self.name} is not running (tools/local_host.py --name {self.name} up)")
        return state["NetworkSettings"]["Networks"][self.network]["IPAddress"]

    def probe_ports(self, ports: list[int], timeout: float = 1.5) -> dict[str, str]:
        """{"port": "open"|"closed"|"filtered"} as a second container on the same network sees them."""
        address = self.address()
        image = self.state()["Config"]["Image"]  # type: ignore[index]
        proc = run(["docker", "run", "--rm", f"--name={self.probe_container}", f"--network={self.network}",
                    "--label=toxic-local=1", "--entrypoint=python3", image, "-c", PROBE_SCRIPT, address, str(timeout),
                    *map(str, ports)], timeout=60)
        return json.loads(proc.stdout)

    def status(self) -> int:
        """Print the container's state; 0 when it runs."""
        require_docker()
        state = self.state()
        if state is None:
            print(f"{self.name}: absent (tools/local_host.py --name {self.name} up)")
            return 1
        running = state["State"]["Running"]
        print(f"{self.name}: {'running' if running else state['State']['Status']}  image {state['Config']['Image']}")
        if running:
            system = run(["docker", "exec", self.name, "systemctl", "is-system-running"], check=False, timeout=15)
            print(f"systemd: {system.stdout.decode().strip()}")
            failed = docker("exec", self.name, "systemctl", "--failed", "--no-legend", "--plain", check=False)
            if failed:
                print(f"failed units:\n{failed}")
            for host, guest in self.published.items():
                print(f"127.0.0.1:{host} -> {guest}")
            print(f"address on {self.network}: {self.address()}")
        return 0 if running else 1

    def molecule_config(self, path: Path, user: str) -> None:
        """Molecule's delegated driver needs to know how to reach the instance."""
        config = [{"instance": self.name, "address": "127.0.0.1", "port": self.ssh_port, "user": user,
                   "identity_file": str(SSH_KEY)}]
        Path(path).write_text(json.dumps(config, indent=2) + "\n")


# Runs inside the probe container; prints {"port": "open"|"closed"|"filtered"}.
PROBE_SCRIPT = """
import json, socket, sys
from concurrent.futures import ThreadPoolExecutor
host, timeout, ports = sys.argv[1], float(sys.argv[2]), [int(p) for p in sys.argv[3:]]
def probe(port):
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return "open"
    except ConnectionRefusedError:
        return "closed"
    except OSError:
        return "filtered"
with ThreadPoolExecutor(len(ports)) as pool:
    print(json.dumps(dict(zip(map(str, ports), pool.map(probe, ports)))))
"""


# ------------------------------------------------------------------ command line


def cmd_up(inst: Instance, _: argparse.Namespace) -> None:
    inst.up()


def cmd_down(inst: Instance, _: argparse.Namespace) -> None:
    inst.down()


def cmd_status(inst: Instance, _: argparse.Namespace) -> int:
    return inst.status()


def cmd_probe_ports(inst: Instance, args: argparse.Namespace) -> int:
    require_docker()
    result = inst.probe_ports(args.ports or list(PROBE_PORTS))
    if args.json:
        print(json.dumps(result))
    else:
        for port, verdict in result.items():
            print(f"{port:>6} {verdict}")
    return 0


def cmd_molecule_config(inst: Instance, args: argparse.Namespace) -> None:
    inst.molecule_config(Path(args.path), args.user)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    env = os.environ.get
    parser.add_argument("--name", default=env("TOXIC_LOCAL_NAME", CONTAINER),
                        help="container name, also the prefix of its network (default: %(default)s)")
    parser.add_argument("--http-port", type=int, default=int(env("TOXIC_LOCAL_HTTP_PORT", "8080")))
    parser.add_argument("--https-port", type=int, default=int(env("TOXIC_LOCAL_HTTPS_PORT", "8443")))
    parser.add_argument("--ssh-port", type=int, default=int(env("TOXIC_LOCAL_SSH_PORT", str(SSH_PORT))))
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("image", help="build the Debian 12 systemd image if missing").set_defaults(
        func=lambda inst, args: image())
    sub.add_parser("up", help="create/start the container and wait for systemd").set_defaults(func=cmd_up)
    sub.add_parser("down", help="remove the container and its network").set_defaults(func=cmd_down)
    sub.add_parser("status", help="show the container's state").set_defaults(func=cmd_status)
    probe = sub.add_parser("probe-ports", help="which ports answer, from a second container")
    probe.add_argument("ports", nargs="*", type=int)
    probe.add_argument("--json", action="store_true")
    probe.set_defaults(func=cmd_probe_ports)
    mol = sub.add_parser("molecule-config", help="write molecule's instance config (JSON)")
    mol.add_argument("path")
    mol.add_argument("--user", default="deploy")
    mol.set_defaults(func=cmd_molecule_config)
    args = parser.parse_args(argv)
    try:
        inst = Instance(args.name, args.http_port, args.https_port, args.ssh_port)
        result = args.func(inst, args)
    except LocalHostError as exc:
        print(f"local_host: error: {exc}", file=sys.stderr)
        return 2
    except subprocess.TimeoutExpired as exc:
        print(f"local_host: error: `{' '.join(map(str, exc.cmd[:3]))}` timed out after {exc.timeout} s", file=sys.stderr)
        return 2
    return result if isinstance(result, int) and not isinstance(result, bool) else 0


if __name__ == "__main__":
    sys.exit(main())
