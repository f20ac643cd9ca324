"""Find secrets in text: key blocks, cloud keys, vault values in the clear, credentials in URIs, known values.

A finding names the source, the line and the kind, never the value itself
(the report must not become the leak).
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

# Placeholders that are documentation, not secrets (vault.yml.example, README snippets).
# `!vault` is an inline-encrypted value (ansible-vault encrypt_string): not in the clear.
_PLACEHOLDER = r"(?!CHANGE-ME|change-me|!vault|<|\{\{|\$\{|xxx|XXX|example|EXAMPLE)"

PATTERNS: dict[str, re.Pattern[str]] = {
    "private key block": re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----"),
    "AWS access key id": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"),
    "Slack token": re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
    "vault value in the clear": re.compile(
        rf"^\s*vault_\w*(?:password|secret|token|key)\w*\s*:\s*['\"]?{_PLACEHOLDER}[^\s'\"#]{{4,}}", re.MULTILINE),
    "password in a connection URI": re.compile(rf"\b[a-z][a-z0-9+.-]*://[^/\s:@{{}}]+:{_PLACEHOLDER}[^@\s{{}}/]{{3,}}@"),
}


@dataclass(frozen=True)
class Finding:
    source: str
    line: int
    kind: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.kind}"


def scan_text(text: str, source: str, known: dict[str, str] | None = None) -> list[Finding]:
    """Every pattern, and every known secret value (name -> value), found in `text`."""
    findings = []
    for kind, pattern in PATTERNS.items():
        for match in pattern.finditer(text):
            findings.append(Finding(source, text.count("\n", 0, match.start()) + 1, kind))
    for name, value in (known or {}).items():
        if len(value) >= 8:
            position = text.find(value)
            if position >= 0:
                findings.append(Finding(source, text.count("\n", 0, position) + 1, f"known secret: {name}"))
    return findings


def scan_files(paths: list[Path], root: Path, known: dict[str, str] | None = None) -> list[Finding]:
    findings = []
    for path in paths:
        if not path.is_file() or path.stat().st_size > 5_000_000:
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue  # binary (PNG and the like)
        text = data.decode("utf-8", errors="replace")
        rel = str(path.relative_to(root))
        findings += scan_text(text, rel, known)
    return findings


def repository_files(repo: Path) -> list[Path]:
    """Tracked files and untracked files git would offer to add (both end up in a commit)."""
    out = subprocess.run(["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         capture_output=True, timeout=60, check=True).stdout
    return sorted({repo / name for name in out.decode().split("\0") if name})


def private_key_lines(path: Path) -> dict[str, str]:
    """The base64 lines of an OpenSSH private key, as known secrets (each is unique key material)."""
    if not path.is_file():
        return {}
    lines = [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("-----")]
    return {f"{path.name} line {i + 1}": line for i, line in enumerate(lines) if len(line) >= 20}
