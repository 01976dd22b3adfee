"""Debian packages fetched for their files, never installed: ``apt-get download`` into a folder,
then ``dpkg-deb -x`` to unpack each; ``apt-get update`` runs only when the download fails for
want of a package list. Without ``apt-get``/``dpkg-deb`` or a registry, one ``CorpusError``."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from sparse_circuits.circuits.data.corpus.common import CorpusError, announce
from sparse_circuits.circuits.data.corpus.sources import CorpusSource

__all__ = ["fetch_debian_packages", "debian_source", "debian_corpus_source"]


def _run(command: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(
            command, cwd=cwd, capture_output=True, text=True, timeout=600, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise CorpusError(f"{command[0]} {command[1]} failed ({error})") from None


def _last_error(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("E:")]
    lines = lines or result.stderr.strip().splitlines() or [f"exit status {result.returncode}"]
    return lines[-1]


def fetch_debian_packages(packages: Sequence[str], into: Path) -> Path:
    """Download Debian packages (not installed) and unpack them all into ``into``."""
    apt_get, dpkg_deb = shutil.which("apt-get"), shutil.which("dpkg-deb")
    if apt_get is None or dpkg_deb is None:
        raise CorpusError("apt-get and dpkg-deb are needed to fetch Debian packages")
    announce(f"fetching Debian package{'s' * (len(packages) > 1)} {', '.join(packages)} ...")
    downloads = into / "debs"
    downloads.mkdir(parents=True)
    result = _run([apt_get, "download", *packages], cwd=downloads)
    if result.returncode != 0 and re.search(
        r"Unable to locate package|has no installation candidate", result.stderr
    ):
        announce("no Debian package list: running apt-get update ...")
        update = _run([apt_get, "update"])
        if update.returncode != 0:
            raise CorpusError(f"apt-get update failed: {_last_error(update)}")
        result = _run([apt_get, "download", *packages], cwd=downloads)
    if result.returncode != 0:
        raise CorpusError(f"apt-get download failed: {_last_error(result)}")
    root = into / "root"
    for deb in sorted(downloads.glob("*.deb")):
        unpacked = _run([dpkg_deb, "-x", str(deb), str(root)])
        if unpacked.returncode != 0:
            raise CorpusError(f"dpkg-deb -x {deb.name} failed: {_last_error(unpacked)}")
    return root


def debian_source(
    packages: Sequence[str], extract: Callable[[Path], list[str]]
) -> Callable[[], list[str]]:
    """A source's ``build``: fetch ``packages`` into a temporary folder, then ``extract`` the
    documents from the unpacked root."""

    def build() -> list[str]:
        with tempfile.TemporaryDirectory(prefix="sparse-circuits-deb-") as folder:
            return extract(fetch_debian_packages(packages, Path(folder)))

    return build


def debian_corpus_source(
    name: str,
    description: str,
    packages: Sequence[str],
    extract: Callable[[Path], list[str]],
    *,
    version: str = "debian",
) -> CorpusSource:
    """A corpus source read from Debian ``packages`` by ``extract``; ``version`` names its cache
    (what the documents depend on beyond the extraction)."""
    return CorpusSource(name, description, debian_source(packages, extract), lambda: version)
