"""Fails if a secret file would reach the Docker build context.

Lays out, in a scratch folder, every tracked file plus the secret files a local run
creates, then asks docker-py's own implementation of .dockerignore matching
(docker.utils.build.exclude_paths) what `docker build .` would send.
"""

import pathlib
import subprocess
import sys
import tempfile

from docker.utils.build import exclude_paths

# What `serve`, `token mint` and `systems simulate` write next to their configuration,
# and what a user is likely to keep beside it.
SECRETS = [
    "configs/jwt.secret",
    "configs/keyring.toml",
    "configs/signing-keys.toml",
    "configs/rs256.pem",
    "data/registry.db",
]

root = pathlib.Path(__file__).resolve().parent.parent
tracked = subprocess.run(
    ["git", "ls-files"], cwd=root, check=True, capture_output=True, text=True
).stdout.split()
patterns = [
    line.strip()
    for line in (root / ".dockerignore").read_text().splitlines()
    if line.strip() and not line.startswith("#")
]

with tempfile.TemporaryDirectory() as scratch:
    scratch = pathlib.Path(scratch)
    for name in tracked + SECRETS:
        path = scratch / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    context = set(exclude_paths(str(scratch), patterns))

leaked = [name for name in SECRETS if name in context]
missing = [name for name in ("Cargo.toml", "Cargo.lock", "configs/aimbus.toml") if name not in context]
print(f"docker build context: {len(context)} files, secrets left out: {len(SECRETS) - len(leaked)}/{len(SECRETS)}")
if leaked or missing:
    for name in leaked:
        print(f"error: {name} would be in the Docker build context; add it to .dockerignore")
    for name in missing:
        print(f"error: {name} is needed by the build but .dockerignore leaves it out")
    sys.exit(1)
