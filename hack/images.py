"""The project's images, built on this machine without a Docker engine or a registry.

The Dockerfile users build with `docker build --target X .` is built here with buildah, with only
its base images swapped by --build-arg: a Python base assembled from Debian 12's packages by
mmdebstrap (Debian 12's python3 is 3.11, the minor of the default base) and, for the helm stage,
that base plus the helm binary `hack/cluster.py build` made on this machine, so the stage has
nothing to compile. Every image is cached by the hash of its inputs (the helm binary's bytes
included), so a warm run rebuilds nothing; archives are imported into the node's containerd.

Standard library only, like hack/cluster.py which calls it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGETS = ("operator", "serving", "training")
REPOSITORY = "localhost/modelfactory"
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates", "passwd")
# Paths that go into the build context (the rest is excluded by .dockerignore too).
CONTEXT = (
    "Dockerfile",
    ".dockerignore",
    "constraints.txt",
    "api",
    "artifacts",
    "operator",
    "serving",
    "training",
    "charts",
    "crds",
)
PAUSE = f"{REPOSITORY}/pause:3.10"
# Trusted by pip in the builds and by TLS from the pods, as on this machine.
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
SKIP = ("__pycache__", ".egg-info", ".pyc", ".mypy_cache", ".pytest_cache", ".ruff_cache")


def log(msg: str) -> None:
    print(f"[images] {msg}", file=sys.stderr, flush=True)


class ImageError(RuntimeError):
    pass


def digest(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
        h.update(b"\0")
    return h.hexdigest()[:16]


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def tree_digest(paths: tuple[str, ...]) -> str:
    h = hashlib.sha256()
    for rel in paths:
        top = ROOT / rel
        files = [top] if top.is_file() else sorted(p for p in top.rglob("*") if p.is_file())
        for f in files:
            if any(s in str(f) for s in SKIP):
                continue
            h.update(str(f.relative_to(ROOT)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


class Builder:
    def __init__(self, cache: Path) -> None:
        self.cache = cache / "images"
        self.root = self.cache / "storage"
        self.runroot = self.cache / "run"
        self.archives = self.cache / "archives"
        self.logs = self.cache / "logs"
        for d in (self.archives, self.logs):
            d.mkdir(parents=True, exist_ok=True)

    # --- buildah with its own storage, never the machine's
    def buildah_cmd(self, *args: str) -> list[str]:
        return [
            "buildah",
            "--root",
            str(self.root),
            "--runroot",
            str(self.runroot),
            "--storage-driver",
            "overlay",
            *args,
        ]

    def buildah(self, *args: str, log_name: str | None = None) -> str:
        if log_name is not None:
            self.run_logged(self.buildah_cmd(*args), log_name)
            return ""
        res = subprocess.run(self.buildah_cmd(*args), capture_output=True, text=True)
        if res.returncode != 0:
            raise ImageError(f"buildah {args[0]} failed: {res.stderr.strip()[-2000:]}")
        return res.stdout.strip()

    def buildah_ok(self, *args: str) -> bool:
        """For a question (does it exist?) or a best effort (drop an old image)."""
        return subprocess.run(self.buildah_cmd(*args), capture_output=True).returncode == 0

    def run_logged(self, cmd: list[str], log_name: str) -> None:
        """A long step: its output goes to a log; a failure shows the log's tail."""
        logfile = self.logs / f"{log_name}.log"
        with logfile.open("w") as out:
            rc = subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT)
        if rc != 0:
            tail = "\n".join(logfile.read_text(errors="replace").splitlines()[-30:])
            raise ImageError(f"{log_name} failed; last lines of {logfile}:\n{tail}")

    def exists(self, image: str) -> bool:
        return self.buildah_ok("inspect", "--type", "image", image)

    def archive_path(self, image: str) -> Path:
        return self.archives / (image.replace("/", "_").replace(":", "_") + ".tar")

    def archive(self, image: str) -> Path:
        """A docker-archive of the image, made once per tag."""
        dest = self.archive_path(image)
        if not dest.exists():
            tmp = dest.with_suffix(".tmp")
            tmp.unlink(missing_ok=True)
            self.buildah("push", image, f"docker-archive:{tmp}:{image}")
            tmp.rename(dest)
        return dest

    # --- the pieces
    def pause(self, pause_c: Path) -> str:
        image = PAUSE
        if self.exists(image):
            return image
        work = self.cache / "pause"
        work.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["gcc", "-Os", "-static", "-o", str(work / "pause"), str(pause_c)],
            check=True,
            capture_output=True,
        )
        ctr = self.buildah("from", "scratch")
        try:
            self.buildah("copy", ctr, str(work / "pause"), "/pause")
            self.buildah("config", "--entrypoint", '["/pause"]', "--user", "65535:65535", ctr)
            self.buildah("commit", ctr, image)
        finally:
            self.buildah("rm", ctr)
        return image

    def base(self) -> str:
        """Debian 12 with python3 (3.11) in a venv on PATH, as python:3.11-slim has pip on PATH.

        The machine's CA bundle goes in, so pip in a build and TLS from a pod trust what this
        machine trusts.
        """
        image = base_name()
        tag = image.rsplit(":", 1)[1]
        if self.exists(image):
            return image
        started = time.monotonic()
        rootfs = self.cache / f"base-{tag}.tar"
        hooks = ['chroot "$1" python3 -m venv /opt/venv']
        if CA_BUNDLE.exists():
            hooks.append(f'cp {CA_BUNDLE} "$1/etc/ssl/certs/ca-certificates.crt"')
        # Debian 12's pip (23.0) backtracks for ages on the training image's dependencies.
        hooks.append(
            'chroot "$1" env PIP_CERT=/etc/ssl/certs/ca-certificates.crt '
            '/opt/venv/bin/pip install --no-cache-dir --quiet --upgrade "pip>=25"'
        )
        cmd = [
            "mmdebstrap",
            "--variant=minbase",
            "--include=" + ",".join(BASE_PACKAGES),
            *[f"--customize-hook={h}" for h in hooks],
            "bookworm",
            str(rootfs),
        ]
        self.run_logged(cmd, "base")
        ctr = self.buildah("from", "scratch")
        try:
            self.buildah("add", ctr, str(rootfs), "/")
            self.buildah(
                "config",
                "--env",
                "PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "--env",
                "LANG=C.UTF-8",
                "--env",
                "PIP_CERT=/etc/ssl/certs/ca-certificates.crt",
                "--cmd",
                '["python3"]',
                ctr,
            )
            self.buildah("commit", ctr, image)
        finally:
            self.buildah("rm", ctr)
        rootfs.unlink(missing_ok=True)
        log(f"base image {image} in {time.monotonic() - started:.0f}s")
        return image

    def helm(self, base: str, helm_binary: Path) -> str:
        """The base with /out/helm: the Dockerfile's helm stage then has nothing to compile."""
        image = helm_name(base, helm_binary)
        if self.exists(image):
            return image
        ctr = self.buildah("from", "--pull=never", base)
        try:
            self.buildah("copy", "--chmod", "0755", ctr, str(helm_binary), "/out/helm")
            self.buildah("commit", ctr, image)
        finally:
            self.buildah("rm", ctr)
        return image

    def project(self, base: str, helm: str) -> dict[str, str]:
        """operator, serving and training from the Dockerfile, tagged by their inputs."""
        images = project_names(base, helm)
        for target, image in images.items():
            if self.exists(image):
                continue
            started = time.monotonic()
            self.buildah(
                "build",
                "--pull=never",
                "--network",
                "host",
                "--layers",
                "--build-arg",
                f"PYTHON_IMAGE={base}",
                "--build-arg",
                f"GO_IMAGE={helm}",
                "--target",
                target,
                "-t",
                image,
                "-f",
                str(ROOT / "Dockerfile"),
                str(ROOT),
                log_name=f"build-{target}",
            )
            log(f"built {image} in {time.monotonic() - started:.0f}s")
        return images

    def prune(self, keep: set[str]) -> None:
        """Every change makes new tags: drop the images and archives of earlier inputs."""
        names = self.buildah("images", "--format", "{{.Name}}:{{.Tag}}").split()
        for name in names:
            if name.startswith(REPOSITORY + "/") and name not in keep:
                self.buildah_ok("rmi", name)
        # Untagged leaves only: the layers the kept images build on stay as the build cache.
        self.buildah_ok("rmi", "--prune")
        kept = {self.archive_path(i).name for i in keep}
        for f in self.archives.glob("*.tar"):
            if f.name not in kept:
                f.unlink()

    def size_mb(self, image: str) -> float:
        out = self.buildah("images", "--format", "{{.Size}}", image)
        return parse_size(out.split("\n")[0] if out else "0")


def parse_size(text: str) -> float:
    units = {"B": 1e-6, "KB": 1e-3, "kB": 1e-3, "MB": 1.0, "GB": 1e3}
    for unit, factor in sorted(units.items(), key=lambda u: -len(u[0])):
        if text.endswith(unit):
            return float(text[: -len(unit)].strip()) * factor
    return 0.0


def base_name() -> str:
    ca = CA_BUNDLE.read_bytes() if CA_BUNDLE.exists() else b""
    return f"{REPOSITORY}/base:{digest('base-v2', *BASE_PACKAGES, ca)}"


def helm_name(base: str, helm_binary: Path) -> str:
    return f"{REPOSITORY}/helm:{digest(base, file_digest(helm_binary))}"


def project_names(base: str, helm: str) -> dict[str, str]:
    tag = digest(base, helm, tree_digest(CONTEXT))
    return {t: f"{REPOSITORY}/{t}:{tag}" for t in TARGETS}


def names(helm_binary: Path) -> dict[str, str]:
    """role -> image name, as `build_all` names them for the current inputs, without building."""
    base = base_name()
    return {"pause": PAUSE, "base": base, **project_names(base, helm_name(base, helm_binary))}


def build_all(cache: Path, pause_c: Path, helm_binary: Path) -> dict[str, str]:
    """Build (or find) every image; returns role -> image name."""
    if shutil.which("buildah") is None or shutil.which("mmdebstrap") is None:
        raise ImageError("buildah and mmdebstrap are missing: apt-get install buildah mmdebstrap")
    started = time.monotonic()
    b = Builder(cache)
    base = b.base()
    helm = b.helm(base, helm_binary)
    images = {"pause": b.pause(pause_c), "base": base}
    images.update(b.project(base, helm))
    manifest = b.cache / "images.json"
    manifest.write_text(json.dumps(images, indent=2))
    b.prune({*images.values(), helm})
    log(
        f"images ready in {time.monotonic() - started:.0f}s: "
        + ", ".join(f"{k}={v}" for k, v in images.items())
    )
    return images


def sizes(cache: Path, images: dict[str, str]) -> dict[str, float]:
    b = Builder(cache)
    return {role: round(b.size_mb(image)) for role, image in images.items()}


def archives(cache: Path, images: dict[str, str]) -> dict[str, Path]:
    b = Builder(cache)
    return {role: b.archive(image) for role, image in images.items()}
